"""Train/eval modes saved and restored per submodule.

Putting back only the top module's flag after an evaluation (``Module.train`` with it)
sets *every* submodule to that mode, which flips a deliberately frozen part (BatchNorm
statistics frozen for a linear probe, say) back to training. These record each submodule's own mode
and put exactly that back; :func:`eval_mode` is the context manager every
evaluation path uses.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

__all__ = ["eval_mode", "train_modes", "restore_modes"]


def train_modes(model) -> list:
    """``[(submodule, training flag), ...]`` of ``model`` and all its submodules."""
    return [(m, m.training) for m in model.modules()]


def restore_modes(modes: list) -> None:
    """Put every submodule recorded by :func:`train_modes` back in its own mode."""
    for module, flag in modes:
        module.training = flag


@contextlib.contextmanager
def eval_mode(model: nn.Module, device: torch.device | str | None = None) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (and on ``device`` if given) for the block; then restore both.

    On exit every submodule gets back its own ``training`` flag (a frozen
    BatchNorm inside a training model stays frozen) and the model goes back to
    the device its first parameter or buffer was on. Yields the model.
    """
    modes = train_modes(model)
    tensors = list(model.parameters()) + list(model.buffers())
    orig = tensors[0].device if tensors else None
    target = torch.device(device) if device is not None else None
    moved = target is not None and orig is not None and orig != target
    model.eval()
    try:
        if moved:
            model.to(target)
        yield model
    finally:
        if moved:
            model.to(orig)
        restore_modes(modes)
