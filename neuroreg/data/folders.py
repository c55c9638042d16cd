"""Lightning DataModules: task images plus the neural stimuli of an alignment target.

Every module yields training batches as dicts::

    {"image": (B, 3, S, S) float, "label": (B,) long,
     "neural_image": (b, 3, S, S) float, "neural_index": (b,) long}   # neural keys only with a neural set

``neural_index`` is the position of each stimulus in :attr:`~AlignedDataModule.neural_ids`.
Validation has two loaders: task images, and the held-out neural stimuli
(``{"neural_image", "neural_index"}``) on which the held-out CKA is measured.

Task and neural images are normalised with the trained model's preprocessing
contract (:func:`neuroreg.data.preprocessing.preprocessing_of`: its ``pretrained_cfg``
mean/std, e.g. 0.5/0.5 for VOneNets), the same one extraction, scoring and the
robustness wrapper use. The contract comes from ``model_name``, else from the
backbone of the LightningModule the data module is trained with (read at
``setup``), else from :meth:`AlignedDataModule.use_model`. ``normalize=False``
serves raw [0, 1] pixels, for a model that normalises inside itself.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sized
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import ImageFolder

from neuroreg._utils.io import reading
from neuroreg.brain.bundled import bundled_sets, load_bundled
from neuroreg.brain.data import BrainData, NeuralStimulusSet, StimulusSource, images_to_tensor
from neuroreg.brain.generic import read_image
from neuroreg.errors import DataFormatError, ShapeError, UnknownNameError
from neuroreg.data.preprocessing import Preprocessing, preprocessing_of
from neuroreg.data.sampling import JointSampler, ResumableLoader

__all__ = ["AlignedDataModule", "GratingsDataModule", "ImageFolderDataModule", "ImageNetDataModule",
           "GratingsDataset", "load_neural_stimuli"]



# ----------------------------------------------------------------------------- task data
def _dataset_len(dataset: Dataset, what: str) -> int:
    """``len(dataset)``; a TypeError naming ``what`` when the dataset has no length (torch's Dataset need not)."""
    if not isinstance(dataset, Sized):
        raise TypeError(f"{what} must be a map-style dataset with __len__; got {type(dataset).__name__}")
    return len(dataset)


class GratingsDataset(Dataset):
    """Procedural oriented gratings: class ``c`` of ``num_classes`` is orientation ``c * 180 / num_classes`` deg.

    Each image has a random spatial frequency (2-6 cycles per image), phase,
    contrast, colour tint, orientation jitter (a quarter of the class spacing)
    and pixel noise, drawn from ``(seed, index)``: item ``i`` is the same image
    on every call. Returns ``(image (3, S, S) in [0, 1], label)``.

    ``num_classes``: orientation classes, None for 4.
    """

    def __init__(self, n: int, num_classes: int | None = None, image_size: int = 32, seed: int = 0) -> None:
        k = 4 if num_classes is None else num_classes
        if n < 1 or k < 2 or image_size < 8:
            raise ValueError(f"need n >= 1, num_classes >= 2, image_size >= 8; got {n}, {k}, {image_size}")
        self.n, self.num_classes, self.image_size, self.seed = n, k, image_size, seed
        ax = torch.linspace(-0.5, 0.5, image_size)
        self._yy, self._xx = torch.meshgrid(ax, ax, indexing="ij")

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} gratings")
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        label = i % self.num_classes
        u = torch.rand(8, generator=g)
        spacing = torch.pi / self.num_classes
        theta = label * spacing + (u[0] - 0.5) * spacing / 2
        sf = 2.0 + 4.0 * u[1]
        phase = 2 * torch.pi * u[2]
        contrast = 0.3 + 0.7 * u[3]
        # x right, y down: cos(2 pi f (x cos theta + y sin theta)) has orientation theta.
        wave = torch.cos(2 * torch.pi * sf * (self._xx * torch.cos(theta) + self._yy * torch.sin(theta)) + phase)
        tint = 0.6 + 0.4 * u[4:7]
        img = 0.5 + 0.5 * contrast * wave[None] * tint[:, None, None]
        img = img + 0.05 * torch.randn(3, self.image_size, self.image_size, generator=g)
        return img.clamp(0, 1), label


