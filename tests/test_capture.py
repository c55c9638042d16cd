"""capture_outputs (forward hooks, removed on exit) and eval_mode (modes and device restored)."""

import pytest
import torch
from torch import nn

from neuroreg._utils.capture import StopForward, capture_outputs, first_tensor
from neuroreg._utils.modes import eval_mode


class _Recurrent(nn.Module):
    """``step`` is called three times per forward; ``head`` once; ``unused`` never."""

    def __init__(self) -> None:
        super().__init__()
        self.step = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)
        self.unused = nn.Linear(4, 4)

    def forward(self, x):
        for _ in range(3):
            x = self.step(x)
        return self.head(x)


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_keep_last_holds_the_final_call_with_its_graph():
    model, x = _Recurrent(), torch.randn(5, 4)
    with capture_outputs(model, {"s": "step", "h": "head"}) as out:
        y = model(x)
    h = model.step(model.step(model.step(x)))
    torch.testing.assert_close(out["s"], h)
    torch.testing.assert_close(out["h"], y)
    assert out["h"].requires_grad and _hooks(model) == 0
    out["s"].sum().backward()
    assert model.step.weight.grad is not None


def test_keep_all_holds_every_call_in_order_and_detach_drops_the_graph():
    model, x = _Recurrent(), torch.randn(5, 4)
    with capture_outputs(model, {"s": "step"}, detach=True, keep="all") as out:
        model(x)
    assert len(out["s"]) == 3
    with torch.no_grad():
        first = model.step(x)
        second = model.step(first)
    torch.testing.assert_close(out["s"][0], first)
    torch.testing.assert_close(out["s"][1], second)
    assert not any(t.requires_grad for t in out["s"])


def test_stop_after_ends_the_forward_once_everything_is_in():
    model, x = _Recurrent(), torch.randn(5, 4)
    calls = []
    model.head.register_forward_pre_hook(lambda *_: calls.append("head"))
    with capture_outputs(model, {"s": "step"}, stop_after="s") as out:
        with pytest.raises(StopForward):
            model(x)
    assert not calls  # the head never ran
    torch.testing.assert_close(out["s"], model.step(x))


def test_require_names_the_layer_that_did_not_run():
    model = _Recurrent()
    with capture_outputs(model, {"u": "unused", "h": "head"}) as out:
        model(torch.randn(2, 4))
    with pytest.raises(RuntimeError, match=r"'u' \(module 'unused'\) was not called"):
        out.require()
    with capture_outputs(model, {"u": "unused"}, keep="all") as out:
        model(torch.randn(2, 4))
    assert not out.seen("u")


def test_exceptions_unknown_module_bad_keep_bad_stop_after():
    model = _Recurrent()
    with pytest.raises(KeyError, match="no submodule named 'nope'"):
        with capture_outputs(model, {"x": "nope"}):
            pass
    with pytest.raises(ValueError, match="keep must be"):
        with capture_outputs(model, {"s": "step"}, keep="first"):
            pass
    with pytest.raises(KeyError, match="stop_after"):
        with capture_outputs(model, {"s": "step"}, stop_after="h"):
            pass


def test_hooks_removed_when_the_block_raises():
    model = _Recurrent()
    with pytest.raises(ZeroDivisionError):
        with capture_outputs(model, {"s": "step", "h": "head"}):
            model(torch.randn(2, 4))
            raise ZeroDivisionError
    assert _hooks(model) == 0


def test_first_tensor_of_tuples_and_dicts():
    t = torch.ones(2)
    assert first_tensor((t, None)) is t and first_tensor({"a": 1, "b": t}) is t and first_tensor([[t]]) is t
    with pytest.raises(TypeError, match="not a tensor"):
        first_tensor("x")


def test_eval_mode_restores_each_submodule_flag():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout())
    model.train()
    model[1].eval()  # frozen BatchNorm statistics
    with eval_mode(model) as m:
        assert m is model and not any(x.training for x in model.modules())
    assert model.training and model[0].training and not model[1].training and model[2].training


def test_eval_mode_restores_modes_after_an_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
    model.train()
    with pytest.raises(ValueError):
        with eval_mode(model):
            raise ValueError
    assert all(x.training for x in model.modules())


def test_eval_mode_on_a_module_without_tensors_and_on_its_own_device():
    relu = nn.ReLU()
    with eval_mode(relu, "cpu"):
        assert not relu.training
    assert relu.training
    model = nn.Linear(2, 2).double()
    with eval_mode(model, "cpu"):
        assert model.weight.device.type == "cpu"
    assert model.weight.dtype == torch.float64  # only the device may change, never the dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_eval_mode_cuda_round_trip():
    model = nn.Linear(2, 2)
    with eval_mode(model, "cuda"):
        assert model.weight.is_cuda
    assert not model.weight.is_cuda
