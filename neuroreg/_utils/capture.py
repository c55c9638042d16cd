"""One way to read a model's intermediate outputs: forward hooks, removed on exit.

:func:`capture_outputs` is used by training (activations for the alignment loss,
with gradients), by :func:`neuroreg.features.extraction.extract` (every call of a
recurrent area), by the FactorTopy model sources and by the models'
``forward_intermediates`` (which stops the forward early).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Mapping

from torch import Tensor, nn

__all__ = ["Captured", "StopForward", "capture_outputs", "first_tensor"]


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
    if keep not in ("last", "all"):
        raise ValueError(f"keep must be 'last' or 'all'; got {keep!r}")
    named = dict(model.named_modules())
    unknown = [name for name in modules.values() if name not in named]
    if unknown:
        raise KeyError(f"no submodule named {unknown[0]!r} in {type(model).__name__}")
    if stop_after is not None and stop_after not in modules:
        raise KeyError(f"stop_after={stop_after!r} is not one of the captured keys {list(modules)}")
    out = Captured(modules, keep)

    def hook_for(key: str):
        def hook(_module, _inputs, output):
            t = first_tensor(output)
            if detach:
                t = t.detach()
            if keep == "all":
                out[key].append(t)
            else:
                out[key] = t
            if key == stop_after and all(out.seen(k) for k in modules):
                raise StopForward
        return hook

    handles = []
    try:
        for key, name in modules.items():
            handles.append(named[name].register_forward_hook(hook_for(key)))
        yield out
    finally:
        for h in handles:
            h.remove()
