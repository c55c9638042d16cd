"""Fine-tuning strategies on a new domain: full, linear probe, last-k areas, LP-FT, L2-SP.

:class:`FinetuneModule` builds on :class:`~neuroreg.training.BrainRegularizedModule`
(so the optional CKA/RSA alignment terms work unchanged) and adds

- ``strategy="full"``: every parameter trains.
- ``"linear_probe"``: only the classifier trains; the backbone is frozen and its
  BatchNorm layers stay in eval mode (running statistics frozen too), so the
  backbone is bit-identical after training.
- ``"last_k"``: the last ``last_k`` areas (V1/V2/V4/IT order, see
  :func:`neuroreg.area_layers`) and everything after them train; the
  parameters before the first unfrozen area are frozen with their BatchNorm
  statistics.
- ``"lp_ft"``: linear probe for ``lp_steps`` optimizer steps, then full
  fine-tuning (Kumar et al. 2022).
- ``"l2_sp"``: full fine-tuning with the penalty ``l2_sp_weight / 2 * ||w - w0||^2``
  toward the starting weights ``w0`` on the backbone (which then gets no weight
  decay; the new head keeps it), Li, Grandvalet & Davoine (2018).

Defaults follow the fine-tuning recipe of Yang et al. ("Brain Decodes Deep
Nets"): AdamW, lr 3e-5, weight decay 0.01; ``head_lr`` gives the new
classifier its own rate.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, Mapping, Protocol, Sequence, cast

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn

from neuroreg._utils.checks import check_class_weights
from neuroreg.alignment.base import AlignmentLoss
from neuroreg.scoring.classification import balanced_accuracy_from_confusion, confusion_matrix, topk_accuracy
from neuroreg.models import area_layers
from neuroreg.training.module import BrainRegularizedModule, _Hyperparameters
from neuroreg.finetune.start_model import classifier_name, load_start_model

__all__ = ["FinetuneModule", "STRATEGIES", "trainable_parameter_names", "balanced_accuracy_from_confusion"]

STRATEGIES = ("full", "linear_probe", "last_k", "lp_ft", "l2_sp")


class _FinetuneHyperparameters(_Hyperparameters, Protocol):
    """The ``hparams`` that :class:`FinetuneModule` saves and reads (static typing only)."""

    strategy: str
    last_k: int
    lp_steps: int
    l2_sp_weight: float
    head_lr: float | None
    areas: dict[str, str] | None


def trainable_parameter_names(model: nn.Module, strategy: str, *, last_k: int = 1,
                              areas: Mapping[str, str] | None = None, phase: str = "full") -> set[str]:
    """Names of the parameters that train under ``strategy`` (``phase`` ``"probe"``/``"full"`` for LP-FT)."""
    head = classifier_name(model)
    names = [n for n, _ in model.named_parameters()]
    head_params = {n for n in names if n == head or n.startswith(head + ".")}
    if strategy in ("full", "l2_sp") or (strategy == "lp_ft" and phase == "full"):
        return set(names)
    if strategy in ("linear_probe", "lp_ft"):
        return head_params
    if strategy != "last_k":
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {strategy!r}")
    area_map = area_layers(model, areas) if areas else area_layers(model)
    order = [a for a in ("V1", "V2", "V4", "IT") if a in area_map]
    if not 1 <= last_k <= len(order):
        raise ValueError(f"last_k must be in [1, {len(order)}] (areas {order}); got {last_k}")
    first = area_map[order[len(order) - last_k]]
    start = next((i for i, n in enumerate(names) if n.startswith(first + ".")), None)
    if start is None:
        raise ValueError(f"area {order[len(order) - last_k]!r} ({first!r}) has no parameters to unfreeze")
    return set(names[start:]) | head_params


class FinetuneModule(BrainRegularizedModule):
    """Fine-tune a starting network on a new task with one of :data:`STRATEGIES`.

    Parameters
    ----------
    start_from: model name or checkpoint path (see :func:`~neuroreg.finetune.load_start_model`).
    num_classes: classes of the new task (linked from the data module by ``neuroreg finetune``).
    arch, weights, model_kwargs: passed to :func:`~neuroreg.finetune.load_start_model`.
    strategy, last_k, lp_steps, l2_sp_weight: see the module docstring.
    head_lr: learning rate of the new classifier (default: ``lr``).
    class_weights: ``"auto"`` takes the data module's :meth:`loss_weights` (set by
        its ``balance="loss"``), ``None`` an unweighted loss, or a list of weights.
    head_seed: seeds the new classifier's initialisation.
    Everything else as in :class:`~neuroreg.training.BrainRegularizedModule`.

    Logged (besides the parent's): ``val/balanced_acc``, ``test/acc1``,
    ``test/balanced_acc``, ``train/l2_sp``, ``train/trainable_params``.
    """

    _start_model: nn.Module   # set with object.__setattr__ in __init__: kept out of the module tree

    def __init__(self, start_from: str, num_classes: int | None = None,
                 strategy: Literal["full", "linear_probe", "last_k", "lp_ft", "l2_sp"] = "full",
                 last_k: int = 1, lp_steps: int = 100, l2_sp_weight: float = 0.01, head_lr: float | None = None,
                 class_weights: Literal["auto"] | Sequence[float] | None = "auto", arch: str | None = None,
                 weights: str | None = None, model_kwargs: dict[str, Any] | None = None,
                 alignment: Sequence[AlignmentLoss] | None = None, areas: dict[str, str] | None = None,
                 label_smoothing: float = 0.0, optimizer: Literal["sgd", "adamw"] = "adamw", lr: float = 3e-5,
                 momentum: float = 0.9, nesterov: bool = True, weight_decay: float = 0.01,
                 scheduler: Literal["cosine", "step", "none"] = "cosine", warmup_steps: int = 0,
                 min_lr_ratio: float = 0.0, step_size: int = 30, gamma: float = 0.1, head_seed: int = 0) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}; got {strategy!r}")
        if num_classes is None or num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (the new task's classes); got {num_classes}")
        if lp_steps < 0 or l2_sp_weight < 0:
            raise ValueError(f"lp_steps and l2_sp_weight must be >= 0; got {lp_steps}, {l2_sp_weight}")
        if head_lr is not None and not head_lr > 0:
            raise ValueError(f"head_lr must be > 0 or None; got {head_lr}")
        if class_weights is not None and not isinstance(class_weights, str):
            check_class_weights("class_weights", list(class_weights))
        elif isinstance(class_weights, str) and class_weights != "auto":
            raise ValueError(f"class_weights must be 'auto', None or a list of weights; got {class_weights!r}")
        start = load_start_model(start_from, arch=arch, weights=weights, model_kwargs=model_kwargs)
        before = start["model"].eval()
        areas = areas or start["areas"]
        backbone = copy.deepcopy(before)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(head_seed)
            backbone.reset_classifier(num_classes)
        super().__init__(backbone=backbone, alignment=alignment, areas=areas, label_smoothing=label_smoothing,
                         optimizer=optimizer, lr=lr, momentum=momentum, nesterov=nesterov,
                         weight_decay=weight_decay, scheduler=scheduler, warmup_steps=warmup_steps,
                         min_lr_ratio=min_lr_ratio, step_size=step_size, gamma=gamma)
        # what a later run needs to rebuild this network from the checkpoint
        self.hparams["arch"] = start["arch"]
        self.hparams["model_kwargs"] = dict(start.get("model_kwargs") or {})
        self.hparams["areas"] = dict(areas) if areas else None
        # the start is kept unregistered: not trained, not in checkpoints, rebuilt from start_from
        object.__setattr__(self, "_start_model", before)
        self.head_name = classifier_name(backbone)
        self._given_weights = class_weights
        self._class_weights: Tensor | None = None
        self._phase = ""
        self._confusion: dict[str, Tensor] = {}
        self._start_params: dict[str, Tensor] = {}
        self._set_phase("probe" if strategy == "lp_ft" and lp_steps > 0 else "full")

    @property
    def _hp(self) -> _FinetuneHyperparameters:
        """:attr:`hparams` with the types of the ``__init__`` arguments (and ``areas``) it holds."""
        return cast(_FinetuneHyperparameters, self.hparams)

    # ------------------------------------------------------------------ the start network
    def start_model(self) -> nn.Module:
        """The network before fine-tuning, with its original head (a copy; eval mode)."""
        return copy.deepcopy(self._start_model).eval()

    # ------------------------------------------------------------------ freezing
    def _set_phase(self, phase: str) -> None:
        if phase == self._phase:
            return
        hp = self._hp
        trainable = trainable_parameter_names(self.backbone, hp.strategy, last_k=hp.last_k, areas=hp.areas,
                                              phase=phase)
        for name, p in self.backbone.named_parameters():
            p.requires_grad_(name in trainable)
        self._frozen_norms = [m for m in self.backbone.modules()
                              if isinstance(m, nn.modules.batchnorm._BatchNorm)
                              and any(True for _ in m.parameters())
                              and not any(p.requires_grad for p in m.parameters())]
        self._phase = phase
        self.train(self.training)

    def train(self, mode: bool = True) -> "FinetuneModule":
        super().train(mode)
        for m in getattr(self, "_frozen_norms", ()):
            m.eval()      # frozen layers keep their running statistics
        return self

    def _phase_at(self, step: int) -> str:
        hp = self._hp
        return "probe" if hp.strategy == "lp_ft" and step < hp.lp_steps else "full"

    def on_train_start(self) -> None:
        super().on_train_start()
        self._set_phase(self._phase_at(self.global_step))
        n = sum(p.numel() for p in self.backbone.parameters() if p.requires_grad)
        self.log("train/trainable_params", float(n), on_step=False, on_epoch=True, rank_zero_only=True)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._set_phase(self._phase_at(self.global_step))

    def on_fit_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "write_splits") and self.trainer.is_global_zero:
            dm.write_splits(Path(self.trainer.default_root_dir) / "splits.csv")

    # ------------------------------------------------------------------ loss
    def setup(self, stage: str) -> None:
        super().setup(stage)
        given = self._given_weights
        if given == "auto":
            dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
            w = dm.loss_weights() if dm is not None and hasattr(dm, "loss_weights") else None
        else:
            w = None if given is None else check_class_weights("class_weights", list(given))
        n_out = self._num_outputs()
        if w is not None and n_out is not None and len(w) != n_out:
            raise ValueError(f"class_weights has {len(w)} entries but the model has {n_out} outputs")
        self._class_weights = w

    def task_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        w = None if self._class_weights is None else self._class_weights.to(logits.device, logits.dtype)
        return F.cross_entropy(logits, labels, weight=w, label_smoothing=self._hp.label_smoothing)

    def _l2_sp(self) -> Tensor:
        total = None
        start = dict(self._start_model.named_parameters())
        for name, p in self.backbone.named_parameters():
            if not p.requires_grad or name == self.head_name or name.startswith(self.head_name + "."):
                continue
            w0 = self._start_params.get(name)
            if w0 is None or w0.device != p.device:
                w0 = self._start_params[name] = start[name].detach().to(p.device, p.dtype)
            term = (p - w0).pow(2).sum()
            total = term if total is None else total + term
        return total if total is not None else torch.zeros((), device=self.device)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = super().training_step(batch, batch_idx)
        hp = self._hp
        if hp.strategy == "l2_sp" and hp.l2_sp_weight > 0:
            penalty = self._l2_sp()
            loss = loss + 0.5 * hp.l2_sp_weight * penalty
            self.log("train/l2_sp", penalty.detach(), on_step=True, on_epoch=True, batch_size=batch["image"].shape[0])
        return loss

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, prefix: str, batch: dict[str, Tensor]) -> None:
        x, y = batch["image"], batch["label"]
        logits = self.backbone(x)
        self.log_dict({f"{prefix}/loss": F.cross_entropy(logits, y), f"{prefix}/acc1": topk_accuracy(logits, y, 1),
                       f"{prefix}/acc5": topk_accuracy(logits, y, 5)},
                      on_epoch=True, sync_dist=True, batch_size=x.shape[0], add_dataloader_idx=False,
                      prog_bar=prefix == "val")
        conf = confusion_matrix(logits.detach(), y)
        self._confusion[prefix] = self._confusion.get(prefix, 0) + conf

    def _log_balanced(self, prefix: str) -> None:
        conf = self._confusion.pop(prefix, None)
        if conf is None or (self._trainer is not None and self.trainer.sanity_checking):
            return
        if self.trainer.world_size > 1:
            conf = self._all_gather_tensor(conf).sum(0)
        self.log(f"{prefix}/balanced_acc", balanced_accuracy_from_confusion(conf).float(), rank_zero_only=False,
                 sync_dist=False)

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._confusion = {}

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        if "image" in batch:
            self._evaluate("val", batch)
        else:
            super().validation_step(batch, batch_idx, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._log_balanced("val")

    def on_test_epoch_start(self) -> None:
        self._confusion = {}

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate("test", batch)

    def on_test_epoch_end(self) -> None:
        self._log_balanced("test")

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> OptimizerLRScheduler:
        hp = self._hp
        ever = trainable_parameter_names(self.backbone, hp.strategy, last_k=hp.last_k, areas=hp.areas, phase="full")
        head: list[nn.Parameter] = []
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name, p in self.backbone.named_parameters():
            if name not in ever:
                continue
            if name == self.head_name or name.startswith(self.head_name + "."):
                head.append(p)
            else:
                (no_decay if p.ndim <= 1 else decay).append(p)
        backbone_wd = 0.0 if hp.strategy == "l2_sp" else hp.weight_decay
        groups: list[dict[str, Any]] = [
            {"params": decay, "weight_decay": backbone_wd}, {"params": no_decay, "weight_decay": 0.0},
            {"params": head, "weight_decay": hp.weight_decay, "lr": hp.head_lr or hp.lr}]
        groups = [g for g in groups if g["params"]]
        return self._optimizer_and_schedule(groups)
