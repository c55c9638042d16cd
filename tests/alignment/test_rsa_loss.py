import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform

from neuroreg.alignment import RSALoss, rsa_loss, similarity_matrix
from neuroreg.brain import RDMSet


def _ref_similarity(x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "centered_cosine":
        return 1 - squareform(pdist(x - x.mean(0), "cosine"))
    return 1 - squareform(pdist(x, "correlation"))


def _ref_loss(sm: np.ndarray, st: np.ndarray, fisher_z: bool) -> float:
    iu = np.triu_indices(len(sm), 1)
    a, b = sm[iu], st[iu]
    if fisher_z:
        a, b = np.arctanh(a), np.arctanh(b)
    return float(np.mean((a - b) ** 2))


@pytest.mark.parametrize("kind", ["centered_cosine", "correlation"])
def test_similarity_matches_scipy(kind):
    x = np.random.default_rng(0).normal(size=(9, 14))
    s = similarity_matrix(torch.from_numpy(x), kind)
    np.testing.assert_allclose(s.numpy(), _ref_similarity(x, kind), atol=1e-10)


@pytest.mark.parametrize("fisher_z", [True, False])
def test_loss_matches_reference(fisher_z):
    g = np.random.default_rng(1)
    x, y = g.normal(size=(12, 30)), g.normal(size=(12, 8))
    term = RSALoss("IT", y, fisher_z=fisher_z)
    got = term(torch.from_numpy(x).float(), torch.arange(12))
    ref = _ref_loss(_ref_similarity(x, "centered_cosine"), _ref_similarity(y, "centered_cosine"), fisher_z)
    assert float(got) == pytest.approx(ref, rel=1e-4)


def test_rdm_target_used_as_one_minus_rdm():
    g = np.random.default_rng(2)
    x, y = g.normal(size=(10, 20)), g.normal(size=(10, 6))
    d = squareform(pdist(y, "correlation"))
    term = RSALoss("IT", RDMSet(d), similarity="correlation")
    rows = torch.tensor([0, 3, 4, 7, 9])
    got = term(torch.from_numpy(x[rows.numpy()]).float(), rows)
    ref = _ref_loss(_ref_similarity(x[rows.numpy()], "correlation"), 1 - d[np.ix_(rows.numpy(), rows.numpy())], True)
    assert float(got) == pytest.approx(ref, rel=1e-4)


def test_unit_subsets():
    g = np.random.default_rng(3)
    x, y = g.normal(size=(10, 20)), g.normal(size=(10, 6))
    units = [0, 2, 5]
    term = RSALoss("IT", y, neural_units=units, fisher_z=False)
    ref = _ref_loss(_ref_similarity(x, "centered_cosine"), _ref_similarity(y[:, units], "centered_cosine"), False)
    assert float(term(torch.from_numpy(x).float(), torch.arange(10))) == pytest.approx(ref, rel=1e-4)
    sub = RSALoss("IT", y, model_units=7, seed=5)
    a = torch.from_numpy(x).float()
    assert float(sub(a, torch.arange(10))) == float(sub(a, torch.arange(10)))  # fixed subset, not redrawn
    assert float(sub(a, torch.arange(10))) != float(RSALoss("IT", y)(a, torch.arange(10)))
    with pytest.raises(ValueError, match="neural_units must index"):
        RSALoss("IT", y, neural_units=[6])


def test_zero_when_model_matches_target():
    y = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    assert float(RSALoss("IT", y)(y * 3.0, torch.arange(8))) == pytest.approx(0.0, abs=1e-8)


def test_needs_three_stimuli_and_square_matrices():
    with pytest.raises(ValueError, match="at least 3"):
        RSALoss("IT", torch.randn(8, 5))(torch.randn(2, 4), torch.arange(2))
    with pytest.raises(ValueError, match="same"):
        rsa_loss(torch.eye(3), torch.eye(4))
    with pytest.raises(ValueError, match="similarity"):
        RSALoss("IT", torch.randn(8, 5), similarity="euclid")


def test_gradient_descent_lowers_loss():
    g = torch.Generator().manual_seed(0)
    term = RSALoss("IT", torch.randn(16, 6, generator=g))
    acts = torch.randn(16, 24, generator=g, requires_grad=True)
    rows = torch.arange(16)
    start = float(term(acts, rows).detach())
    opt = torch.optim.Adam([acts], lr=0.05)
    for _ in range(40):
        opt.zero_grad()
        term(acts, rows).backward()
        opt.step()
    assert float(term(acts, rows).detach()) < 0.5 * start
