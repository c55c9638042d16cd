"""A classifier that takes images in [0, 1], normalizes inside and returns logits.

Attack libraries (torchattacks, AutoAttack, RobustBench) clip adversarial images
to [0, 1], so the model under attack must see raw pixels and normalize itself;
this wrapper is that model. It also records whether the model is stochastic
(VOneNet's neuronal noise stays on in eval, Dapello et al. 2020), which decides
whether attacks need Expectation over Transformation (Athalye et al. 2018).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from neuroreg._utils.checks import check_finite
from neuroreg._utils.images import PIXEL_ATOL, check_pixel_range
from neuroreg._utils.modes import eval_mode
from neuroreg.errors import ShapeError
from neuroreg.data.preprocessing import preprocessing_of

__all__ = ["normalize_images", "check_images", "is_stochastic", "RobustClassifier", "resolve_mean_std", "FROM_MODEL"]

#: Default of ``mean``/``std``: take them from the model's preprocessing contract
#: (:func:`neuroreg.data.preprocessing.preprocessing_of`, i.e. its ``pretrained_cfg``).
FROM_MODEL = "model"


def check_images(name: str, x: Tensor, *, atol: float = PIXEL_ATOL) -> None:
    """Raise unless ``x`` is a finite (N, C, H, W) float batch with every value in [0, 1].

    The range rule is :func:`neuroreg._utils.images.check_pixel_range`'s ``"unit"``:
    attacks clip adversarial images to [0, 1], so normalization happens inside the model.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, C, H, W); got {type(x).__name__}")
    if x.ndim != 4:
        raise ShapeError(f"{name} must be 4-D (N, C, H, W) images; got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor with values in [0, 1]; got dtype {x.dtype} "
                         "(divide uint8 images by 255)")
    check_finite(name, x)
    if x.numel():
        lo, hi = x.detach().flatten(1).aminmax(dim=1)
        check_pixel_range(name, lo, hi, rule="unit", item="image", atol=atol)


def normalize_images(x: Tensor, mean: Tensor | Sequence[float], std: Tensor | Sequence[float]) -> Tensor:
    """(x - mean) / std per channel.

    x: (N, C, H, W) in [0, 1]; mean, std: (C,). Returns a new tensor, same shape.
    """
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    return (x - mean_t) / std_t


@torch.no_grad()
def is_stochastic(model: nn.Module, x: Tensor) -> bool:
    """True when two eval-mode forward passes on the same input ``x`` differ.

    The model's train/eval mode is restored afterwards. A deterministic model
    gives bit-identical outputs on the same input on CPU; on GPU some kernels
    are nondeterministic at the last bit, so a relative tolerance of 1e-5 is used.
    """
    with eval_mode(model):
        a = model(x)
        b = model(x)
    scale = a.abs().max().clamp_min(1e-12)
    return bool(((a - b).abs().max() / scale) > 1e-5)


def resolve_mean_std(model: nn.Module, mean, std) -> tuple:
    """``"model"`` -> the model's preprocessing mean/std; anything else is returned unchanged."""
    if isinstance(mean, str) or isinstance(std, str):
        if mean != FROM_MODEL or std != FROM_MODEL:
            raise ValueError(f"mean and std must both be {FROM_MODEL!r}, sequences or None; got mean={mean!r}, "
                             f"std={std!r}")
        prep = preprocessing_of(model)
        return prep.mean, prep.std
    return mean, std


class RobustClassifier(nn.Module):
    """Wrap ``model`` so it takes images in [0, 1] and returns logits.

    Args:
        model: a classifier taking normalized (N, C, H, W) images and returning
            (N, num_classes) logits.
        mean, std: per-channel normalization applied inside ``forward``;
            ``None`` for both means the model normalizes itself already.
            Default ``"model"``: the model's own preprocessing contract
            (:func:`neuroreg.data.preprocessing.preprocessing_of`).
        num_classes: number of logits; inferred by :meth:`infer` when ``None``.
        stochastic: whether the model's output is random in eval mode (VOne
            noise). ``None``: detected by :meth:`infer` from two forward passes.
        check_range: raise if inputs leave [0, 1] (costs a min/max per call).

    ``forward`` only normalizes and calls the model; it changes no state.
    """

    mean: Tensor | None   # buffers registered in __init__ (None when the model normalizes itself)
    std: Tensor | None

    def __init__(self, model: nn.Module, mean: Sequence[float] | str | None = FROM_MODEL,
                 std: Sequence[float] | str | None = FROM_MODEL, *, num_classes: int | None = None,
                 stochastic: bool | None = None, check_range: bool = True) -> None:
        super().__init__()
        mean, std = resolve_mean_std(model, mean, std)
        if (mean is None) != (std is None):
            raise ValueError(f"mean and std must both be given or both be None; got mean={mean!r}, std={std!r}")
        if std is not None and any(float(s) <= 0 for s in std):
            raise ValueError(f"std must be positive per channel; got {tuple(std)}")
        if mean is not None and len(mean) != len(std):
            raise ValueError(f"mean and std must have one value per channel; got {len(mean)} and {len(std)}")
        if num_classes is not None and int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2; got {num_classes}")
        self.model = model
        if mean is None:
            self.register_buffer("mean", None)
            self.register_buffer("std", None)
        else:
            self.register_buffer("mean", torch.tensor([float(m) for m in mean]))
            self.register_buffer("std", torch.tensor([float(s) for s in std]))
        self.num_classes = None if num_classes is None else int(num_classes)
        self.stochastic = stochastic
        self.check_range = check_range

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def forward(self, x: Tensor) -> Tensor:
        if self.check_range:
            check_images("x", x)
        if self.mean is not None:
            if self.std is None:
                raise ValueError("RobustClassifier has a mean buffer but std is None; set both or neither")
            if x.shape[1] != self.mean.numel():
                raise ShapeError(f"x has {x.shape[1]} channels but mean/std have {self.mean.numel()}; "
                                 f"got x of shape {tuple(x.shape)}")
            x = normalize_images(x, self.mean, self.std)
        return self.model(x)

    def infer(self, x: Tensor) -> "RobustClassifier":
        """Fill ``num_classes`` and ``stochastic`` from a probe batch ``x`` (N, C, H, W) in [0, 1].

        Checks the model returns (N, num_classes) logits; raises ShapeError naming
        the shape seen otherwise. Returns self.
        """
        check_images("x", x)
        x = x.to(self.device)
        with eval_mode(self):
            with torch.no_grad():
                out = self(x)
        if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ShapeError(f"the model must return (N, num_classes) logits for N={x.shape[0]} images; "
                             f"got {shape}")
        if self.num_classes is None:
            if out.shape[1] < 2:
                raise ShapeError(f"the model must return at least 2 logits per image; got shape {tuple(out.shape)}")
            self.num_classes = int(out.shape[1])
        elif out.shape[1] != self.num_classes:
            raise ShapeError(f"the model returned {out.shape[1]} logits per image but num_classes="
                             f"{self.num_classes} was declared; got output shape {tuple(out.shape)}")
        if self.stochastic is None:
            self.stochastic = is_stochastic(self, x)
        return self
