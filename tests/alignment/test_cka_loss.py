import math

import numpy as np
import pytest
import torch

from neuroreg.alignment import CKALoss, NeuralTarget, cka_loss, target_cka
from neuroreg.brain import BrainData, RDMSet


def _unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:
    # Song et al. (2012), eq. 5, written out independently of the package.
    n = k.shape[0]
    k = k.copy()
    l = l.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones(n)
    val = np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2)) - 2 / (n - 2) * one @ k @ l @ one
    return val / (n * (n - 3))


def _ref_cka(x: np.ndarray, y: np.ndarray, debiased: bool) -> float:
    if debiased:
        k, l = x @ x.T, y @ y.T
        return _unbiased_hsic(k, l) / math.sqrt(_unbiased_hsic(k, k) * _unbiased_hsic(l, l))
    xc, yc = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))


@pytest.fixture
def data():
    g = np.random.default_rng(0)
    y = g.normal(size=(30, 12))
    x = np.concatenate([y @ g.normal(size=(12, 20)), g.normal(size=(30, 20))], 1) + 0.5 * g.normal(size=(30, 40))
    return x, y


@pytest.mark.parametrize("debiased", [True, False])
def test_loss_is_log_one_minus_reference_cka(data, debiased):
    x, y = data
    ref = _ref_cka(x, y, debiased)
    loss = cka_loss(torch.from_numpy(x), torch.from_numpy(y), debiased=debiased)
    assert float(loss) == pytest.approx(math.log(1 - ref), rel=1e-6)
    assert float(cka_loss(torch.from_numpy(x), torch.from_numpy(y), debiased=debiased, mode="1m")) == \
        pytest.approx(1 - ref, rel=1e-6)


def test_rdm_target_equals_response_target_for_squared_distances(data):
    # -H D H / 2 of squared Euclidean distances is the centred Gram of the patterns (classical MDS).
    x, y = data
    d = ((y[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    via_rdm = target_cka(torch.from_numpy(x), torch.from_numpy(d), kind="rdm")
    assert float(via_rdm) == pytest.approx(_ref_cka(x, y, True), rel=1e-6)


def test_module_selects_target_rows_by_index(data):
    x, y = data
    term = CKALoss("IT", BrainData(y, [f"s{i}" for i in range(30)]))
    rows = torch.tensor([5, 2, 9, 17, 0, 11, 23, 8])
    acts = torch.from_numpy(x[rows.numpy()]).float().reshape(8, 4, 10)  # trailing dims are flattened
    expected = math.log(1 - _ref_cka(x[rows.numpy()], y[rows.numpy()], True))
    assert float(term(acts, rows)) == pytest.approx(expected, rel=1e-4)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(1))
    assert float(term(acts[perm], rows[perm])) == pytest.approx(expected, rel=1e-4)


def test_rdmset_target_is_mean_rdm(data):
    x, y = data
    g = np.random.default_rng(3)
    mats = []
    for _ in range(3):
        z = y + 0.3 * g.normal(size=y.shape)
        mats.append(((z[:, None] - z[None]) ** 2).sum(-1))
    term = CKALoss("IT", RDMSet(np.stack(mats)), mode="1m")
    rows = torch.arange(30)
    expected = 1 - float(target_cka(torch.from_numpy(x), torch.from_numpy(np.mean(mats, 0)), kind="rdm"))
    assert float(term(torch.from_numpy(x).float(), rows)) == pytest.approx(expected, rel=1e-4)


def test_gradient_descent_raises_cka():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(24, 6, generator=g)
    term = CKALoss("IT", target)
    acts = torch.randn(24, 32, generator=g, requires_grad=True)
    rows = torch.arange(24)
    before = float(term.alignment(acts.detach(), rows))
    opt = torch.optim.Adam([acts], lr=0.05)
    for _ in range(40):
        opt.zero_grad()
        term(acts, rows).backward()
        opt.step()
    assert float(term.alignment(acts.detach(), rows)) > before + 0.3


def test_identical_representation_gives_finite_loss():
    y = torch.randn(10, 5, generator=torch.Generator().manual_seed(0))
    loss = CKALoss("IT", y)(y.clone(), torch.arange(10))
    assert torch.isfinite(loss) and float(loss) < -10


def test_debiased_needs_four_stimuli():
    term = CKALoss("IT", torch.randn(10, 5))
    with pytest.raises(ValueError, match="at least 4 neural stimuli.*has 3"):
        term(torch.randn(3, 8), torch.arange(3))
    CKALoss("IT", torch.randn(10, 5), debiased=False)(torch.randn(3, 8), torch.arange(3))


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        CKALoss("IT", torch.randn(10, 5), mode="log")
    with pytest.raises(ValueError, match="weight"):
        CKALoss("IT", torch.randn(10, 5), weight=-1.0)
    with pytest.raises(ValueError, match="6 stimuli but rows has 5"):
        CKALoss("IT", torch.randn(10, 5))(torch.randn(6, 8), torch.arange(5))


def test_bundled_target_string():
    term = CKALoss("IT", "kriegeskorte92:monkey_IT")
    assert term.target.kind == "rdm" and term.target.n_stimuli == 92
    assert term.target.stimulus_ids[0] == "obj001"
    with pytest.raises(KeyError, match="monkey_V4"):
        CKALoss("IT", "kriegeskorte92:monkey_V4")


def test_target_is_not_saved_in_state_dict():
    term = CKALoss("IT", torch.randn(10, 5))
    assert "target_data" not in term.state_dict()


def test_target_isinstance():
    assert isinstance(CKALoss("IT", torch.randn(10, 5)).target, NeuralTarget)


def test_degenerate_debiased_batch_falls_back_to_biased_with_warning():
    # One-hot rows: K = I, whose unbiased self-HSIC is 0, so debiased CKA is undefined.
    acts = torch.eye(8, dtype=torch.float64)
    y = np.random.default_rng(0).normal(size=(8, 3))
    term = CKALoss("IT", torch.from_numpy(y))
    with pytest.warns(RuntimeWarning, match="debiased CKA is undefined.*biased estimator"):
        loss = term(acts, torch.arange(8))
    assert float(loss) == pytest.approx(math.log(1 - _ref_cka(acts.numpy(), y, False)), rel=1e-5)
    with pytest.raises(ValueError, match="no variance"):
        term(torch.ones(8, 4), torch.arange(8))
