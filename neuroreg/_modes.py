"""Train/eval modes saved and restored per submodule.

``model.train(was_training)`` after an evaluation sets *every* submodule to the top
module's mode, which flips a deliberately frozen part (BatchNorm statistics frozen
for a linear probe, say) back to training. These record each submodule's own mode
and put exactly that back.
"""

from __future__ import annotations

__all__ = ["train_modes", "restore_modes"]


def train_modes(model) -> list:
    """``[(submodule, training flag), ...]`` of ``model`` and all its submodules."""
    return [(m, m.training) for m in model.modules()]


def restore_modes(modes: list) -> None:
    """Put every submodule recorded by :func:`train_modes` back in its own mode."""
    for module, flag in modes:
        module.training = flag
