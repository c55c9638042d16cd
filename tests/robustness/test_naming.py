"""num_classes, as timm and the rest of neuroreg name it; n_classes still works with a DeprecationWarning."""

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


def test_n_classes_still_works_and_warns():
    with pytest.warns(DeprecationWarning, match="n_classes= is deprecated; use num_classes="):
        w = RobustClassifier(_net(), None, None, n_classes=5)
    assert w.num_classes == 5
    with pytest.warns(DeprecationWarning, match="use num_classes"):
        assert w.n_classes == 5
    with pytest.raises(TypeError, match="give only num_classes"), pytest.warns(DeprecationWarning):
        RobustClassifier(_net(), None, None, num_classes=4, n_classes=5)
    with pytest.raises(ValueError, match="num_classes must be >= 2; got 1"):
        RobustClassifier(_net(), None, None, num_classes=1)


def test_inferred_num_classes_and_dlr_check_name_the_new_argument():
    w = RobustClassifier(_net(2), None, None).infer(torch.rand(4, 3, 8, 8))
    assert w.num_classes == 2
    with pytest.raises(ValueError, match="needs >= 3 classes; got num_classes=2"):
        make_attack("apgd-dlr", w, 0.01)
    with pytest.raises(TypeError, match="needs num_classes"):
        run_sanity_checks([], {}, (1.0, 0.0), stochastic=False, n_draws=1, tol=0.03)


def test_attack_suite_accepts_both_names():
    data = (torch.rand(8, 3, 8, 8), torch.randint(0, 5, (8,)))
    kw = dict(attacks="fgsm", eps=[0.01], mean=None, std=None, sanity=False, progress=False)
    new = attack_suite(_net(), data, num_classes=5, **kw).to_pandas()
    with pytest.warns(DeprecationWarning):
        old = attack_suite(_net(), data, n_classes=5, **kw).to_pandas()
    assert len(new) == len(old) == 2
