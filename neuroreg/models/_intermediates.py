"""timm's feature API for neuroreg's models: index checks and a hook-based ``forward_intermediates``.

timm models expose ``feature_info`` (one dict per feature map: ``num_chs``,
``reduction``, ``module``) and ``forward_intermediates(x, indices, norm,
stop_early, output_fmt, intermediates_only)``; ``timm.create_model(name,
features_only=True, out_indices=...)`` wraps them in a ``FeatureGetterNet``.
For neuroreg's models the feature maps are the areas V1, V2, V4, IT, and each
intermediate is exactly the output of the area's module (what a forward hook
on that module sees at its last call).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from torch import Tensor, nn

from neuroreg._utils.capture import StopForward, capture_outputs

__all__ = ["take_indices", "check_output_fmt", "hooked_intermediates", "TimmModelAPI"]


class TimmModelAPI(Protocol):
    """The head API of timm models (and neuroreg's), for typing modules known to have it (static only).

    ``forward_features(x)`` images ``(B, C, H, W)`` -> last feature map;
    ``forward_head(x, pre_logits)`` -> logits ``(B, num_classes)`` (pooled features with ``pre_logits``);
    ``get_classifier()`` / ``reset_classifier(num_classes, global_pool)`` the final layer.
    """

    def forward_features(self, x: Tensor) -> Tensor: ...

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor: ...

    def get_classifier(self) -> nn.Module: ...

    def reset_classifier(self, num_classes: int, global_pool: str = ...) -> None: ...


def take_indices(n: int, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
    """timm's index rule: ``None`` all, an int ``k`` the last ``k``, a sequence those (negative from the end)."""
    if indices is None:
        indices = n
    if isinstance(indices, int):
        if not 0 < indices <= n:
            raise ValueError(f"indices={indices} asks for the last {indices} of {n} feature maps; expected 1..{n}")
        take = list(range(n - indices, n))
    else:
        take = []
        for i in indices:
            j = n + i if i < 0 else i
            if not 0 <= j < n:
                raise ValueError(f"feature index {i} is out of range for {n} feature maps (valid: {-n}..{n - 1})")
            take.append(j)
        if not take:
            raise ValueError("indices is empty; give at least one feature index")
    return take, max(take)


def check_output_fmt(output_fmt: str) -> None:
    if output_fmt != "NCHW":
        raise ValueError(f"output_fmt must be 'NCHW' for these convolutional models; got {output_fmt!r}")


def hooked_intermediates(model: nn.Module, forward: Callable[[Tensor], Tensor], x: Tensor, names: Sequence[str],
                         take: Sequence[int], stop_early: bool) -> tuple[Tensor, list[Tensor]]:
    """Run ``forward(x)`` with hooks on ``names``; return (final, outputs of ``names[i]`` for i in ``take``).

    With ``stop_early`` the forward ends as soon as the deepest requested
    module has returned (its output is then the final tensor).
    """
    wanted = {names[i]: names[i] for i in take}
    last = names[max(take)]
    with capture_outputs(model, wanted, stop_after=last if stop_early else None) as seen:
        try:
            final = forward(x)
        except StopForward:
            final = seen[last]
    seen.require()
    return final, [seen[names[i]] for i in take]
