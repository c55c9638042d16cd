"""Read activations of named layers out of any model: batched, hook-based, optionally streamed to HDF5.

>>> feats = extract(model, images, ["layer3", "layer4"], batch_size=64)
>>> feats["layer4"].shape        # (n_stimuli, C, H, W)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sized
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import h5py
import numpy as np
import torch
from torch import Tensor, nn
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from neuroreg._utils.capture import capture_outputs
from neuroreg._utils.modes import eval_mode
from neuroreg._utils.checks import check_finite
from neuroreg._utils.io import PathLock, check_output_target, ensure_free_space, is_disk_full, reading
from neuroreg._utils.images import IMAGE_EXTENSIONS, check_pixel_range, images_to_tensor, list_images
from neuroreg.errors import NonFiniteError, OutputError, ShapeError, UnknownNameError
from neuroreg.models.stimulus_noise import StimulusNoise
from neuroreg.data.preprocessing import preprocessing_of
from neuroreg.features._h5_file import FeaturesFile, write_failure
from neuroreg.features.projection import SparseRandomProjection

__all__ = ["extract", "Features", "resolve_layers", "IMAGE_EXTENSIONS", "EXTRACT_VERSION"]

#: bumped whenever the same :func:`extract` call gives other features, so stored features are not re-used
#: across the change (2: VOneBlock noise drawn per stimulus id; 3: that noise from a counter-based draw on the
#: images' own device, and one resize for every caller; 4: that draw's uniforms taken in blocks and turned into
#: normals through the half angle, a cheaper draw of other numbers)
EXTRACT_VERSION = 4

_AREA_NAMES = ("V1", "V2", "V4", "IT")
_POOLS = ("avg", "max", "srp")


class Features(Mapping):
    """Mapping layer name -> tensor ``(n_stimuli, ...)`` with the stimulus ids.

    In memory, values are CPU tensors. When written with ``out=path`` the data
    live in an HDF5 file (one dataset per layer, first axis = stimuli):
    ``feats[layer]`` then reads the whole layer, while :meth:`iter_batches`
    streams it in bounded memory.
    """

    def __init__(self, data: Mapping[str, Tensor] | None = None, *,
                 stimulus_ids: Sequence[Any] | np.ndarray | None = None,
                 path: str | Path | None = None, layers: Sequence[str] | None = None,
                 module_names: Mapping[str, str] | None = None) -> None:
        self._data = dict(data or {})
        self.path = Path(path) if path is not None else None
        self._layers = list(layers) if layers is not None else list(self._data)
        self.stimulus_ids = None if stimulus_ids is None else np.asarray(stimulus_ids)
        self.module_names = dict(module_names or {})

    def __getitem__(self, layer: str) -> Tensor:
        if layer not in self._layers:
            raise KeyError(f"no features for layer {layer!r}; have {self._layers}")
        if self.path is None:
            return self._data[layer]
        with h5py.File(self.path, "r") as f:
            return torch.from_numpy(f["features"][layer][...])

    def __iter__(self) -> Iterator[str]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def shape(self, layer: str) -> tuple[int, ...]:
        """Shape of a layer without loading it."""
        if self.path is None:
            return tuple(self[layer].shape)
        with h5py.File(self.path, "r") as f:
            return tuple(f["features"][layer].shape)

    @property
    def n_stimuli(self) -> int:
        return self.shape(self._layers[0])[0] if self._layers else 0

    def iter_batches(self, layer: str, batch_size: int = 256) -> Iterator[Tensor]:
        """Yield ``(b, ...)`` consecutive stimulus batches of one layer."""
        if self.path is None:
            x = self._data[layer]
            for i in range(0, x.shape[0], batch_size):
                yield x[i:i + batch_size]
            return
        with h5py.File(self.path, "r") as f:
            ds = f["features"][layer]
            for i in range(0, ds.shape[0], batch_size):
                yield torch.from_numpy(ds[i:i + batch_size])

    def flat(self, layer: str) -> Tensor:
        """Layer as ``(n_stimuli, n_features)``."""
        return self[layer].flatten(1)

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path is not None else ""
        shapes = ", ".join(f"{k}: {self.shape(k)}" for k in self._layers)
        return f"Features({shapes}{where})"


# ----------------------------------------------------------------------------- stimuli
class _TensorImages(Dataset):
    def __init__(self, x: Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        return self.x[i]


class _PathImages(Dataset):
    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Tensor:
        with reading(self.paths[i], "the image"), Image.open(self.paths[i]) as img:
            arr = np.asarray(img.convert("RGB"))
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def _as_dataset(stimuli) -> tuple[Dataset, np.ndarray | None]:
    """Turn any supported stimulus container into a Dataset of ``(3, H, W)`` float tensors."""
    if isinstance(stimuli, Dataset):
        return stimuli, None
    if isinstance(stimuli, (str, os.PathLike)):
        folder = Path(stimuli)
        paths = list_images(folder)
        return _PathImages(paths), np.array([str(p.relative_to(folder)) for p in paths])
    if isinstance(stimuli, (list, tuple)) and stimuli and isinstance(stimuli[0], (str, os.PathLike)):
        paths = [Path(p) for p in stimuli]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} stimulus files do not exist (first: {missing[0]})")
        return _PathImages(paths), np.array([str(p) for p in stimuli])
    if isinstance(stimuli, np.ndarray) or isinstance(stimuli, Tensor):
        x = stimuli if isinstance(stimuli, Tensor) else torch.from_numpy(np.ascontiguousarray(stimuli))
        if x.ndim != 4:
            raise ShapeError(f"stimuli must be 4-D images (n, 3, H, W) float or (n, H, W, 3) uint8; "
                             f"got shape {tuple(x.shape)}")
        x = images_to_tensor(x) if x.dtype == torch.uint8 else x
        if not torch.is_floating_point(x):
            raise TypeError(f"stimuli tensors must be float (or uint8 images); got dtype {x.dtype}")
        check_finite("stimuli", x)
        if x.shape[0]:
            lo, hi = x.detach().flatten(1).aminmax(dim=1)
            check_pixel_range("stimuli", lo, hi)
        return _TensorImages(x), None
    raise TypeError(f"stimuli must be a tensor, a uint8 array, a list of image paths, a folder or a "
                    f"torch Dataset; got {type(stimuli).__name__}")


def _dataset_len(dataset: Dataset) -> int:
    """``len(dataset)``; a Dataset without ``__len__`` (e.g. an ``IterableDataset``) raises TypeError."""
    if not isinstance(dataset, Sized):
        raise TypeError(f"stimuli datasets must have a length (__len__); got {type(dataset).__name__} without one")
    return len(dataset)


def _image_of(item) -> Tensor:
    """Datasets may return ``image`` or ``(image, label, ...)``."""
    if isinstance(item, (tuple, list)):
        item = item[0]
    if not isinstance(item, Tensor):
        raise TypeError(f"dataset items must be image tensors or (image, ...) tuples; got {type(item).__name__}")
    return item


# ----------------------------------------------------------------------------- layers
def resolve_layers(model: nn.Module, layers: str | Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """Map output names to module names; area aliases V1/V2/V4/IT use the model's area map.

    ``layers`` is a module name, a list of them (aliases allowed), or a dict
    output name -> module name. Unknown names raise with the available names.
    """
    if isinstance(layers, str):
        layers = [layers]
    pairs = dict(layers) if isinstance(layers, Mapping) else {name: name for name in layers}
    if not pairs:
        raise ValueError("layers must name at least one module")
    modules = dict(model.named_modules())
    area_map: dict[str, str] | None = None
    resolved = {}
    for out_name, module_name in pairs.items():
        if module_name not in modules and module_name in _AREA_NAMES:
            if area_map is None:
                from neuroreg.models.zoo import area_layers  # local: loads timm; this module needs torch only
                area_map = area_layers(model)
            module_name = area_map[module_name]
        if module_name not in modules or module_name == "":
            close = [n for n in modules if n and module_name.split(".")[-1] in n][:8]
            hint = f"; similar: {close}" if close else f"; top-level modules: {[n for n in modules if n and '.' not in n][:20]}"
            raise UnknownNameError(f"layer {module_name!r} is not a module of {type(model).__name__}{hint}")
        resolved[out_name] = module_name
    return resolved


def _select_time(calls: list[Tensor], time_step, layer: str) -> Tensor:
    if not calls:
        raise RuntimeError(f"layer {layer!r} was not called during the forward pass")
    if time_step == "last":
        return calls[-1]
    if time_step == "all":
        shapes = {tuple(c.shape) for c in calls}
        if len(shapes) > 1:
            raise ShapeError(f"layer {layer!r} returns different shapes across calls {sorted(shapes)}; "
                             "use time_step='last' or an index")
        return torch.stack(calls, dim=1)
    if isinstance(time_step, int):
        if not -len(calls) <= time_step < len(calls):
            raise IndexError(f"time_step={time_step} but layer {layer!r} was called {len(calls)} times per forward")
        return calls[time_step]
    raise ValueError(f"time_step must be 'last', 'all' or an int; got {time_step!r}")


def _pool(x: Tensor, pool: str | None, srp: SparseRandomProjection | None, n_lead: int = 1) -> Tensor:
    """Pool one activation; ``n_lead`` leading axes are kept (2 when time steps are stacked on axis 1).

    Per stimulus, ``(C, H, W)`` maps are pooled over space -> ``(C,)``;
    ``(tokens, D)`` outputs (ViT blocks) over the tokens -> ``(D,)``; vectors pass.
    """
    if pool is None:
        return x
    if pool == "srp":
        if srp is None:
            raise ValueError("pool='srp' needs the projection srp (a SparseRandomProjection); got srp=None")
        lead = x.shape[:n_lead]
        return srp(x.reshape(int(np.prod(lead)), -1)).reshape(*lead, -1)
    per_item = x.ndim - n_lead
    if per_item <= 1:
        return x  # already a vector per stimulus
    if per_item == 3:
        dims: tuple[int, ...] = (x.ndim - 2, x.ndim - 1)
    elif per_item == 2:
        dims = (n_lead,)
    else:
        raise ShapeError(f"pool={pool!r} reads (C, H, W) maps or (tokens, D) outputs per stimulus; got an "
                         f"activation of shape {tuple(x.shape)}; use pool=None or 'srp'")
    return x.mean(dim=dims) if pool == "avg" else x.amax(dim=dims)


def _intermediate_indices(model: nn.Module, names: Mapping[str, str], time_step) -> dict[str, int] | None:
    """Feature index of each requested module when ``forward_intermediates`` can replace hooks.

    Only for models that declare their intermediates to be the modules' own
    outputs (neuroreg's CORnets and VOneNets; a timm ViT's intermediates are
    reshaped and drop the class token, so hooks stay), and only for the last
    time step of recurrent areas.
    """
    if time_step != "last" or not getattr(model, "intermediates_are_module_outputs", False):
        return None
    if not hasattr(model, "forward_intermediates"):
        return None
    info = getattr(model, "feature_info", None)
    if info is None:
        raise AttributeError(f"{type(model).__name__} declares intermediates_are_module_outputs and has "
                             "forward_intermediates but no feature_info")
    position = {f["module"]: i for i, f in enumerate(info)}
    if not all(m in position for m in names.values()):
        return None
    return {key: position[m] for key, m in names.items()}


# ----------------------------------------------------------------------------- extract
@torch.no_grad()
def extract(model: nn.Module, stimuli, layers: str | Sequence[str] | Mapping[str, str], batch_size: int = 64,
            device: str | torch.device | None = None, transform: Callable[[Tensor], Tensor] | str | None = None,
            time_step: str | int = "last", pool: str | None = None, out: str | Path | None = None, *,
            srp_dim: int = 5920, seed: int = 0, stimulus_ids: Sequence[Any] | np.ndarray | None = None,
            num_workers: int = 0, progress: bool | None = None) -> Features:
    """Activations of ``layers`` for every stimulus, in stimulus order.

    Parameters
    ----------
    model: any ``nn.Module``; its train/eval state and device are restored afterwards.
    stimuli: float tensor ``(n, 3, H, W)``, uint8 array ``(n, H, W, 3)``, list of
        image paths, a folder (images found recursively, sorted) or a torch
        Dataset returning an image tensor or ``(image, ...)``.
    layers: module names (``"layer4.1.conv2"``), area aliases (``"V1"``..``"IT"``)
        or a dict output name -> module name.
    transform: applied to each ``(3, H, W)`` image before batching (e.g. resize
        and normalise); required when images differ in size. ``"model"``: the
        model's preprocessing contract (:func:`neuroreg.preprocessing_of`: resize to
        its input size, normalise with its mean/std), as scoring uses.
    time_step: for modules called several times per forward (recurrent CORnet
        areas): ``"last"``, ``"all"`` (stacked on axis 1) or an index.
    pool: ``None`` (full maps), ``"avg"``/``"max"`` (spatial pooling of ``(C, H, W)`` maps
        -> ``(n, C)``; token outputs ``(tokens, D)`` are pooled over tokens -> ``(n, D)``),
        or ``"srp"`` (seeded sparse random projection to ``srp_dim`` dims).
    out: HDF5 path; features are streamed there batch by batch and the returned
        :class:`Features` reads from it lazily. The file appears under its name only
        when complete (temporary file + rename); a folder or unwritable ``out`` fails
        before any work, the free space is checked against the size estimated from
        the first batch, and ``out.lock`` keeps a second process from writing the
        same file at once (it fails with :class:`~neuroreg.errors.RunLockedError`).
    seed: seeds the stochastic layers and the ``"srp"`` projection: the same seed
        gives the same features. VOneBlock noise is drawn per stimulus from
        ``(seed, stimulus id)`` (:class:`~neuroreg.models.stimulus_noise.StimulusNoise`),
        so a stochastic network's features do not change with row order, batch
        size or device. The global RNG state is restored afterwards.
    progress: show a progress bar (default: only on a terminal).

    Images of any float dtype (float16, bfloat16, float64) are converted to the
    model's floating dtype; NaN or inf in any image raises ``NonFiniteError``.
    Float images are read in [0, 1]: images on the 0..255 scale (values above 1,
    none below 0) raise ``ValueError`` naming the first one (checked on the images
    as given, before ``transform``; images with negative values are taken as a
    network's own normalised inputs and pass). Images of different sizes (after
    ``transform``) raise ``ShapeError`` naming two of them with their sizes.

    Returns a :class:`Features` mapping output name -> ``(n, ...)`` float32 CPU tensor.
    Area maps of models with timm's ``forward_intermediates`` whose
    intermediates are the modules' outputs (CORnets, VOneNets) are read that
    way, and the forward stops after the deepest area asked for; other layers
    are read by forward hooks, removed even if the forward pass raises.
    """
    _check_extract_arguments(batch_size, pool, time_step)
    if out is not None:
        out = check_output_target(out, kind="file", name="out")
    transform = _resolve_transform(model, transform)
    names = resolve_layers(model, layers)
    dataset, ids, stimulus_names = _stimuli_with_ids(stimuli, stimulus_ids)
    n = len(ids)
    params = list(model.parameters()) + list(model.buffers())
    float_dtype = next((p.dtype for p in params if torch.is_floating_point(p)), torch.float32)
    run_device = torch.device(device) if device is not None else (params[0].device if params else torch.device("cpu"))
    srp = SparseRandomProjection(srp_dim, seed=seed) if pool == "srp" else None
    loader = torch.utils.data.DataLoader(
        _Transformed(dataset, transform, check_range=not isinstance(dataset, _TensorImages)), batch_size=batch_size,
        shuffle=False, num_workers=num_workers, collate_fn=_collate)
    first_image: tuple[int, ...] | None = None
    store: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if out is not None:
            stack.enter_context(PathLock(out.with_name(out.name + ".lock"), purpose="neuroreg extract"))
        stack.enter_context(torch.random.fork_rng(devices=[run_device] if run_device.type == "cuda" else []))
        torch.manual_seed(seed)
        h5 = stack.enter_context(FeaturesFile(out))
        stack.enter_context(eval_mode(model, run_device))
        noise = stack.enter_context(StimulusNoise(model, seed))
        # Area maps through forward_intermediates, which stops after the deepest area asked for.
        feature_index = _intermediate_indices(model, names, time_step)
        calls = (stack.enter_context(capture_outputs(model, names, detach=True, keep="all"))
                 if feature_index is None else {k: [] for k in names})
        start = 0
        for batch in tqdm(loader, desc="extract", unit="batch", disable=None if progress is None else not progress,
                          leave=False):
            images, shapes, lo, hi = batch
            check_pixel_range("stimuli", lo, hi, first_index=start, names=stimulus_names)
            first_image = shapes[0] if first_image is None else first_image
            _check_sizes(shapes, first_image, start, stimulus_names, transform)
            batch = _checked_batch(images, start, float_dtype).to(run_device, non_blocking=True)
            if noise.active:
                noise.set_batch(ids[start:start + batch.shape[0]].tolist())
            acts = _batch_activations(model, batch, names, calls, feature_index, time_step, pool, srp)
            if start == 0:
                store = _allocate_store(h5, out, acts, n)
            _store_batch(store, start, acts, out)
            start += batch.shape[0]
        _describe_file(h5, names, ids)
    if out is not None:
        return Features(stimulus_ids=ids, path=out, layers=list(names), module_names=names)
    return Features(store, stimulus_ids=ids, module_names=names)


def _resolve_transform(model: nn.Module, transform: Callable[[Tensor], Tensor] | str | None):
    """The per-image transform: ``transform`` itself, or for ``"model"`` the model's preprocessing contract."""
    if not isinstance(transform, str):
        return transform
    if transform != "model":
        raise ValueError(f"transform must be a callable, None or 'model'; got {transform!r}")
    return preprocessing_of(model)


