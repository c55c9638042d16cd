"""ClickMe human importance maps (Linsley et al. 2019; Fel, Felipe, Linsley & Serre 2022), read without TensorFlow.

Two layouts are read:

- the released TFRecord shards, as downloaded (``train-<i>.tfrecords`` and
  ``val-<i>.tfrecords``, in ``root`` or in ``root/train`` and ``root/val``; the
  release's own download cache names them ``clickme_train_<i>`` and
  ``clickme_val_<i>``). Each record is a ``tf.train.Example`` with ``image`` (JPEG
  bytes, 256 x 256 x 3), ``heatmap`` (JPEG bytes, 256 x 256 x 1) and ``label``
  (int64, the ImageNet class index);
- a plain folder, for a user's own maps: ``images/`` (any image file),
  ``heatmaps/`` (``<image stem>.png``, single-channel, or ``<image stem>.npy``,
  ``(H, W)`` or ``(H, W, 1)``) and ``labels.csv`` (columns ``image,label``;
  ``image`` names a file in ``images/``). An image without a map gets a zero map
  and token 0.

Preparation, exactly as the release's ``parse_clickme_prototype``
(``harmonization/common/clickme_dataset.py``, 0.0.9): the JPEGs decoded as
TensorFlow decodes them (libjpeg-turbo, integer-fast DCT, fancy upsampling; the
same pixels as ``tf.io.decode_jpeg``), the image resized to ``image_size`` (224)
with TensorFlow's bilinear resize (half-pixel centres, no antialiasing), the
heatmap resized to 64 x 64 the same way, blurred with the release's Gaussian
kernel (size 10, sigma 10, zero-padded ``"SAME"`` correlation) and resized to
``image_size``. Heatmaps keep the release's units (JPEG levels, 0 to 255 before
blurring); the harmonization loss standardises them per map.
"""

from __future__ import annotations

import functools
import io
import warnings
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from neuroreg._utils.io import read_text, reading
from neuroreg.data._tfrecord import index_records, parse_example, read_record
from neuroreg.errors import DataFormatError, ShapeError

try:  # a dependency of neuroreg; without it JPEGs are decoded by Pillow, with a warning
    import simplejpeg  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - only where the dependency was removed
    simplejpeg = None

__all__ = ["ClickMeDataset", "ClickMeFolder", "clickme_dataset", "find_clickme_shards", "gaussian_kernel",
           "iter_clickme", "parse_clickme_record", "prepare_heatmap", "resize_bilinear"]

SOURCE_SIZE = 256        # side of the released images and maps
IMAGE_SIZE = 224         # the release's model input size
HEATMAP_LOW_RES = 64     # the heatmap is blurred at this size
BLUR_KERNEL_SIZE = 10
BLUR_SIGMA = 10.0
Decoder = Literal["auto", "tensorflow-exact", "pil"]
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


