"""Robustness: adversarial attacks (torchattacks, EOT for stochastic models) and
ImageNet-C corruptions, each run with automatic sanity checks.

>>> from neuroreg.robustness import attack_suite
>>> table = attack_suite(model, test_set, attacks=["pgd", "square"], eps=[2/255, 4/255])
>>> table.to_pandas()[["attack", "eps", "metric", "score"]]
"""

from neuroreg.robustness.attacks import ATTACKS, EPS_PRESETS, NORMS, AttackSpec, attack_suite, eps_grid, make_attack
from neuroreg.robustness.corruption_suite import (ALEXNET_MEAN_ERROR, corruption_errors, corruption_suite,
                                                  mean_corruption_error)
from neuroreg.robustness.corruptions import CORRUPTIONS, SEVERITY_PARAMS, Corruption, corrupt
from neuroreg.robustness.plots import plot_accuracy_vs_eps, plot_corruption_heatmap
from neuroreg.robustness.sanity import SanityResult
from neuroreg.robustness.wrapper import RobustClassifier, check_images, is_stochastic, normalize_images

__all__ = ["plot_accuracy_vs_eps", "plot_corruption_heatmap", "corruption_suite", "corrupt", "Corruption", "CORRUPTIONS", "SEVERITY_PARAMS", "ALEXNET_MEAN_ERROR",
           "corruption_errors", "mean_corruption_error", "attack_suite", "make_attack", "eps_grid", "ATTACKS", "NORMS", "EPS_PRESETS", "AttackSpec",
           "SanityResult", "RobustClassifier", "normalize_images", "check_images", "is_stochastic"]
