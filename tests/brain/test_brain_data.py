"""BrainData and RDMSet: construction, selection, splits, and one test per kind of bad input."""

import numpy as np
import pytest
import torch

from neuroreg.brain import BrainData, RDMSet, conwell_split
from neuroreg.errors import NonFiniteError, ShapeError, StimulusMismatchError


def _brain(n=10, u=6, **kw):
    rng = np.random.default_rng(0)
    info = {"roi": np.array(["V1", "V1", "V4", "V4", "IT", "IT"][:u]), "subject": np.array([1, 2] * (u // 2))}
    return BrainData(rng.normal(size=(n, u)), [f"s{i}" for i in range(n)], info, **kw)


# ------------------------------------------------------------------ BrainData
def test_braindata_select_by_roi_and_subject():
    b = _brain()
    it = b.select(roi="IT")
    assert it.n_units == 2 and list(it.unit_info["roi"]) == ["IT", "IT"]
    np.testing.assert_array_equal(it.responses, b.responses[:, 4:6])
    v = b.select(roi=["V1", "V4"], subject=1)
    assert v.n_units == 2 and set(v.unit_info["subject"]) == {1}


def test_conwell_split_is_index_parity():
    train, test = conwell_split(1000)
    assert len(train) == len(test) == 500
    assert (train % 2 == 0).all() and (test % 2 == 1).all()
    tr, te = _brain().conwell_split()
    assert list(tr.stimulus_ids) == ["s0", "s2", "s4", "s6", "s8"]
    assert list(te.stimulus_ids) == ["s1", "s3", "s5", "s7", "s9"]


def test_braindata_align_to_reorders():
    b = _brain()
    a = b.align_to(["s3", "s1"])
    np.testing.assert_array_equal(a.responses, b.responses[[3, 1]])


def test_braindata_rejects_nan_with_location():
    r = np.zeros((4, 3))
    r[2, 1] = np.nan
    with pytest.raises(NonFiniteError, match=r"responses.*(NaN|non-finite).*\(2, 1\)"):
        BrainData(r, list("abcd"))


def test_braindata_rejects_inf():
    r = np.zeros((4, 3))
    r[0, 0] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        BrainData(r, list("abcd"))


def test_braindata_rejects_duplicate_ids():
    with pytest.raises(ValueError, match="stimulus_ids must be unique.*'a'"):
        BrainData(np.zeros((3, 2)), ["a", "b", "a"])


def test_braindata_rejects_id_length_mismatch():
    with pytest.raises(StimulusMismatchError, match="stimulus_ids has 2 entries but there are 3"):
        BrainData(np.zeros((3, 2)), ["a", "b"])


def test_braindata_rejects_unit_info_wrong_length():
    with pytest.raises(ShapeError, match=r"unit_info\['roi'\].*one entry per unit \(2\).*\(3,\)"):
        BrainData(np.zeros((3, 2)), ["a", "b", "c"], {"roi": ["V1", "V1", "V4"]})


def test_braindata_rejects_wrong_ndim():
    with pytest.raises(ShapeError, match=r"responses must be 2-D.*\(3,\)"):
        BrainData(np.zeros(3), ["a", "b", "c"])


def test_braindata_rejects_bad_trials_shape():
    with pytest.raises(ShapeError, match="trials must be"):
        BrainData(np.zeros((3, 2)), ["a", "b", "c"], trials=np.zeros((2, 3, 3)))


def test_braindata_select_unknown_key_and_empty():
    b = _brain()
    with pytest.raises(KeyError, match="hemisphere"):
        b.select(hemisphere="lh")
    with pytest.raises(ValueError, match="no unit matches"):
        b.select(roi="EBA")


def test_braindata_accepts_torch_and_keeps_trials():
    t = torch.randn(2, 5, 3)
    b = BrainData(t.mean(0), range(5), trials=t)
    assert b.trials.shape == (2, 5, 3)
    np.testing.assert_allclose(b.trials.mean(0), b.responses)


# ------------------------------------------------------------------ RDMSet
def _rdm(n=5, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, 4))
    return 1 - np.corrcoef(x)


def test_rdmset_from_square_and_condensed_agree():
    from scipy.spatial.distance import squareform
    r = _rdm()
    np.fill_diagonal(r, 0)
    a = RDMSet(r, names=["a"], region="IT", subject=1)
    b = RDMSet.from_condensed(squareform(r, checks=False))
    np.testing.assert_allclose(a.rdms, b.rdms)
    np.testing.assert_allclose(a.condensed()[0], squareform(r, checks=False))
    assert a.rdms.dtype == np.float64 and a.region == ["IT"]


def test_rdmset_select_and_mean():
    stack = np.stack([_rdm(seed=s) for s in range(4)])
    stack[:, np.arange(5), np.arange(5)] = 0
    rs = RDMSet(stack, region=["V1", "V1", "IT", "IT"], subject=[1, 2, 1, 2])
    assert rs.select(region="IT").n_rdms == 2
    np.testing.assert_allclose(rs.mean().rdms[0], stack.mean(0))


def test_rdmset_rejects_non_square():
    with pytest.raises(ShapeError, match=r"square.*\(2, 4, 5\)"):
        RDMSet(np.zeros((2, 4, 5)))


def test_rdmset_rejects_asymmetric():
    r = _rdm()
    np.fill_diagonal(r, 0)
    r[0, 1] += 0.5
    with pytest.raises(ValueError, match="symmetric"):
        RDMSet(r)


def test_rdmset_rejects_nonzero_diagonal():
    r = _rdm()
    r[np.arange(5), np.arange(5)] = 0.3
    with pytest.raises(ValueError, match="zero diagonal"):
        RDMSet(r)


def test_rdmset_rejects_nan():
    r = _rdm()
    np.fill_diagonal(r, 0)
    r[1, 2] = r[2, 1] = np.nan
    with pytest.raises(NonFiniteError, match="rdms.*non-finite"):
        RDMSet(r)


def test_rdmset_rejects_names_of_wrong_length():
    r = _rdm()
    np.fill_diagonal(r, 0)
    with pytest.raises(ShapeError, match="names must have one entry per RDM"):
        RDMSet(np.stack([r, r]), names=["only-one"])
