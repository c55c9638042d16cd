import numpy as np
import pytest
import torch

from neuroreg.alignment import WeightSchedule, as_target
from neuroreg.alignment.cka_loss import CKALoss
from neuroreg.errors import DataFormatError, StimulusMismatchError


def test_npz_response_target(tmp_path):
    path = tmp_path / "it.npz"
    resp = np.random.default_rng(0).normal(size=(6, 4))
    np.savez(path, responses=resp, stimulus_ids=np.array(["a", "b", "c", "d", "e", "f"]))
    t = as_target(str(path))
    assert t.kind == "responses" and t.data.shape == (6, 4)
    np.testing.assert_allclose(t.data.numpy(), resp, rtol=1e-6)
    assert t.rows_for(["c", "a"]).tolist() == [2, 0]
    with pytest.raises(StimulusMismatchError, match="1 of 2 neural stimuli.*'z'"):
        t.rows_for(["a", "z"])


def test_npz_rdm_target_and_bad_file(tmp_path):
    d = np.array([[0, 1, 2], [1, 0, 3], [2, 3, 0.0]])
    np.savez(tmp_path / "r.npz", rdm=d)
    t = as_target(str(tmp_path / "r.npz"))
    assert t.kind == "rdm" and t.rows_for([10, 11, 12]).tolist() == [0, 1, 2]
    with pytest.raises(StimulusMismatchError, match="matched by position"):
        t.rows_for([1, 2])
    np.savez(tmp_path / "bad.npz", other=d)
    with pytest.raises(DataFormatError, match="'responses'.*'rdm'"):
        as_target(str(tmp_path / "bad.npz"))
    with pytest.raises(FileNotFoundError):
        as_target(str(tmp_path / "missing.npz"))
    with pytest.raises(KeyError, match="neither"):
        as_target("nowhere:IT")


def test_nonfinite_target_rejected():
    with pytest.raises(ValueError, match="non-finite"):
        as_target(np.array([[1.0, np.nan], [0.0, 1.0]]))


def test_weight_schedule_values():
    s = WeightSchedule(delay_steps=10, warmup_steps=20)
    assert [s(0), s(9), s(10), s(20), s(30), s(500)] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]
    c = WeightSchedule(warmup_steps=4, ramp="cosine")
    assert c(2) == pytest.approx(0.5) and c(1) == pytest.approx((1 - np.cos(np.pi / 4)) / 2)
    assert WeightSchedule()(0) == 1.0
    term = CKALoss("IT", torch.randn(5, 3), weight=2.0, schedule=s)
    assert term.weight_at(25) == pytest.approx(1.5)
    assert CKALoss("IT", torch.randn(5, 3), weight=2.0, schedule=lambda step: 0.25).weight_at(3) == 0.5
    with pytest.raises(ValueError, match="ramp"):
        WeightSchedule(ramp="exp")