# ----------------------------------------------------------------------------- the release's preparation
def gaussian_kernel(size: int = BLUR_KERNEL_SIZE, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """The release's ``(size, size)`` float32 Gaussian kernel (``harmonization/common/blur.py``), summing to 1.

    Rows run over ``y = (size-1)//2 .. -(size-1)//2 - 1`` and columns over
    ``x = -(size-1)//2 - 1 .. (size-1)//2`` (Python's floor division of
    ``-(size-1)``), so an even ``size`` is off-centre as in the release.
    """
    half = (size - 1) // 2
    xs = np.arange(-(size - 1) // 2, half + 1)
    ys = np.arange(half, -(size - 1) // 2 - 1, -1)
    xx, yy = np.meshgrid(xs, ys)
    k = np.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2)) / (2 * np.pi * sigma ** 2)
    return (k / k.sum()).astype(np.float32)


def resize_bilinear(x: Tensor, size: tuple[int, int]) -> Tensor:
    """TensorFlow's ``tf.image.resize(..., method="bilinear")`` of ``(..., H, W)`` float32 -> ``(..., h, w)``.

    Half-pixel centres, no antialiasing, and TensorFlow's arithmetic: source
    coordinate ``(i + 0.5) * (H / h) - 0.5`` in float32, neighbours clamped to
    the image, ``top + (bottom - top) * dy`` of ``left + (right - left) * dx``.
    """
    x = x.to(torch.float32)
    h_in, w_in = x.shape[-2:]

    def axis(n_in: int, n_out: int) -> tuple[Tensor, Tensor, Tensor]:
        scale = torch.tensor(n_in / n_out, dtype=torch.float32)
        pos = (torch.arange(n_out, dtype=torch.float32) + 0.5) * scale - 0.5
        lo = torch.floor(pos)
        lower = lo.to(torch.int64).clamp(min=0)
        upper = torch.ceil(pos).to(torch.int64).clamp(max=n_in - 1)
        return lower, upper, pos - lo

    y0, y1, dy = axis(h_in, size[0])
    x0, x1, dx = axis(w_in, size[1])
    top, bottom = x.index_select(-2, y0), x.index_select(-2, y1)
    top_left, top_right = top.index_select(-1, x0), top.index_select(-1, x1)
    bottom_left, bottom_right = bottom.index_select(-1, x0), bottom.index_select(-1, x1)
    t = top_left + (top_right - top_left) * dx
    b = bottom_left + (bottom_right - bottom_left) * dx
    return t + (b - t) * dy[:, None]


def _blur_same(x: Tensor, kernel: np.ndarray) -> Tensor:
    """``tf.nn.conv2d(x, kernel, 1, "SAME")`` of an ``(H, W)`` map: a correlation with zero padding, the extra
    row and column at the end (summed in float64, rounded to float32)."""
    k = kernel.shape[0]
    before, after = (k - 1) // 2, k - 1 - (k - 1) // 2
    padded = np.pad(x.numpy().astype(np.float64), ((before, after), (before, after)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel.shape)      # (H, W, k, k)
    return torch.from_numpy(np.einsum("hwij,ij->hw", windows, kernel.astype(np.float64)).astype(np.float32))


def prepare_heatmap(heatmap: np.ndarray | Tensor, image_size: int = IMAGE_SIZE) -> Tensor:
    """The release's heatmap preparation: ``(H, W)`` or ``(H, W, 1)`` map -> float32 ``(image_size, image_size)``.

    Resize to 64 x 64, blur with :func:`gaussian_kernel` (size 10, sigma 10),
    resize to ``image_size`` (both resizes :func:`resize_bilinear`). Units kept.
    """
    m = torch.as_tensor(np.array(heatmap, dtype=np.float32)) if isinstance(heatmap, np.ndarray) else heatmap.float()
    if m.ndim == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise ShapeError(f"heatmap must be (H, W) or (H, W, 1); got shape {tuple(m.shape)}")
    low = resize_bilinear(m, (HEATMAP_LOW_RES, HEATMAP_LOW_RES))
    return resize_bilinear(_blur_same(low, _kernel()), (image_size, image_size))


@functools.cache
def _kernel() -> np.ndarray:
    return gaussian_kernel()


# ----------------------------------------------------------------------------- JPEG
def decode_jpeg(data: bytes, channels: int, decoder: Decoder = "auto") -> np.ndarray:
    """JPEG bytes -> uint8 ``(H, W, channels)``, ``channels`` 3 (RGB) or 1 (grey).

    ``"tensorflow-exact"`` (``"auto"`` when simplejpeg is installed, as it is with
    neuroreg): libjpeg-turbo with the integer-fast DCT and fancy upsampling,
    TensorFlow's ``decode_jpeg`` defaults, giving its pixels exactly. ``"pil"``:
    Pillow's accurate DCT, a few levels (up to about 12 of 255 on the
    fixtures) away from TensorFlow's pixels.
    """
    sj = simplejpeg
    if decoder == "auto":
        decoder = "tensorflow-exact" if sj is not None else "pil"
        if sj is None:
            warnings.warn("simplejpeg is not installed: JPEGs are decoded by Pillow, a few levels away from "
                          "TensorFlow's pixels (pip install simplejpeg)", stacklevel=2)
    if decoder == "tensorflow-exact":
        if sj is None:
            raise ImportError("decoder='tensorflow-exact' needs simplejpeg (pip install simplejpeg)")
        out = sj.decode_jpeg(data, colorspace="RGB" if channels == 3 else "GRAY", fastdct=True,
                             fastupsample=False)
        return np.asarray(out).reshape(out.shape[0], out.shape[1], channels)
    if decoder != "pil":
        raise ValueError(f"decoder must be 'auto', 'tensorflow-exact' or 'pil'; got {decoder!r}")
    with Image.open(io.BytesIO(data)) as img:
        out = np.asarray(img.convert("RGB" if channels == 3 else "L"))
    return out.reshape(out.shape[0], out.shape[1], channels)


def _decoded(feature, name: str, channels: int, decoder: Decoder, where: str) -> np.ndarray:
    if not isinstance(feature, list) or len(feature) != 1:
        raise DataFormatError(f"{where}: feature {name!r} must hold one JPEG (a bytes_list of 1); got {feature!r:.80}")
    try:
        pixels = decode_jpeg(feature[0], channels, decoder)
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"{where}: feature {name!r} is not a readable JPEG ({type(exc).__name__}: {exc})") \
            from exc
    expected = (SOURCE_SIZE, SOURCE_SIZE, channels)
    if pixels.shape != expected:
        raise ShapeError(f"{where}: feature {name!r} decodes to shape {pixels.shape}; the release's format has "
                         f"{expected}")
    return pixels


def parse_clickme_record(record: bytes, image_size: int = IMAGE_SIZE, decoder: Decoder = "auto",
                         where: str = "record") -> tuple[np.ndarray, np.ndarray, int]:
    """One ClickMe ``tf.train.Example`` as the release parses it: ``(image, heatmap, label)``.

    ``image``: float32 ``(S, S, 3)`` in [0, 255]; ``heatmap``: float32 ``(S, S, 1)``
    (see :func:`prepare_heatmap`); ``label``: the int64 class (the release one-hot
    encodes it). ``S = image_size``. ``where`` names the record in errors.
    """
    try:
        features = parse_example(record)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{where}: not a tf.train.Example ({exc})") from exc
    missing = [k for k in ("image", "heatmap", "label") if k not in features]
    if missing:
        raise DataFormatError(f"{where}: missing feature(s) {missing}; found {sorted(features)} (the release's "
                              "records hold image, heatmap and label)")
    label = features["label"]
    if not isinstance(label, np.ndarray) or label.dtype != np.int64 or label.shape != (1,):
        raise DataFormatError(f"{where}: feature 'label' must be one int64; got {label!r:.80}")
    image = torch.from_numpy(_decoded(features["image"], "image", 3, decoder, where).astype(np.float32))
    heatmap = _decoded(features["heatmap"], "heatmap", 1, decoder, where)
    image = resize_bilinear(image.permute(2, 0, 1), (image_size, image_size)).permute(1, 2, 0)
    return image.numpy(), prepare_heatmap(heatmap, image_size).numpy()[..., None], int(label[0])


# ----------------------------------------------------------------------------- datasets
def find_clickme_shards(root: str | Path, split: Literal["train", "val"]) -> list[Path]:
    """The ``split`` shards under ``root``, in shard-number order (``<split>-<i>.tfrecords`` in ``root`` or
    ``root/<split>``, or the release cache's ``clickme_<split>_<i>``); empty when there are none."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val'; got {split!r}")
    root = Path(root).expanduser()
    found: list[Path] = []
    for folder in (root, root / split):
        if folder.is_dir():
            found += [p for p in folder.glob(f"{split}-*.tfrecords") if p.is_file()]
            found += [p for p in folder.glob(f"clickme_{split}_*") if p.is_file()]

    def number(p: Path) -> tuple[int, str]:
        digits = "".join(ch for ch in p.name.split(".")[0].rsplit("-", 1)[-1].rsplit("_", 1)[-1] if ch.isdigit())
        return (int(digits) if digits else -1, p.name)

    return sorted(set(found), key=number)


class ClickMeDataset(Dataset):
    """ClickMe TFRecord shards as a map-style dataset of ``(image, heatmap, token, label)``.

    ``image``: float32 ``(3, S, S)`` in [0, 1] (the release's pixels / 255);
    ``heatmap``: float32 ``(S, S)``, the release's prepared map; ``token``: 1.0
    (every ClickMe image has a map); ``label``: int, the ImageNet class.
    ``S = image_size`` (the release's 224).

    ``shards``: TFRecord paths in order. The record index is built at
    construction from the 12-byte headers (length CRCs checked); ``check_crc``
    verifies each record's data CRC when it is read. Errors name the shard and
    the record index.
    """

    def __init__(self, shards: Sequence[str | Path], image_size: int = IMAGE_SIZE, decoder: Decoder = "auto",
                 check_crc: bool = True, num_classes: int | None = 1000) -> None:
        if image_size < 1:
            raise ValueError(f"image_size must be a positive number of pixels; got {image_size}")
        self.shards = [Path(p).expanduser() for p in shards]
        if not self.shards:
            raise ValueError("ClickMeDataset needs at least one shard; got none")
        self.image_size, self.decoder, self.check_crc, self.num_classes = image_size, decoder, check_crc, num_classes
        self._index: list[tuple[int, int, int, int]] = []     # (shard, record, offset, length)
        for s, path in enumerate(self.shards):
            self._index += [(s, r, off, n) for r, (off, n) in enumerate(index_records(path))]

    def __len__(self) -> int:
        return len(self._index)

    def record(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Item ``i`` exactly as the release parses it (see :func:`parse_clickme_record`)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} ClickMe records")
        s, r, off, n = self._index[i]
        where = f"{self.shards[s]}: record {r}"
        data = read_record(self.shards[s], off, n, r, check_crc=self.check_crc)
        image, heatmap, label = parse_clickme_record(data, self.image_size, self.decoder, where)
        if self.num_classes is not None and not 0 <= label < self.num_classes:
            raise DataFormatError(f"{where}: label {label} is outside [0, {self.num_classes})")
        return image, heatmap, label

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, float, int]:
        image, heatmap, label = self.record(i)
        return (torch.from_numpy(image).permute(2, 0, 1).div(255.0), torch.from_numpy(heatmap[..., 0]), 1.0,
                label)


class ClickMeFolder(Dataset):
    """A folder of images with optional human maps (module docstring) as ``(image, heatmap, token, label)``.

    ``image``: float32 ``(3, S, S)`` in [0, 1], resized with :func:`resize_bilinear`
    as the release resizes ClickMe images; ``heatmap``: float32 ``(S, S)`` (the
    map's own units), zeros with ``token`` 0.0 when the image has no map;
    ``label``: int. ``prepare_maps``: apply the release's ClickMe preparation
    (resize to 64, blur, resize) to the maps; default False (a plain bilinear
    resize: maps already prepared).
    """

    def __init__(self, folder: str | Path, image_size: int = IMAGE_SIZE, prepare_maps: bool = False,
                 num_classes: int | None = None) -> None:
        self.folder = Path(folder).expanduser()
        if image_size < 1:
            raise ValueError(f"image_size must be a positive number of pixels; got {image_size}")
        self.image_size, self.prepare_maps = image_size, prepare_maps
        table = _read_labels(self.folder / "labels.csv", num_classes)
        images = self.folder / "images"
        if not images.is_dir():
            raise FileNotFoundError(f"ClickMe folder {str(self.folder)!r} has no images/ folder")
        self.images = [images / name for name in table["image"]]
        absent = [p.name for p in self.images if not p.is_file()]
        if absent:
            raise DataFormatError(f"{len(absent)} image(s) listed in {self.folder / 'labels.csv'} are missing from "
                                  f"{images}, first: {absent[:5]}")
        self.labels = table["label"].astype(int).tolist()
        self.heatmaps = [self._map_of(p) for p in self.images]

    def _map_of(self, image: Path) -> Path | None:
        for suffix in (".npy", ".png"):
            candidate = self.folder / "heatmaps" / f"{image.stem}{suffix}"
            if candidate.is_file():
                return candidate
        return None

    @property
    def tokens(self) -> np.ndarray:
        """(n,) float: 1 where the image has a map."""
        return np.array([0.0 if h is None else 1.0 for h in self.heatmaps])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, float, int]:
        size = (self.image_size, self.image_size)
        with reading(self.images[i], "the image"), Image.open(self.images[i]) as img:
            pixels = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32))
        image = resize_bilinear(pixels.permute(2, 0, 1), size).div(255.0)
        path = self.heatmaps[i]
        if path is None:
            return image, torch.zeros(size), 0.0, self.labels[i]
        m = _read_map(path)
        heatmap = prepare_heatmap(m, self.image_size) if self.prepare_maps else resize_bilinear(m, size)
        return image, heatmap, 1.0, self.labels[i]


def _read_labels(path: Path, num_classes: int | None) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"ClickMe folder label table {str(path)!r} does not exist (columns image,label)")
    with reading(path, "the label table"):
        try:
            table = pd.read_csv(io.StringIO(read_text(path)), dtype={"image": str})
        except pd.errors.EmptyDataError:
            raise DataFormatError(f"{path}: the file is empty (expected the header image,label)") from None
    missing = [c for c in ("image", "label") if c not in table.columns]
    if missing:
        raise DataFormatError(f"{path}: missing column(s) {missing}; columns are {list(table.columns)} "
                              "(expected image,label)")
    if len(table) == 0:
        raise DataFormatError(f"{path}: lists no image (only the header line)")
    labels = pd.to_numeric(table["label"], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(labels) | (labels != np.round(labels)) | (labels < 0)
    if num_classes is not None:
        bad |= labels >= num_classes
    if bad.any():
        rows = [(int(i) + 2, str(table["image"].iloc[i]), str(table["label"].iloc[i]))
                for i in np.flatnonzero(bad)[:5]]
        limit = f" below num_classes={num_classes}" if num_classes is not None else ""
        raise DataFormatError(f"{path}: labels must be integers >= 0{limit}; first (line, image, label): {rows}")
    if table["image"].duplicated().any():
        twice = table["image"][table["image"].duplicated()].tolist()
        raise DataFormatError(f"{path}: images listed twice: {twice[:5]}")
    return table


def _read_map(path: Path) -> Tensor:
    """A map file as float32 ``(H, W)``: ``.npy`` ``(H, W)`` or ``(H, W, 1)``, or a single-channel PNG."""
    with reading(path, "the heatmap"):
        if path.suffix == ".npy":
            m = np.load(path, allow_pickle=False)
        else:
            with Image.open(path) as img:
                if img.mode not in ("1", "L", "I", "I;16", "F"):
                    raise DataFormatError(f"{path}: a heatmap PNG must have one channel; it has mode {img.mode!r} "
                                          f"({len(img.getbands())} channels)")
                m = np.asarray(img, dtype=np.float32)
    if m.ndim == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.ndim != 2 or m.dtype.kind not in "iufb":
        raise ShapeError(f"{path}: a heatmap must be a numeric (H, W) or (H, W, 1) array; got shape {m.shape} of "
                         f"dtype {m.dtype}")
    out = torch.from_numpy(m.astype(np.float32))
    if not torch.isfinite(out).all():
        raise DataFormatError(f"{path}: the heatmap holds NaN or infinite values")
    return out


def clickme_dataset(root: str | Path, split: Literal["train", "val"], image_size: int = IMAGE_SIZE,
                    decoder: Decoder = "auto", check_crc: bool = True, prepare_maps: bool = False,
                    num_classes: int | None = 1000) -> Dataset:
    """The ``split`` of a ClickMe root: its TFRecord shards (:class:`ClickMeDataset`), else the folder layout
    ``root/<split>/{images,heatmaps,labels.csv}`` (:class:`ClickMeFolder`)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"ClickMe root {str(root)!r} does not exist")
    shards = find_clickme_shards(root, split)
    if shards:
        return ClickMeDataset(shards, image_size, decoder, check_crc, num_classes)
    if (root / split / "labels.csv").is_file():
        return ClickMeFolder(root / split, image_size, prepare_maps, num_classes)
    raise FileNotFoundError(f"ClickMe root {str(root)!r} has no {split} data: expected {split}-<i>.tfrecords (in "
                            f"it or in {split}/), clickme_{split}_<i>, or {split}/images/ with {split}/labels.csv")


def iter_clickme(source: str | Path | Dataset, split: Literal["train", "val"] = "val", batch_size: int = 64,
                 image_size: int = IMAGE_SIZE, limit: int | None = None, num_workers: int = 0,
                 drop_last: bool = False) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Batches ``(images, heatmaps, labels)`` of the images that have a human map, shard by shard in file order.

    ``images``: float32 ``(B, 3, S, S)`` in [0, 1] (unnormalised: apply the
    model's preprocessing); ``heatmaps``: float32 ``(B, S, S)``; ``labels``: long
    ``(B,)``. ``source``: a ClickMe root (its ``split``, see :func:`clickme_dataset`)
    or a dataset of ``(image, heatmap, token, label)``. ``limit``: at most this
    many images. ``drop_last``: leave out the last incomplete batch of
    ``batch_size`` items, as the release's ``load_clickme`` does (its
    ``evaluate_clickme`` reads batches of 64; it reads the shards interleaved,
    so the images it leaves out are others).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    dataset = source if isinstance(source, Dataset) else clickme_dataset(source, split, image_size)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        drop_last=drop_last)
    served = 0
    for images, heatmaps, tokens, labels in loader:
        keep = tokens > 0
        if limit is not None:
            keep &= torch.cumsum(keep.long(), 0) + served <= limit
        if keep.any():
            served += int(keep.sum())
            yield images[keep], heatmaps[keep], labels[keep].long()
        if limit is not None and served >= limit:
            return