def _stimuli_with_ids(stimuli, stimulus_ids) -> tuple[Dataset, np.ndarray, np.ndarray | None]:
    """(the stimuli as a Dataset, ``(n,)`` stimulus ids, the ids to name stimuli by in errors or None).

    The ids are ``stimulus_ids``, else those the stimuli carry (file names), else ``0..n-1``.
    """
    dataset, default_ids = _as_dataset(stimuli)
    n = _dataset_len(dataset)
    if n == 0:
        raise ValueError("stimuli is empty")
    ids = np.asarray(stimulus_ids) if stimulus_ids is not None else (default_ids if default_ids is not None else np.arange(n))
    if len(ids) != n:
        raise ValueError(f"stimulus_ids has {len(ids)} entries but there are {n} stimuli")
    return dataset, ids, (ids if default_ids is not None or stimulus_ids is not None else None)


def _check_extract_arguments(batch_size: int, pool: str | None, time_step: str | int) -> None:
    """Refuse a bad ``batch_size``, ``pool`` or ``time_step`` of :func:`extract` before any work."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if pool is not None and pool not in _POOLS:
        raise ValueError(f"pool must be None or one of {_POOLS}; got {pool!r}")
    if not (time_step in ("last", "all") or isinstance(time_step, int)):
        raise ValueError(f"time_step must be 'last', 'all' or an int; got {time_step!r}")


def _batch_activations(model: nn.Module, batch: Tensor, names: Mapping[str, str], calls: dict[str, list[Tensor]],
                       feature_index: dict[str, int] | None, time_step: str | int, pool: str | None,
                       srp: SparseRandomProjection | None) -> dict[str, Tensor]:
    """One forward pass of ``batch``: output name -> float32 CPU ``(b, ...)`` activations, time step chosen, pooled.

    With ``feature_index`` (see :func:`_intermediate_indices`) the maps come from
    ``forward_intermediates``; without it, from the hooks that fill ``calls``.
    """
    _run_forward(model, batch, calls, feature_index)
    return {key: _pool(_select_time(calls[key], time_step, key), pool, srp,
                       n_lead=2 if time_step == "all" else 1).float().cpu() for key in names}


def _run_forward(model: nn.Module, batch: Tensor, calls: dict[str, list[Tensor]],
                 feature_index: dict[str, int] | None) -> None:
    """One forward pass of ``batch``; ``calls[key]`` holds the outputs of each requested module afterwards."""
    for v in calls.values():
        v.clear()
    if feature_index is None:
        model(batch)
        return
    take = sorted(set(feature_index.values()))
    forward_intermediates = getattr(model, "forward_intermediates")   # checked present by _intermediate_indices
    maps = dict(zip(take, forward_intermediates(batch, indices=take, intermediates_only=True)))
    for key, i in feature_index.items():
        calls[key].append(maps[i].detach())


def _store_batch(store: dict[str, Any], start: int, acts: dict[str, Tensor], out: Path | None) -> None:
    """Write one batch of activations at row ``start``; an HDF5 write failure becomes ``OutputError`` naming ``out``."""
    for key, act in acts.items():
        try:
            _write(store[key], start, act)
        except (OSError, RuntimeError) as exc:   # HDF5 could not write: full disk, size limit, I/O error
            if out is None or isinstance(exc, OutputError) or is_disk_full(exc):
                raise                            # a full disk is reported by atomic_path, naming out
            raise OutputError(f"{out}: cannot write the features file: {write_failure(exc)}") from exc


def _describe_file(h5: h5py.File | None, names: Mapping[str, str], ids: np.ndarray) -> None:
    """The layer names, stimulus ids and module of each layer, stored beside the features (when streamed)."""
    if h5 is None:
        return
    h5.attrs["layers"] = list(names)
    h5.create_dataset("stimulus_ids", data=np.asarray(ids).astype(str).astype("S"))
    for key, mod in names.items():
        h5["features"][key].attrs["module"] = mod


def _checked_batch(batch: Tensor, start: int, dtype: torch.dtype) -> Tensor:
    """Convert a batch of images to the model's float dtype; refuse NaN/inf naming the stimulus index."""
    if not isinstance(batch, Tensor) or not torch.is_floating_point(batch):
        kind = batch.dtype if isinstance(batch, Tensor) else type(batch).__name__
        raise TypeError(f"stimuli must be float images in [0, 1] (or uint8 arrays); the dataset gave {kind} "
                        f"at stimulus {start}")
    if batch.dtype != dtype:
        batch = batch.to(dtype)
    if not bool(torch.isfinite(batch.sum(dtype=torch.float64))):
        bad = (~torch.isfinite(batch)).flatten(1).any(1).nonzero().flatten()
        raise NonFiniteError(f"stimuli contain NaN or inf: {len(bad)} image(s) in the batch starting at stimulus "
                             f"{start}, first at stimulus {start + int(bad[0])}")
    return batch


