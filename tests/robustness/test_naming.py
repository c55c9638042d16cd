"""num_classes, as timm and the rest of neuroreg name it; the old spelling n_classes is gone."""

import warnings

import pytest
import torch
from torch import nn

from neuroreg.robustness import RobustClassifier
from neuroreg.robustness.attacks import attack_suite, make_attack
from neuroreg.robustness.sanity import run_sanity_checks


def _net(k=5):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, k))


def test_num_classes_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = RobustClassifier(_net(), None, None, num_classes=5)
        assert w.num_classes == 5
        assert make_attack("pgd", w, 0.01, num_classes=5) is not None
    with pytest.raises(ValueError, match="num_classes must be >= 2; got 1"):
        RobustClassifier(_net(), None, None, num_classes=1)


def test_the_old_spelling_is_refused():
    w = RobustClassifier(_net(), None, None, num_classes=5)
    data = (torch.rand(8, 3, 8, 8), torch.randint(0, 5, (8,)))
    calls = [lambda: RobustClassifier(_net(), None, None, n_classes=5),
             lambda: make_attack("pgd", w, 0.01, n_classes=5),
             lambda: attack_suite(_net(), data, n_classes=5, attacks="fgsm", eps=[0.01], progress=False),
             lambda: run_sanity_checks([], {}, (1.0, 0.0), n_classes=5, stochastic=False, n_draws=1, tol=0.03)]
    for call in calls:
        with pytest.raises(TypeError, match="unexpected keyword argument 'n_classes'"):
            call()
    assert not hasattr(w, "n_classes")


def test_inferred_num_classes_and_dlr_check_name_the_argument():
    w = RobustClassifier(_net(2), None, None).infer(torch.rand(4, 3, 8, 8))
    assert w.num_classes == 2
    with pytest.raises(ValueError, match="needs >= 3 classes; got num_classes=2"):
        make_attack("apgd-dlr", w, 0.01)
    with pytest.raises(TypeError, match="needs num_classes"):
        run_sanity_checks([], {}, (1.0, 0.0), stochastic=False, n_draws=1, tol=0.03)


def test_attack_suite_takes_num_classes():
    data = (torch.rand(8, 3, 8, 8), torch.randint(0, 5, (8,)))
    kw = dict(attacks="fgsm", eps=[0.01], mean=None, std=None, sanity=False, progress=False)
    table = attack_suite(_net(), data, num_classes=5, **kw).to_pandas()
    assert len(table) == 2 and set(table["attack"]) == {"none", "fgsm"}
