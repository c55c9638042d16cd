"""compare_rdms(): scipy.stats, an independent Kendall tau-a, rsatoolbox's rho-a; input forms and bad input."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import squareform
from scipy.stats import pearsonr, spearmanr

from neuroreg.brain import RDMSet
from neuroreg.errors import ShapeError, StimulusMismatchError, UnknownNameError
from neuroreg.scoring import compare_rdms


def _tau_a_reference(u, v):
    """Kendall tau-a by explicit pair loops: (concordant - discordant) / (m choose 2)."""
    m = len(u)
    s = 0
    for i in range(m):
        for j in range(i + 1, m):
            s += np.sign(u[i] - u[j]) * np.sign(v[i] - v[j])
    return s / (m * (m - 1) / 2)


def _rdm_vectors(k, n, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=n * (n - 1) // 2)
    v = shared + rng.normal(size=(k, shared.size))
    if ties:
        v = np.round(v)   # many tied dissimilarities
    return v - v.min() + 0.1


def test_pearson_and_spearman_match_scipy():
    a, b = _rdm_vectors(2, 12, ties=True)
    assert compare_rdms(a, b, "pearson") == pytest.approx(pearsonr(a, b)[0], abs=1e-12)
    assert compare_rdms(a, b, "spearman") == pytest.approx(spearmanr(a, b)[0], abs=1e-12)
    assert compare_rdms(a, b, "cosine") == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), abs=1e-12)


def test_kendall_tau_a_matches_independent_pair_count_with_ties():
    a, b = _rdm_vectors(2, 15, seed=1, ties=True)
    assert compare_rdms(a, b, "kendall_tau_a") == pytest.approx(_tau_a_reference(a, b), abs=1e-12)
    c, d = _rdm_vectors(2, 15, seed=2)
    assert compare_rdms(c, d, "tau-a") == pytest.approx(_tau_a_reference(c, d), abs=1e-12)


def test_kendall_tau_a_at_92_stimuli_matches_rsatoolbox():
    from rsatoolbox.rdm import RDMs, compare
    v = _rdm_vectors(3, 92, seed=3, ties=True)                  # 4,186-element vectors with ties
    ref = compare(RDMs(v[:1]), RDMs(v[1:]), method="tau-a")
    np.testing.assert_allclose(compare_rdms(v[:1], v[1:], "kendall_tau_a"), ref, atol=1e-12)


def test_sign_matrix_tau_a_used_on_gpus_matches_pair_count():
    from neuroreg.scoring.compare import _tau_a
    v = _rdm_vectors(3, 14, seed=8, ties=True)
    out = _tau_a(torch.from_numpy(v[:2]), torch.from_numpy(v[1:])).numpy()
    ref = np.array([[_tau_a_reference(p, q) for q in v[1:]] for p in v[:2]])
    np.testing.assert_allclose(out, ref, atol=1e-12)
    assert compare_rdms(v[0], np.full_like(v[0], 2.0), "kendall_tau_a") == 0.0   # all tied: no ordered pairs


def test_rho_a_matches_rsatoolbox():
    from rsatoolbox.rdm import RDMs, compare
    v = _rdm_vectors(3, 10, seed=4, ties=True)
    w = _rdm_vectors(2, 10, seed=5, ties=True)
    ref = compare(RDMs(v), RDMs(w), method="rho-a")
    np.testing.assert_allclose(compare_rdms(v, w, "rho_a"), ref, atol=1e-12)
    np.testing.assert_allclose(compare_rdms(v, w, "kendall_tau_a"), compare(RDMs(v), RDMs(w), method="tau-a"), atol=1e-12)


def test_square_condensed_stack_and_rdmset_forms_agree():
    v = _rdm_vectors(4, 9, seed=6)
    sq = np.stack([squareform(x) for x in v])
    ref = np.array([[pearsonr(p, q)[0] for q in v[2:]] for p in v[:2]])
    np.testing.assert_allclose(compare_rdms(v[:2], v[2:]), ref, atol=1e-12)
    np.testing.assert_allclose(compare_rdms(sq[:2], sq[2:]), ref, atol=1e-12)
    np.testing.assert_allclose(compare_rdms(RDMSet(sq[:2]), v[2:]), ref, atol=1e-12)
    assert compare_rdms(sq[0], v[2]) == pytest.approx(ref[0, 0], abs=1e-12)
    assert compare_rdms(sq[:1], v[2]).shape == (1, 1)


def test_torch_inputs_are_differentiable_for_pearson():
    v = _rdm_vectors(2, 8, seed=7)
    a = torch.from_numpy(squareform(v[0])).requires_grad_(True)
    out = compare_rdms(a, v[1])
    assert isinstance(out, torch.Tensor) and out.ndim == 0
    assert float(out.detach()) == pytest.approx(pearsonr(v[0], v[1])[0], abs=1e-12)
    out.backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    s = compare_rdms(torch.from_numpy(v[0]), torch.from_numpy(v[1]), "spearman")
    assert float(s) == pytest.approx(spearmanr(v[0], v[1])[0], abs=1e-12)


def test_rejects_bad_input():
    v = _rdm_vectors(2, 8)
    with pytest.raises(UnknownNameError, match="method must be one of"):
        compare_rdms(v[0], v[1], "kendall_b")
    with pytest.raises(StimulusMismatchError, match="a has 8 stimuli, b has 7"):
        compare_rdms(v[0], v[1][:21])
    with pytest.raises(ShapeError, match="a looks condensed but has 20 entries"):
        compare_rdms(v[0][:20], v[1])
    with pytest.raises(ValueError, match="b: RDM 0 is constant"):
        compare_rdms(v[0], np.ones_like(v[1]))
    bad = v[0].copy()
    bad[3] = np.inf
    with pytest.raises(ValueError, match="a contains non-finite"):
        compare_rdms(bad, v[1])
    asym = np.random.default_rng(0).random((3, 5, 5))
    with pytest.raises(ValueError, match="not symmetric"):
        compare_rdms(asym, v[1][:10])