class _Transformed(Dataset):
    """Items of ``base`` at ``indices`` with ``transform`` applied to the image (PIL or tensor)."""

    def __init__(self, base: Dataset, indices: Sequence[int] | None, transform: Callable | None) -> None:
        self.base = base
        self.indices = list(range(_dataset_len(base, "base"))) if indices is None else list(indices)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        image, label = self.base[self.indices[i]]
        return (self.transform(image) if self.transform is not None else image), int(label)


class _JointDataset(Dataset):
    """Task items keyed by ``(task_index, neural_index, augmentation_seed)`` from a JointSampler."""

    def __init__(self, task: Dataset, neural_images: Tensor | None) -> None:
        self.task, self.neural_images = task, neural_images

    def __len__(self) -> int:
        return _dataset_len(self.task, "task")

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[Tensor, int, Tensor | None, int]:
        t, n, seed = key
        # Augmentations draw from torch's global RNG: seed it per item, and leave it as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            image, label = self.task[t]
        if n < 0:
            return image, label, None, n
        if self.neural_images is None:
            raise ValueError(f"key {key!r} asks for neural stimulus {n}, but this dataset has no neural images "
                             "(neural_images=None)")
        return image, label, self.neural_images[n], n


def _collate_joint(items) -> dict[str, Tensor]:
    batch = {"image": torch.stack([it[0] for it in items]),
             "label": torch.tensor([it[1] for it in items], dtype=torch.long)}
    neural = [(it[2], it[3]) for it in items if it[3] >= 0]
    if neural:
        batch["neural_image"] = torch.stack([n[0] for n in neural])
        batch["neural_index"] = torch.tensor([n[1] for n in neural], dtype=torch.long)
    return batch


def _collate_task(items) -> dict[str, Tensor]:
    return {"image": torch.stack([it[0] for it in items]),
            "label": torch.tensor([it[1] for it in items], dtype=torch.long)}


class _NeuralItems(Dataset):
    def __init__(self, images: Tensor, positions: Tensor) -> None:
        self.images, self.positions = images, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        p = int(self.positions[i])
        return {"neural_image": self.images[p], "neural_index": torch.tensor(p)}


# ----------------------------------------------------------------------------- neural stimuli
def load_neural_stimuli(source: str | BrainData | NeuralStimulusSet) -> NeuralStimulusSet:
    """Images and ids of a neural stimulus set, as a :class:`~neuroreg.brain.NeuralStimulusSet` of float
    ``(n, 3, H, W)`` images in [0, 1].

    ``source``: ``"kriegeskorte92"``, ``"algonauts2019_78"`` (bundled; an
    ``"<set>:<rdm>"`` target string also works), a ``.npz`` file holding
    ``images`` (uint8 ``n x H x W x 3`` or float ``n x 3 x H x W``) and
    ``stimulus_ids``, a :class:`BrainData` with ``stimuli``, a
    :class:`~neuroreg.brain.NeuralStimulusSet`, or any other
    :class:`~neuroreg.brain.StimulusSource`.
    """
    if isinstance(source, StimulusSource):
        return NeuralStimulusSet(source.name, source.images_tensor(), source.stimulus_ids)
    if not isinstance(source, str):
        raise TypeError(f"neural must be a set name, .npz path, BrainData or NeuralStimulusSet; "
                        f"got {type(source).__name__}")
    if source.endswith(".npz"):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"neural stimulus file {source!r} does not exist")
        with reading(path, "the neural stimulus file"), np.load(path, allow_pickle=False) as npz:
            if "images" not in npz:
                raise DataFormatError(f"{path} has no 'images' array (keys: {sorted(npz.keys())})")
            images = images_to_tensor(np.asarray(npz["images"]))
            ids = np.asarray(npz["stimulus_ids"]) if "stimulus_ids" in npz else np.arange(len(images))
        if len(ids) != len(images):
            raise ShapeError(f"{path}: {len(images)} images but {len(ids)} stimulus_ids")
        return NeuralStimulusSet(path.stem, images, ids)
    name = source.partition(":")[0]
    if name not in bundled_sets():
        raise UnknownNameError(f"neural stimulus set {source!r} is not bundled ({tuple(bundled_sets())}) "
                               "and not a .npz file")
    data = load_bundled(name)
    return NeuralStimulusSet(data.name, data.images_tensor(), data.stimulus_ids)