class _Transformed(Dataset):
    """Items ``(image after the transform, min, max of the image before it)``: the range is checked on
    the images as given, since a normalising transform moves them out of [0, 1]."""

    def __init__(self, base: Dataset, transform, check_range: bool = True) -> None:
        self.base, self.transform, self.check_range = base, transform, check_range

    def __len__(self) -> int:
        return _dataset_len(self.base)

    def __getitem__(self, i: int) -> tuple[Tensor, float, float]:
        x = _image_of(self.base[i])
        lo, hi = 0.0, 1.0
        if self.check_range and torch.is_floating_point(x) and x.numel():
            lo_t, hi_t = x.detach().aminmax()
            lo, hi = float(lo_t), float(hi_t)
        return (self.transform(x) if self.transform is not None else x), lo, hi


def _collate(items: list[tuple[Tensor, float, float]]) -> tuple[Tensor | None, list[tuple[int, ...]], Tensor, Tensor]:
    """(batch, shape of each image, min and max of each image); the batch is None when the shapes differ."""
    images = [item[0] for item in items]
    shapes = [tuple(x.shape) if isinstance(x, Tensor) else () for x in images]
    lo = torch.tensor([item[1] for item in items], dtype=torch.float64)
    hi = torch.tensor([item[2] for item in items], dtype=torch.float64)
    if len(set(shapes)) > 1:
        return None, shapes, lo, hi
    return torch.utils.data.default_collate(images), shapes, lo, hi


