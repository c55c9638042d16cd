"""capture_inputs: what a module receives (forward pre-hooks), removed on exit, as the forgetting report reads it."""

import pytest
import torch
from torch import nn

from neuroreg._utils.capture import capture_inputs


class _Net(nn.Module):
    """``body`` twice (a recurrent step), then ``head`` once."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.relu(self.body(self.body(x))))


def _pre_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) for m in model.modules())


def test_the_head_input_is_what_a_hand_written_forward_hands_it():
    torch.manual_seed(0)
    model, x = _Net(), torch.randn(5, 4)
    with capture_inputs(model, {"h": "head", "b": "body"}, keep="all") as got:
        model(x)
    expected = torch.relu(model.body(model.body(x)))
    torch.testing.assert_close(got["h"][0], expected)
    assert [t.shape for t in got["b"]] == [(5, 4), (5, 4)]
    torch.testing.assert_close(got["b"][0], x)                  # the first call received the raw input
    torch.testing.assert_close(got["b"][1], model.body(x))
    assert _pre_hooks(model) == 0


def test_keep_last_detach_and_require():
    model, x = _Net(), torch.randn(2, 4, requires_grad=True)
    with capture_inputs(model, {"h": "head"}, detach=True) as got:
        model(x)
        assert not got["h"].requires_grad
        got.clear()
        with pytest.raises(RuntimeError, match="'h' \\(module 'head'\\) was not called"):
            got.require()
    assert _pre_hooks(model) == 0


def test_unknown_module_and_hooks_removed_on_error():
    model = _Net()
    with pytest.raises(KeyError, match="no submodule named 'neck'"):
        with capture_inputs(model, {"n": "neck"}):
            pass
    with pytest.raises(ValueError, match="boom"):
        with capture_inputs(model, {"h": "head"}):
            raise ValueError("boom")
    assert _pre_hooks(model) == 0
