"""One way to read a model's intermediate tensors: forward hooks, removed on exit.

:func:`capture_outputs` is used by training (activations for the alignment loss,
with gradients), by :func:`neuroreg.features.extraction.extract` (every call of a
recurrent area), by the FactorTopy model sources and by the models'
``forward_intermediates`` (which stops the forward early). :func:`capture_inputs`
reads what a module receives instead (forward pre-hooks), e.g. a classifier's
input, the penultimate features of the forgetting report's probes.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Mapping

from torch import Tensor, nn

__all__ = ["Captured", "StopForward", "capture_outputs", "capture_inputs", "first_tensor"]


class StopForward(Exception):
    """Raised by a capture hook once every output asked for is in (``stop_after``): ends the forward early."""


def first_tensor(output) -> Tensor:
    """The tensor a module returned: itself, the first item of a tuple/list, or the first tensor value of a dict."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and output:
        return first_tensor(output[0])
    if isinstance(output, Mapping):
        for value in output.values():
            if isinstance(value, Tensor):
                return value
    raise TypeError(f"a captured module returned {type(output).__name__}, not a tensor (or a tuple/list/dict "
                    "holding one); pick a layer whose output is a tensor")


class Captured(dict):
    """Key -> captured output (``keep="last"``) or list of outputs, one per call (``keep="all"``)."""

    def __init__(self, modules: Mapping[str, str], keep: str) -> None:
        super().__init__()
        self.modules, self.keep = dict(modules), keep
        if keep == "all":
            self.update({key: [] for key in modules})

    def seen(self, key: str) -> bool:
        """Whether the module under ``key`` has been called."""
        return bool(self.get(key)) if self.keep == "all" else key in self

    def require(self) -> "Captured":
        """Raise ``RuntimeError`` naming each key whose module was not called by the forward pass; return self."""
        missing = [k for k in self.modules if not self.seen(k)]
        if missing:
            named = ", ".join(f"{k!r} (module {self.modules[k]!r})" for k in missing)
            raise RuntimeError(f"layer {named} was not called during the forward pass")
        return self


@contextlib.contextmanager
def capture_outputs(model: nn.Module, modules: Mapping[str, str], *, detach: bool = False, keep: str = "last",
                    stop_after: str | None = None) -> Iterator[Captured]:
    """Collect the outputs of named submodules of ``model`` during the forward passes run inside the block.

    Args:
        model: the network.
        modules: key -> submodule name (as in ``model.named_modules()``; ``""`` is the model itself).
        detach: store ``output.detach()`` (no graph kept) instead of the output with its gradient.
        keep: ``"last"`` keeps the output of each module's last call (the final time step of a
            recurrent area); ``"all"`` keeps a list with one output per call, in call order.
        stop_after: a key; once that module has returned and every other key has been seen, the hook
            raises :class:`StopForward` so the caller can end the forward early (catch it).

    Yields a :class:`Captured` dict filled by the forward passes. The hooks are
    removed on exit, even when the block raises.
    """
    with _capture(model, modules, detach=detach, keep=keep, stop_after=stop_after, inputs=False) as out:
        yield out


@contextlib.contextmanager
def capture_inputs(model: nn.Module, modules: Mapping[str, str], *, detach: bool = False,
                   keep: str = "last") -> Iterator[Captured]:
    """Collect the first tensor each named submodule of ``model`` receives, during the forward passes in the block.

    The arguments are those of :func:`capture_outputs`; a module's input is stored
    before the module runs (a forward pre-hook), e.g. a classifier's input ``(n, d)``.
    """
    with _capture(model, modules, detach=detach, keep=keep, stop_after=None, inputs=True) as out:
        yield out


@contextlib.contextmanager
def _capture(model: nn.Module, modules: Mapping[str, str], *, detach: bool, keep: str, stop_after: str | None,
             inputs: bool) -> Iterator[Captured]:
    """Forward hooks (``inputs=False``) or forward pre-hooks (``inputs=True``) filling one :class:`Captured`."""
    if keep not in ("last", "all"):
        raise ValueError(f"keep must be 'last' or 'all'; got {keep!r}")
    named = dict(model.named_modules())
    unknown = [name for name in modules.values() if name not in named]
    if unknown:
        raise KeyError(f"no submodule named {unknown[0]!r} in {type(model).__name__}")
    if stop_after is not None and stop_after not in modules:
        raise KeyError(f"stop_after={stop_after!r} is not one of the captured keys {list(modules)}")
    out = Captured(modules, keep)

    def store(key: str, value) -> None:
        t = first_tensor(value)
        if detach:
            t = t.detach()
        if keep == "all":
            out[key].append(t)
        else:
            out[key] = t
        if key == stop_after and all(out.seen(k) for k in modules):
            raise StopForward

    def hook_for(key: str):
        if inputs:
            return lambda _module, args: store(key, args)
        return lambda _module, _args, output: store(key, output)

    handles = []
    try:
        for key, name in modules.items():
            module = named[name]
            handles.append(module.register_forward_pre_hook(hook_for(key)) if inputs
                           else module.register_forward_hook(hook_for(key)))
        yield out
    finally:
        for h in handles:
            h.remove()