# ----------------------------------------------------------------------------- data modules
def _default_workers() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cpus - 1))


class AlignedDataModule(L.LightningDataModule):
    """Shared part of the data modules: batching, neural stimuli, held-out split, loaders.

    Parameters
    ----------
    train_dataset, val_dataset, classes: any datasets returning ``(image (3, S, S)
        float tensor, label)`` and the class names (subclasses build these).
    neural: neural stimulus set (see :func:`load_neural_stimuli`) or None.
    neural_batch_size: neural stimuli per training batch (drawn without replacement).
    neural_holdout: fraction of the neural stimuli held out (seeded) to measure
        held-out alignment; they never enter a training batch.
    batch_size: task images per batch (per device under DDP).
    image_size: side length in pixels; None takes the model's ``pretrained_cfg``
        input size (``model_name``) or 224.
    num_workers: DataLoader workers; None picks ``min(8, cpus - 1)`` for image
        folders and 0 for generated data.
    normalize: apply the model's preprocessing mean/std (default). False only for
        a model that normalises [0, 1] input itself.
    model_name: timm/neuroreg model name whose preprocessing contract gives input
        size, crop fraction, interpolation, mean and std. None: the contract of
        the trained backbone (``trainer.lightning_module.backbone``) at setup, or
        the one given to :meth:`use_model`.
    seed: drives the batch order, neural draws, augmentations and splits.
    """

    def __init__(self, train_dataset: Dataset | None = None, val_dataset: Dataset | None = None,
                 classes: Sequence[str] | None = None, neural: Any = None, neural_batch_size: int = 32,
                 neural_holdout: float = 0.25, batch_size: int = 64, image_size: int | None = None,
                 num_workers: int | None = None, normalize: bool = True, model_name: str | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        self.train_dataset, self.val_dataset = train_dataset, val_dataset
        self.given_classes = None if classes is None else [str(c) for c in classes]
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if neural_batch_size < 0:
            raise ValueError(f"neural_batch_size must be >= 0; got {neural_batch_size}")
        if not 0.0 <= neural_holdout < 1.0:
            raise ValueError(f"neural_holdout must be in [0, 1); got {neural_holdout}")
        if num_workers is not None and num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 or None; got {num_workers}")
        self.neural, self.neural_batch_size, self.neural_holdout = neural, neural_batch_size, neural_holdout
        self.batch_size, self.normalize, self.model_name, self.seed = batch_size, normalize, model_name, seed
        self._prep: Preprocessing | None = None
        if model_name is not None:
            self._prep = preprocessing_of(model_name)
        self.image_size = int(image_size or (self._prep.image_size if self._prep is not None else 224))
        self.num_workers = num_workers
        self._neural: NeuralStimulusSet | None = None
        self._neural_images: Tensor | None = None
        self.neural_train_positions = torch.empty(0, dtype=torch.long)
        self.neural_heldout_positions = torch.empty(0, dtype=torch.long)
        self._train: Dataset | None = None
        self._val: Dataset | None = None
        self.classes: list[str] = []

    # -- hooks for subclasses
    def _build_task(self) -> tuple[Dataset, Dataset, list[str]]:
        """(train dataset, val dataset, class names); datasets return ``(image tensor, label)``.

        The base class serves the datasets it was given; subclasses build theirs.
        """
        if self.train_dataset is None or self.val_dataset is None or self.given_classes is None:
            raise ValueError(f"{type(self).__name__} needs train_dataset, val_dataset and classes "
                             "(or use GratingsDataModule / ImageFolderDataModule)")
        return self.train_dataset, self.val_dataset, list(self.given_classes)

    def _workers_default(self) -> int:
        return _default_workers()

    # -- preprocessing contract
    def use_model(self, model) -> "AlignedDataModule":
        """Take mean/std (and crop/interpolation) from ``model``'s preprocessing contract. Returns self."""
        self._prep = preprocessing_of(model)
        return self

    @property
    def preprocessing(self) -> Preprocessing:
        """The contract in use, at this module's ``image_size``.

        From ``model_name`` or :meth:`use_model`; else the trained backbone once a
        trainer is attached; else timm's ImageNet defaults, with a warning.
        """
        prep = self._known_contract()
        if prep is None:
            warnings.warn(f"{type(self).__name__} does not know the model it feeds (no model_name, no "
                          "use_model(), no trainer): normalising with timm's ImageNet defaults", stacklevel=2)
            return preprocessing_of(nn.Identity()).with_size(self.image_size)
        return prep.with_size(self.image_size)

    def _known_contract(self) -> Preprocessing | None:
        """The contract of ``model_name``/:meth:`use_model`, else of the trained backbone; None if unknown."""
        if self._prep is None:
            backbone = getattr(getattr(self.trainer, "lightning_module", None), "backbone", None)
            if backbone is not None:
                self._prep = preprocessing_of(backbone)
        return self._prep

    def _image_transforms(self, train_scale: tuple[float, float] = (0.08, 1.0)) -> tuple[Callable, Callable]:
        """(training, evaluation) transforms of the model's contract at ``image_size``, normalised if asked.

        Training: RandomResizedCrop(``train_scale``) + flip; evaluation: Resize(size /
        crop_pct) + CenterCrop, both with the model's interpolation (see
        :meth:`Preprocessing.train_transform`, :meth:`Preprocessing.eval_transform`).
        Unnormalised transforms of an unknown model take timm's default geometry.
        """
        if self.normalize:
            prep = self.preprocessing
        else:
            prep = (self._known_contract() or preprocessing_of(nn.Identity())).with_size(self.image_size)
        return (prep.train_transform(normalize=self.normalize, scale=train_scale),
                prep.eval_transform(normalize=self.normalize))

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        if not self.normalize:
            return None
        prep = self.preprocessing
        return prep.mean, prep.std

    def _normalize_tensor(self, x: Tensor) -> Tensor:
        if not self.normalize:
            return x
        return self.preprocessing.normalize(x)

    @property
    def num_classes(self) -> int:
        self._ensure_task()
        return len(self.classes)

    @property
    def neural_ids(self) -> np.ndarray | None:
        self._ensure_neural()
        return None if self._neural is None else self._neural.stimulus_ids

    @property
    def effective_workers(self) -> int:
        return self._workers_default() if self.num_workers is None else self.num_workers

    # -- setup
    def _ensure_task(self) -> tuple[Dataset, Dataset]:
        """Build the task data sets once (see :meth:`_build_task`); returns ``(train, val)``."""
        if self._train is None or self._val is None:
            train, val, classes = self._build_task()
            if len(classes) < 2:
                source = getattr(self, "root", None) or getattr(self, "train_dir", None)
                raise DataFormatError(
                    f"{type(self).__name__}{f' ({source})' if source else ''}: a classifier needs at least 2 "
                    f"classes; found {len(classes)} ({list(classes)[:5]})")
            self.classes = classes
            self._train, self._val = train, val
            n_train = _dataset_len(train, "the training set")
            if n_train < self.batch_size:
                raise ValueError(f"the training set has {n_train} images, fewer than batch_size="
                                 f"{self.batch_size}")
            return train, val
        return self._train, self._val

    def _ensure_neural(self) -> None:
        if self._neural is not None or self.neural is None:
            return
        stim = load_neural_stimuli(self.neural)
        n = len(stim)
        images = self._normalize_tensor(self.preprocessing.resize(stim.images_tensor()))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 104_729)
        perm = torch.randperm(n, generator=g)
        n_hold = int(round(self.neural_holdout * n))
        self.neural_heldout_positions = perm[:n_hold].sort().values
        self.neural_train_positions = perm[n_hold:].sort().values
        n_train = len(self.neural_train_positions)
        if self.neural_batch_size > n_train:
            raise ValueError(
                f"neural_batch_size={self.neural_batch_size} but the neural set {stim.name!r} has only {n_train} "
                f"training stimuli ({n} stimuli, {n_hold} held out with neural_holdout={self.neural_holdout}); "
                f"lower neural_batch_size or neural_holdout")
        if self.neural_batch_size > self.batch_size:
            raise ValueError(f"neural_batch_size={self.neural_batch_size} must not exceed batch_size="
                             f"{self.batch_size}")
        # Set together and last: a failed setup leaves no half-loaded neural set behind.
        self._neural, self._neural_images = stim, images

    def setup(self, stage: str | None = None) -> None:
        self._ensure_task()
        self._ensure_neural()

    # -- loaders
    def _progress(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 0
        # Lightning declares ``current`` as a _ReadyCompletedTracker; the batch progress holds a _ProcessedTracker.
        processed: int = trainer.fit_loop.epoch_loop.batch_progress.current.processed  # type: ignore[attr-defined]
        return trainer.current_epoch, processed

    def _loader_kwargs(self) -> dict:
        workers = self.effective_workers
        return {"num_workers": workers, "persistent_workers": workers > 0,
                "pin_memory": torch.cuda.is_available()}

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        train, _ = self._ensure_task()
        with_neural = self._neural is not None and self.neural_batch_size > 0
        sampler = JointSampler(_dataset_len(train, "the training set"), self.batch_size,
                               self.neural_train_positions if with_neural else None,
                               self.neural_batch_size if with_neural else 0, seed=self.seed)
        return ResumableLoader(_JointDataset(train, self._neural_images if with_neural else None),
                               batch_size=self.batch_size, sampler=sampler, drop_last=True,
                               collate_fn=_collate_joint, progress=self._progress,
                               generator=torch.Generator().manual_seed(self.seed), **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        self.setup("validate")
        _, val = self._ensure_task()
        task = DataLoader(val, batch_size=self.batch_size, shuffle=False, collate_fn=_collate_task,
                          **self._loader_kwargs())
        if self._neural_images is None or len(self.neural_heldout_positions) == 0:
            return task
        neural = DataLoader(_NeuralItems(self._neural_images, self.neural_heldout_positions),
                            batch_size=max(self.batch_size, 1), shuffle=False, num_workers=0)
        return [task, neural]


class GratingsDataModule(AlignedDataModule):
    """Offline task data: oriented gratings, ``num_classes`` orientation classes (see :class:`GratingsDataset`).

    Generated in memory in milliseconds; used by the tiny configuration, the
    tests and the demo. Train and validation images come from different seeds.
    ``num_classes``: None for 4; :attr:`num_classes` reports the classes served.
    """

    def __init__(self, num_classes: int | None = None, n_train: int = 256, n_val: int = 64, neural: Any = None,
                 neural_batch_size: int = 32, neural_holdout: float = 0.25, batch_size: int = 64,
                 image_size: int | None = 32, num_workers: int | None = None, normalize: bool = True,
                 model_name: str | None = None, seed: int = 0) -> None:
        super().__init__(neural=neural, neural_batch_size=neural_batch_size, neural_holdout=neural_holdout,
                         batch_size=batch_size, image_size=image_size, num_workers=num_workers,
                         normalize=normalize, model_name=model_name, seed=seed)
        # The requested count; the num_classes property (AlignedDataModule) reports the built task's.
        self._num_classes: int = 4 if num_classes is None else num_classes
        self.n_train, self.n_val = n_train, n_val

    def _workers_default(self) -> int:
        return 0

    def _build_task(self) -> tuple[Dataset, Dataset, list[str]]:
        norm = self._normalize_tensor if self.normalize else None
        train = GratingsDataset(self.n_train, self._num_classes, self.image_size, seed=2 * self.seed)
        val = GratingsDataset(self.n_val, self._num_classes, self.image_size, seed=2 * self.seed + 1)
        step = 180.0 / self._num_classes
        classes = [f"{c * step:g}deg" for c in range(self._num_classes)]
        return _Transformed(train, None, norm), _Transformed(val, None, norm), classes


class ImageFolderDataModule(AlignedDataModule):
    """Class-per-folder images: ``root/<class>/*.jpg`` split by ``val_fraction``, or train/val folders.

    Give ``root`` with ``train/`` and ``val/`` subfolders (ImageNet layout),
    ``root`` with class folders only (a seeded, stratified ``val_fraction``
    split), or ``train_dir`` and ``val_dir`` explicitly. Training images get
    RandomResizedCrop + horizontal flip; validation images Resize + CenterCrop
    with the model's ``crop_pct`` and interpolation.
    """

    def __init__(self, root: str | None = None, train_dir: str | None = None, val_dir: str | None = None,
                 val_fraction: float = 0.1, neural: Any = None, neural_batch_size: int = 32,
                 neural_holdout: float = 0.25, batch_size: int = 64, image_size: int | None = None,
                 num_workers: int | None = None, normalize: bool = True, model_name: str | None = None,
                 seed: int = 0) -> None:
        super().__init__(neural=neural, neural_batch_size=neural_batch_size, neural_holdout=neural_holdout,
                         batch_size=batch_size, image_size=image_size, num_workers=num_workers,
                         normalize=normalize, model_name=model_name, seed=seed)
        if (root is None) == (train_dir is None):
            raise ValueError("give either root or train_dir (with val_dir), not both or neither")
        if train_dir is not None and val_dir is None:
            raise ValueError("train_dir needs val_dir")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction}")
        self.root, self.train_dir, self.val_dir, self.val_fraction = root, train_dir, val_dir, val_fraction

    @staticmethod
    def _folder(path: Path):
        if not path.is_dir():
            raise FileNotFoundError(f"image folder {str(path)!r} does not exist")
        try:
            return ImageFolder(str(path), loader=read_image)
        except FileNotFoundError as exc:
            raise DataFormatError(f"{path} must hold one sub-folder of images per class: {exc}") from exc

    def _build_task(self) -> tuple[Dataset, Dataset, list[str]]:
        train_tf, val_tf = self._image_transforms()
        if self.train_dir is not None:
            if self.val_dir is None:
                raise ValueError(f"train_dir={self.train_dir!r} needs val_dir; got val_dir=None")
            train_dir, val_dir = Path(self.train_dir), Path(self.val_dir)
        else:
            if self.root is None:
                raise ValueError("give either root or train_dir (with val_dir); got root=None and train_dir=None")
            root = Path(self.root)
            train_dir, val_dir = root / "train", root / "val"
            if not (train_dir.is_dir() and val_dir.is_dir()):
                return self._split(self._folder(root), train_tf, val_tf)
        train, val = self._folder(train_dir), self._folder(val_dir)
        if train.classes != val.classes:
            raise DataFormatError(f"train and val folders have different classes: {len(train.classes)} vs "
                                  f"{len(val.classes)} (first differing: "
                                  f"{sorted(set(train.classes) ^ set(val.classes))[:5]})")
        return _Transformed(train, None, train_tf), _Transformed(val, None, val_tf), list(train.classes)

    def _split(self, base, train_tf, val_tf) -> tuple[Dataset, Dataset, list[str]]:
        targets = np.asarray(base.targets)
        rng = np.random.default_rng(self.seed)
        train_idx, val_idx = [], []
        for c in range(len(base.classes)):
            idx = rng.permutation(np.flatnonzero(targets == c))
            n_val = max(1, int(round(self.val_fraction * len(idx)))) if len(idx) > 1 else 0
            val_idx.extend(idx[:n_val].tolist())
            train_idx.extend(idx[n_val:].tolist())
        return (_Transformed(base, sorted(train_idx), train_tf), _Transformed(base, sorted(val_idx), val_tf),
                list(base.classes))


class ImageNetDataModule(ImageFolderDataModule):
    """ImageNet-layout folders: ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` (224 px default)."""

    def __init__(self, root: str, neural: Any = None, neural_batch_size: int = 32, neural_holdout: float = 0.25,
                 batch_size: int = 256, image_size: int | None = None, num_workers: int | None = None,
                 normalize: bool = True, model_name: str | None = None, seed: int = 0) -> None:
        for split in ("train", "val"):
            if not (Path(root) / split).is_dir():
                raise DataFormatError(f"ImageNet layout needs {str(Path(root) / split)!r} with one folder per class")
        super().__init__(train_dir=str(Path(root) / "train"), val_dir=str(Path(root) / "val"), neural=neural,
                         neural_batch_size=neural_batch_size, neural_holdout=neural_holdout, batch_size=batch_size,
                         image_size=image_size, num_workers=num_workers, normalize=normalize,
                         model_name=model_name, seed=seed)