def _check_sizes(shapes: list[tuple[int, ...]], first: tuple[int, ...], start: int, names, transform) -> None:
    """Refuse images of another size than the first stimulus, naming both and saying what to do."""
    for i, shape in enumerate(shapes):
        if shape != first:
            def name(index: int) -> str:
                return f"stimulus {index}" + (f" ({names[index]!s})" if names is not None else "")
            size = " x ".join(str(d) for d in shape)
            size0 = " x ".join(str(d) for d in first)
            todo = ("pass transform='model' (the model's preprocessing: resize to its input size and normalise) "
                    "or a transform that resizes every image to one size") if transform is None else (
                    "the transform must give every image one size (e.g. resize and crop to a fixed size), or use "
                    "transform='model'")
            where = "" if transform is None else " after the transform"
            raise ShapeError(f"stimuli differ in size{where}: {name(start + i)} is {size} but {name(0)} is {size0}; "
                             f"{todo}")


def _allocate_store(h5: h5py.File | None, out: Path | None, acts: dict[str, Tensor], n: int) -> dict[str, Any]:
    """layer -> an ``(n, ...)`` float32 target shaped like the first batch's ``acts``: a tensor, or an HDF5 dataset.

    The free space for the whole file is checked first, so a short disk stops before anything is written.
    """
    if out is not None:
        ensure_free_space(out, sum(4 * n * int(np.prod(a.shape[1:])) for a in acts.values()),
                          f"{n} stimuli x {len(acts)} layers of float32 features")
    return {key: _allocate(h5, key, (n, *a.shape[1:])) for key, a in acts.items()}


def _allocate(h5, key: str, shape: tuple[int, ...]):
    if h5 is None:
        return torch.empty(shape, dtype=torch.float32)
    per_item = int(np.prod(shape[1:])) or 1
    rows = max(1, min(shape[0], (1 << 20) // per_item))  # ~4 MB chunks
    return h5["features"].create_dataset(key, shape=shape, dtype="f4", chunks=(rows, *shape[1:]))


def _write(target, start: int, act: Tensor) -> None:
    if tuple(target.shape[1:]) != tuple(act.shape[1:]):
        raise ShapeError(f"activation shape changed between batches: {tuple(target.shape[1:])} vs "
                         f"{tuple(act.shape[1:])}; resize stimuli to one size (transform=...)")
    if isinstance(target, Tensor):
        target[start:start + act.shape[0]] = act
    else:
        target[start:start + act.shape[0]] = act.numpy()


