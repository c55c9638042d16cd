"""Generated images whose important region is known: the human maps of a checkable Neural Harmonizer run.

Each image holds two cues to its class:

- the *object*: a small achromatic shape (``plus``, ``cross``, ``ring`` or
  ``square``; class ``c`` is ``SALIENT_SHAPES[c]``) at a random place, of random
  brightness; it always gives the class;
- the *distractor*: a larger patch of stripes (random orientation and frequency)
  in a colour that goes with a class (``DISTRACTOR_COLOURS``), elsewhere in the
  image; it gives the class with probability ``distractor_agreement`` (1: always,
  ``1 / num_classes``: never more than chance) and another class otherwise.

The importance map, standing in for a ClickMe map, is a Gaussian bump on the
object (peak 1, standard deviation half the object's side): the place a
"human" looks. With ``distractor_agreement = 1`` a network can solve the task
from either cue; colour is the easier one, so a network trained for accuracy
alone tends to look at the distractor, and one trained with the harmonization
term at the object.

Every image draws its background, positions, brightness and pixel noise from
``(seed, index)``: item ``i`` is the same on every call.

>>> image, importance = salient_pattern_image(2, 32, seed=0, index=5)   # a ring, (3, 32, 32) and (32, 32)
>>> dm = SalientPatternsDataModule(num_classes=4, n_train=512, n_val=256, batch_size=32, model_name="cornet_z")
>>> batch = next(iter(dm.train_dataloader()))   # {"image", "heatmap", "token", "label"}
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from neuroreg.data.folders import AlignedDataModule
from neuroreg.data.sampling import JointSampler, ResumableLoader

__all__ = ["SALIENT_SHAPES", "DISTRACTOR_COLOURS", "salient_pattern_image", "SalientPatternsDataset",
           "SalientPatternsDataModule"]

SALIENT_SHAPES = ("plus", "cross", "ring", "square")
#: RGB of the distractor of each class: red, green, blue, yellow
DISTRACTOR_COLOURS = ((0.9, 0.15, 0.15), (0.15, 0.8, 0.15), (0.2, 0.3, 0.95), (0.9, 0.8, 0.1))
_MIN_SIZE = 24


def _shape_mask(name: str, side: int) -> Tensor:
    """``(side, side)`` boolean mask of one object shape, drawn on coordinates in [-1, 1]."""
    ax = torch.linspace(-1.0, 1.0, side)
    v, u = torch.meshgrid(ax, ax, indexing="ij")
    if name == "plus":
        return (u.abs() < 0.3) | (v.abs() < 0.3)
    if name == "cross":
        return ((u - v).abs() < 0.4) | ((u + v).abs() < 0.4)
    if name == "ring":
        r = torch.sqrt(u ** 2 + v ** 2)
        return (r > 0.5) & (r < 1.0)
    if name == "square":
        return torch.maximum(u.abs(), v.abs()) > 0.55
    raise ValueError(f"shape must be one of {SALIENT_SHAPES}; got {name!r}")


def _place(g: torch.Generator, size: int, side: int, avoid: tuple[int, int, int] | None = None) -> tuple[int, int]:
    """Top-left corner ``(row, col)`` of a ``side``-pixel box inside the image, not touching box ``avoid``
    ``(row, col, side)`` (one pixel apart at least); drawn from ``g``."""
    corners = [(r, c) for r in range(size - side + 1) for c in range(size - side + 1)]
    if avoid is not None:
        ar, ac, a_side = avoid
        corners = [(r, c) for r, c in corners
                   if r > ar + a_side or r + side < ar or c > ac + a_side or c + side < ac]
    k = int(torch.randint(len(corners), (1,), generator=g))
    return corners[k]


def salient_pattern_image(label: int, size: int = 32, *, seed: int = 0, index: int = 0,
                          distractor_label: int | None = None) -> tuple[Tensor, Tensor]:
    """One image of class ``label`` and its importance map.

    Returns ``image (3, size, size)`` float in [0, 1] and ``importance (size, size)``
    in [0, 1]: a Gaussian bump of peak 1 centred on the object. The object's
    side is ``round(size / 4)`` pixels, the distractor's ``round(3 * size / 8)``;
    ``distractor_label`` (default: ``label``) picks the distractor's colour.
    """
    n = len(SALIENT_SHAPES)
    if not 0 <= label < n:
        raise ValueError(f"label must be in [0, {n}); got {label}")
    distractor_label = label if distractor_label is None else distractor_label
    if not 0 <= distractor_label < n:
        raise ValueError(f"distractor_label must be in [0, {n}); got {distractor_label}")
    if size < _MIN_SIZE:
        raise ValueError(f"size must be >= {_MIN_SIZE} pixels (room for the object and the distractor); got {size}")
    g = torch.Generator().manual_seed(seed * 1_000_003 + index * 7 + 29)
    u = torch.rand(6, generator=g)
    background = 0.25 + 0.2 * float(u[0])
    image = torch.full((3, size, size), background)
    obj_side, dis_side = round(size / 4), round(3 * size / 8)
    # the distractor first, the object where it does not touch it
    dr, dc = _place(g, size, dis_side)
    orow, ocol = _place(g, size, obj_side, avoid=(dr, dc, dis_side))
    ax = torch.arange(dis_side, dtype=torch.float32)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    theta = math.pi * float(u[1])
    period = 3.0 + 3.0 * float(u[2])                       # pixels
    stripes = 0.5 + 0.5 * torch.cos(2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period)
    colour = torch.tensor(DISTRACTOR_COLOURS[distractor_label])
    image[:, dr:dr + dis_side, dc:dc + dis_side] = colour[:, None, None] * (0.45 + 0.55 * stripes)[None]
    mask = _shape_mask(SALIENT_SHAPES[label], obj_side)
    brightness = 0.8 + 0.2 * float(u[3])
    patch = image[:, orow:orow + obj_side, ocol:ocol + obj_side]
    patch[:, mask] = brightness
    image = image + 0.03 * torch.randn(3, size, size, generator=g)
    centre_r, centre_c = orow + (obj_side - 1) / 2, ocol + (obj_side - 1) / 2
    grid = torch.arange(size, dtype=torch.float32)
    sigma = obj_side / 2
    importance = torch.exp(-((grid[:, None] - centre_r) ** 2 + (grid[None, :] - centre_c) ** 2) / (2 * sigma ** 2))
    return image.clamp(0, 1), importance


class SalientPatternsDataset(Dataset):
    """``n`` generated images (see :func:`salient_pattern_image`), built once in memory.

    Image ``i`` has class ``i % num_classes``; its distractor agrees with the
    class for a seeded ``distractor_agreement`` fraction of the images (the others
    draw one of the other classes uniformly). A seeded ``map_fraction`` of the
    images carry their importance map (token 1); the others get an all-zero map
    and token 0, as images without a ClickMe map in the released training.
    ``transform`` (e.g. the model's normalisation) applies to the images as served.

    ``dataset[i]`` is ``(image, label)``; :meth:`item` adds the map and the token.
    Attributes ``images (n, 3, S, S)``, ``heatmaps (n, S, S)``, ``tokens (n,)``,
    ``labels (n,)``, ``distractor_labels (n,)``, unnormalised.
    """

    def __init__(self, n: int, num_classes: int = 4, image_size: int = 32, seed: int = 0,
                 distractor_agreement: float = 1.0, map_fraction: float = 1.0,
                 transform: Callable[[Tensor], Tensor] | None = None) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1; got {n}")
        if not 2 <= num_classes <= len(SALIENT_SHAPES):
            raise ValueError(f"num_classes must be in [2, {len(SALIENT_SHAPES)}]; got {num_classes}")
        if not 0.0 <= distractor_agreement <= 1.0:
            raise ValueError(f"distractor_agreement must be in [0, 1]; got {distractor_agreement}")
        if not 0.0 <= map_fraction <= 1.0:
            raise ValueError(f"map_fraction must be in [0, 1]; got {map_fraction}")
        self.num_classes, self.image_size, self.seed, self.transform = num_classes, image_size, seed, transform
        g = torch.Generator().manual_seed(seed * 1_000_003 + 7_727)
        self.labels = torch.arange(n) % num_classes
        agree = torch.rand(n, generator=g) < distractor_agreement
        other = (self.labels + torch.randint(1, num_classes, (n,), generator=g)) % num_classes
        self.distractor_labels = torch.where(agree, self.labels, other)
        self.tokens = torch.zeros(n)
        self.tokens[torch.randperm(n, generator=g)[:round(map_fraction * n)]] = 1.0
        pairs = [salient_pattern_image(int(self.labels[i]), image_size, seed=seed, index=i,
                                       distractor_label=int(self.distractor_labels[i])) for i in range(n)]
        self.images = torch.stack([p[0] for p in pairs])
        self.heatmaps = torch.stack([p[1] for p in pairs]) * self.tokens[:, None, None]

    def __len__(self) -> int:
        return len(self.labels)

    def _image(self, i: int) -> Tensor:
        x = self.images[i]
        return self.transform(x) if self.transform is not None else x

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self._image(i), int(self.labels[i])

    def item(self, i: int) -> dict[str, Tensor]:
        """``{"image": (3, S, S), "heatmap": (S, S), "token": 0-d float, "label": 0-d long}`` of image ``i``."""
        return {"image": self._image(i), "heatmap": self.heatmaps[i], "token": self.tokens[i],
                "label": self.labels[i]}


class _MapItems(Dataset):
    """:meth:`SalientPatternsDataset.item` by index, or by a :class:`JointSampler` key ``(index, -1, seed)``."""

    def __init__(self, base: SalientPatternsDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int | tuple[int, int, int]) -> dict[str, Tensor]:
        return self.base.item(key[0] if isinstance(key, tuple) else key)


class SalientPatternsDataModule(AlignedDataModule):
    """Offline task data with human maps: batches ``{"image", "heatmap", "token", "label"}``.

    ``image (B, 3, S, S)`` normalised with the model's preprocessing (as every
    data module), ``heatmap (B, S, S)`` in [0, 1] on the same pixels, ``token
    (B,)`` float, ``label (B,)`` long. Train and held-out images come from
    different seeds (``2 * seed`` and ``2 * seed + 1``).

    Parameters
    ----------
    num_classes: 2 to 4 shapes.
    n_train, n_val: images in the training and held-out sets.
    distractor_agreement: how often the distractor's colour gives the class in
        training (1: always, so either cue solves the task).
    val_distractor_agreement: the same for the held-out set (None: as in training).
    map_fraction: fraction of training images with a map (token 1); held-out
        images all have theirs.
    Everything else: :class:`~neuroreg.data.AlignedDataModule` (no neural stimuli).
    """

    def __init__(self, num_classes: int = 4, n_train: int = 512, n_val: int = 256,
                 distractor_agreement: float = 1.0, val_distractor_agreement: float | None = None,
                 map_fraction: float = 1.0, batch_size: int = 32, image_size: int = 32,
                 num_workers: int | None = None, normalize: bool = True, model_name: str | None = None,
                 seed: int = 0) -> None:
        super().__init__(batch_size=batch_size, image_size=image_size, num_workers=num_workers,
                         normalize=normalize, model_name=model_name, seed=seed)
        self._num_classes, self.n_train, self.n_val = num_classes, n_train, n_val
        self.distractor_agreement, self.map_fraction = distractor_agreement, map_fraction
        self.val_distractor_agreement = (distractor_agreement if val_distractor_agreement is None
                                         else val_distractor_agreement)

    def _workers_default(self) -> int:
        return 0

    def _build_task(self) -> tuple[Dataset, Dataset, list[str]]:
        norm = self._normalize_tensor if self.normalize else None
        train = SalientPatternsDataset(self.n_train, self._num_classes, self.image_size, seed=2 * self.seed,
                                       distractor_agreement=self.distractor_agreement,
                                       map_fraction=self.map_fraction, transform=norm)
        val = SalientPatternsDataset(self.n_val, self._num_classes, self.image_size, seed=2 * self.seed + 1,
                                     distractor_agreement=self.val_distractor_agreement, transform=norm)
        return train, val, list(SALIENT_SHAPES[:self._num_classes])

    def _datasets(self) -> tuple[SalientPatternsDataset, SalientPatternsDataset]:
        train, val = self._ensure_task()
        if not isinstance(train, SalientPatternsDataset) or not isinstance(val, SalientPatternsDataset):
            raise TypeError(f"{type(self).__name__} serves SalientPatternsDataset sets; got "
                            f"{type(train).__name__}, {type(val).__name__}")
        return train, val

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        train, _ = self._datasets()
        sampler = JointSampler(len(train), self.batch_size, seed=self.seed)
        return ResumableLoader(_MapItems(train), batch_size=self.batch_size, sampler=sampler, drop_last=True,
                               progress=self._progress, generator=torch.Generator().manual_seed(self.seed),
                               **self._loader_kwargs())

    def val_dataloader(self) -> Any:
        self.setup("validate")
        _, val = self._datasets()
        return DataLoader(_MapItems(val), batch_size=self.batch_size, shuffle=False, **self._loader_kwargs())
