"""One preprocessing contract per model: input size, resizing, crop and mean/std, read from the model itself.

Training data, feature extraction, brain scoring, the robustness wrapper and the
scorecard all take their preprocessing from :func:`preprocessing_of`, so a
model sees the same input statistics everywhere. The contract is timm's
``resolve_model_data_config`` (the model's ``pretrained_cfg``; timm's ImageNet
defaults when the model carries none), so a VOneNet gets mean = std = 0.5 and a
timm EfficientNet its own input size and interpolation.

>>> prep = preprocessing_of(model)            # or preprocessing_of("vone_cornet_s")
>>> x = prep(images)                          # (N, 3, H, W) in [0, 1] -> resized, normalised
>>> prep.normalize(x01)                       # mean/std only (e.g. inside an attacked classifier)
>>> prep.eval_transform()                     # PIL -> Resize + CenterCrop + ToTensor (pixels in [0, 1])
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from neuroreg._utils.images import IMAGENET_MEAN, IMAGENET_STD, resize_images
from neuroreg.errors import UnknownNameError

__all__ = ["Preprocessing", "preprocessing_of"]

@dataclass(frozen=True)
class Preprocessing:
    """How images in [0, 1] become a model's input.

    input_size: (C, H, W) the model expects; mean, std: per-channel statistics
    subtracted and divided after resizing; interpolation: resampling of the
    resize; crop_pct: centre-crop fraction of the evaluation transform for
    decoded image files (timm convention: resize to ``size / crop_pct``, crop ``size``).
    """

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875

    def __post_init__(self) -> None:
        if len(self.input_size) != 3 or any(int(s) < 1 for s in self.input_size):
            raise ValueError(f"input_size must be (C, H, W) with positive entries; got {self.input_size}")
        if len(self.mean) != len(self.std) or len(self.mean) != self.input_size[0]:
            raise ValueError(f"mean and std need one value per input channel ({self.input_size[0]}); "
                             f"got mean={self.mean}, std={self.std}")
        if any(float(s) <= 0 for s in self.std):
            raise ValueError(f"std must be positive per channel; got {self.std}")
        if not 0 < float(self.crop_pct) <= 1:
            raise ValueError(f"crop_pct must be in (0, 1]; got {self.crop_pct}")

    @property
    def image_size(self) -> int:
        """Side length in pixels (H of ``input_size``)."""
        return int(self.input_size[-2])

    def with_size(self, image_size: int | None) -> "Preprocessing":
        """The same contract at another square ``image_size`` (None keeps it)."""
        if image_size is None:
            return self
        if int(image_size) < 1:
            raise ValueError(f"image_size must be a positive number of pixels; got {image_size}")
        return replace(self, input_size=(self.input_size[0], int(image_size), int(image_size)))

    def resize(self, x: Tensor) -> Tensor:
        """``(..., C, H, W)`` in [0, 1] -> ``(..., C, S, S)`` (antialiased, clamped to [0, 1]); no-op at size."""
        return resize_images(x, (self.input_size[-2], self.input_size[-1]), interpolation=self.interpolation)

    def normalize(self, x: Tensor) -> Tensor:
        """``(x - mean) / std`` over the channel axis (-3) of ``(..., C, H, W)``; differentiable."""
        if x.shape[-3] != len(self.mean):
            raise ValueError(f"images have {x.shape[-3]} channels but the model's mean/std have {len(self.mean)}; "
                             f"got shape {tuple(x.shape)}")
        m = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        s = torch.as_tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x - m) / s

    def __call__(self, x: Tensor) -> Tensor:
        """Resize then normalise ``(C, H, W)`` or ``(N, C, H, W)`` images in [0, 1]."""
        return self.normalize(self.resize(x))

    def tensor_transform(self, normalize: bool = True) -> Callable[[Tensor], Tensor]:
        """Per-image callable for :func:`neuroreg.extract` and datasets (resize, then normalise if asked)."""
        return self if normalize else self.resize

    def _torchvision_interp(self):
        return _interpolation_mode(self.interpolation)

    def eval_transform(self, normalize: bool = False):
        """Image -> tensor: Resize(size / crop_pct) + CenterCrop(size) + ToTensor (+ Normalize).

        The image is a PIL image (a decoded file) or a float ``(3, H, W)`` tensor in
        [0, 1] (a generated one; resized with :func:`~neuroreg._utils.images.resize_images`).
        ``normalize=False`` (default) keeps pixels in [0, 1] for code that normalises
        inside (accuracy, attacks, corruptions take [0, 1] images).
        """
        from torchvision import transforms as T  # local: loads torchvision; this module needs torch only
        size = self.image_size
        steps = [_ResizeShorter(int(round(size / float(self.crop_pct))), self.interpolation),
                 T.CenterCrop(size), _ToTensor()]
        if normalize:
            steps.append(T.Normalize(self.mean, self.std))
        return T.Compose(steps)

    def train_transform(self, normalize: bool = True, scale: tuple[float, float] = (0.08, 1.0)):
        """Image -> tensor: RandomResizedCrop(size, scale) + horizontal flip + ToTensor (+ Normalize).

        ``scale``: range of the crop's area as a fraction of the image (torchvision's
        and timm's default (0.08, 1)). The image: a PIL image or a float ``(3, H, W)``
        tensor in [0, 1].
        """
        from torchvision import transforms as T  # local: loads torchvision; this module needs torch only
        lo, hi = (float(v) for v in scale)
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale must be (min, max) area fractions with 0 < min <= max <= 1; got {scale!r}")
        steps = [T.RandomResizedCrop(self.image_size, scale=(lo, hi), interpolation=self._torchvision_interp()),
                 T.RandomHorizontalFlip(), _ToTensor()]
        if normalize:
            steps.append(T.Normalize(self.mean, self.std))
        return T.Compose(steps)

    def to_dict(self) -> dict[str, Any]:
        return {"input_size": list(self.input_size), "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation, "crop_pct": float(self.crop_pct)}


def _config_of(model: nn.Module | str) -> dict[str, Any]:
    import timm  # local: loads timm (and torchvision); this module needs torch only
    from timm.data import resolve_data_config
    if isinstance(model, str):
        import neuroreg.models  # noqa: F401  (registers neuroreg's models in timm; local: loads timm)
        if not timm.is_model(model):
            raise UnknownNameError(f"model {model!r} is not a registered timm/neuroreg model")
        registered = timm.models.get_pretrained_cfg(model)
        cfg: dict[str, Any] = registered.to_dict() if registered is not None else {}
    elif isinstance(model, nn.Module):
        # what timm's resolve_model_data_config reads; it cannot take a model without a cfg
        own = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
        cfg = dict(own.to_dict() if hasattr(own, "to_dict") else own)
    else:
        raise TypeError(f"model must be an nn.Module or a registered model name; got {type(model).__name__}")
    # a non-empty dict: timm refuses an empty one, and falls back to its ImageNet defaults per missing key
    return resolve_data_config(pretrained_cfg=cfg or {"architecture": "unknown"}, use_test_size=True)


def preprocessing_of(model: nn.Module | str, image_size: int | None = None, *,
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Preprocessing:
    """The model's :class:`Preprocessing`, from its ``pretrained_cfg`` through timm's data-config resolution.

    model: a module (its ``pretrained_cfg``/``default_cfg``; timm's ImageNet defaults
        when it has none) or a registered timm/neuroreg model name.
    image_size: override the square input side (e.g. smaller images for a quick run).
    mean, std: override the statistics (both or neither).
    """
    if (mean is None) != (std is None):
        raise ValueError(f"give mean and std together or neither; got mean={mean!r}, std={std!r}")
    cfg = _config_of(model)
    input_size = tuple(int(s) for s in cfg["input_size"])
    if len(input_size) != 3:
        raise ValueError(f"input_size must be (C, H, W) with positive entries; the model's config gives "
                         f"input_size={cfg['input_size']!r}")
    prep = Preprocessing(input_size=input_size,
                         mean=tuple(float(v) for v in (mean if mean is not None else cfg["mean"])),
                         std=tuple(float(v) for v in (std if std is not None else cfg["std"])),
                         interpolation=str(cfg.get("interpolation") or "bilinear"),
                         crop_pct=float(cfg.get("crop_pct") or 0.875))
    return prep.with_size(image_size)


def _interpolation_mode(name: str):
    """torchvision's InterpolationMode for a contract's interpolation name (unknown names: bilinear, as timm)."""
    from torchvision.transforms import InterpolationMode  # local: loads torchvision; this module needs torch only
    return {"bicubic": InterpolationMode.BICUBIC, "nearest": InterpolationMode.NEAREST}.get(
        name, InterpolationMode.BILINEAR)


class _ResizeShorter:
    """Resize the shorter side to ``size`` pixels, keeping the aspect ratio (torchvision's ``Resize(int)``).

    PIL images go through torchvision (PIL's filters); tensors ``(C, H, W)`` through
    :func:`~neuroreg._utils.images.resize_images` (antialiased, clamped to [0, 1]).
    Picklable, for DataLoader workers.
    """

    def __init__(self, size: int, interpolation: str) -> None:
        self.size, self.interpolation = int(size), interpolation

    def __call__(self, image: Any) -> Any:
        if isinstance(image, Tensor):
            h, w = int(image.shape[-2]), int(image.shape[-1])
            short, long = (h, w) if h <= w else (w, h)
            new_long = int(self.size * long / short)    # torchvision's rounding of the longer side
            return resize_images(image, (self.size, new_long) if h <= w else (new_long, self.size),
                                 interpolation=self.interpolation)
        from torchvision.transforms import functional as TF  # local: loads torchvision; this module needs torch only
        return TF.resize(image, self.size, interpolation=_interpolation_mode(self.interpolation))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, interpolation={self.interpolation!r})"


class _ToTensor:
    """PIL image or ``(H, W, C)`` uint8 array -> ``(C, H, W)`` float in [0, 1]; a float tensor passes unchanged."""

    def __call__(self, image: Any) -> Tensor:
        if isinstance(image, Tensor):
            if not image.is_floating_point():
                raise TypeError(f"image tensors must be float (3, H, W) in [0, 1]; got dtype {image.dtype} "
                                "(pass PIL images, or divide uint8 tensors by 255)")
            return image.float()
        from torchvision.transforms.functional import to_tensor  # local: loads torchvision
        return to_tensor(image)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
