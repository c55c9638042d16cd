"""BrainRegularizedModule: task cross-entropy plus alignment terms that pull model areas toward neural data,
and the Neural Harmonizer term that pulls the model's saliency toward human importance maps.

loss = CE(logits, labels; label_smoothing) + sum_k w_k(step) * L_k(area_k activations on neural stimuli)
       + lambda(step) * L_harm(saliency of the task images, human maps, tokens)

Neural stimuli ride along in each training batch (see :mod:`neuroreg.data.folders`):
task and neural images go through the backbone in one forward pass, the task
part feeds the cross-entropy and the neural part feeds the alignment terms
through forward hooks on the aligned areas (gradients kept). Recipes:
Dapello et al. (2023) CKA alignment of IT; Li et al. (2019) similarity-matrix
regularizer; Fel et al. (2022) harmonization (:class:`~neuroreg.alignment.HarmonizationLoss`).

Harmonization batches also carry ``"heatmap"`` ``(B, H, W)`` (or ``(B, 1, H, W)``)
human importance maps on the images' pixels and ``"token"`` ``(B,)`` (1 where an
image has a map, 0 otherwise; all 1 when absent); a tuple batch in the release's
order ``(images, heatmaps, tokens, labels)`` (or ``(images, heatmaps, labels)``)
is read the same way. The images get ``requires_grad`` before the one forward
pass whose logits feed both the cross-entropy and the saliency (the gradient of
the true-class logit with respect to the images, kept in the graph: double
backpropagation), so BatchNorm statistics are updated once per step.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol, Sequence, cast

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn

from neuroreg._utils.capture import capture_outputs
from neuroreg.alignment.base import AlignmentLoss
from neuroreg.alignment.harmonization import HarmonizationLoss, harmonization_term, saliency_maps
from neuroreg.scoring.classification import topk_accuracy
from neuroreg.errors import ShapeError, StimulusMismatchError, UnknownNameError
from neuroreg.features.extraction import resolve_layers

__all__ = ["BrainRegularizedModule", "capture_outputs", "topk_accuracy", "WEIGHT_DECAY_EXCLUDES"]

#: which parameters get no weight decay: ``"bias_and_norm"`` every parameter with at most one dimension
#: (biases, normalisation scales and shifts); ``"norm"`` the release's Neural Harmonizer rule: the
#: parameters of normalisation layers, embeddings and class tokens only (biases decay)
WEIGHT_DECAY_EXCLUDES = ("bias_and_norm", "norm")
_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.RMSNorm)


class _Hyperparameters(Protocol):
    """The ``hparams`` that :class:`BrainRegularizedModule` saves (its ``__init__`` arguments; static typing only)."""

    label_smoothing: float
    optimizer: str
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    weight_decay_exclude: str
    scheduler: str
    warmup_steps: int
    min_lr_ratio: float
    step_size: int
    gamma: float


class _WarmupCosine:
    """LR factor: linear warmup over ``warmup`` steps, then cosine decay to ``floor`` at ``total`` steps."""

    def __init__(self, warmup: int, total: int, floor: float) -> None:
        self.warmup, self.total, self.floor = warmup, max(total, 1), floor

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * t))


class BrainRegularizedModule(L.LightningModule):
    """Classification with brain-alignment regularizers.

    Parameters
    ----------
    backbone: the network (e.g. ``timm.create_model("vone_cornet_s", num_classes=10)``);
        it maps ``(B, 3, S, S)`` images to ``(B, num_classes)`` logits.
    alignment: alignment terms (:class:`~neuroreg.alignment.CKALoss`,
        :class:`~neuroreg.alignment.RSALoss`); their ``area`` is resolved through
        ``areas``, then the model's area map (:func:`neuroreg.area_layers`), then
        as a module name. An unknown area raises here, before any training.
    areas: optional area alias -> module name map overriding the model's.
    harmonization: the Neural Harmonizer term
        (:class:`~neuroreg.alignment.HarmonizationLoss`; its ``weight`` is the
        release's ``lambda_harmonization``, 1.0 by default), or None. Needs batches
        with human maps (module docstring), e.g. from
        :class:`~neuroreg.data.SalientPatternsDataModule`.
    label_smoothing: of the cross-entropy (the released harmonization recipe: 0.1).
    optimizer: ``"sgd"`` (momentum, Nesterov) or ``"adamw"``.
    weight_decay: its coefficient; with SGD it equals an L2 penalty
        ``weight_decay * sum(w**2) / 2`` in the loss (the released harmonization
        recipe: 1e-5); AdamW decays decoupled from the gradient.
    weight_decay_exclude: ``"bias_and_norm"`` (default: no decay on biases and
        normalisation parameters) or ``"norm"`` (the released harmonization recipe:
        only normalisation parameters, embeddings and class tokens are spared).
    scheduler: ``"cosine"`` (per step, after ``warmup_steps`` linear warmup, down
        to ``min_lr_ratio * lr``), ``"step"`` (x ``gamma`` every ``step_size``
        epochs) or ``"none"``.

    With a data module, ``batch["neural_index"]`` (positions in its neural set)
    is mapped to each target's rows by stimulus id at ``setup``; without one,
    the indices are used as target rows directly.

    Logged: ``train/loss``, ``train/task_loss``, ``train/<term>`` (unweighted),
    ``train/<term>_weight``, ``train/acc1``, ``train/acc5``; ``val/loss``,
    ``val/acc1``, ``val/acc5`` and ``val/cka_<area>``: CKA between the area and its
    target on the held-out neural stimuli; with a harmonization term,
    ``train/harmonization`` and ``val/harmonization`` (the term on held-out images
    with maps, the model in evaluation mode).
    """

    def __init__(self, backbone: nn.Module, alignment: Sequence[AlignmentLoss] | None = None,
                 areas: dict[str, str] | None = None, label_smoothing: float = 0.0,
                 optimizer: Literal["sgd", "adamw"] = "sgd", lr: float = 0.1, momentum: float = 0.9,
                 nesterov: bool = True, weight_decay: float = 1e-4,
                 scheduler: Literal["cosine", "step", "none"] = "cosine", warmup_steps: int = 0,
                 min_lr_ratio: float = 0.0, step_size: int = 30, gamma: float = 0.1,
                 harmonization: HarmonizationLoss | None = None,
                 weight_decay_exclude: Literal["bias_and_norm", "norm"] = "bias_and_norm") -> None:
        super().__init__()
        if weight_decay_exclude not in WEIGHT_DECAY_EXCLUDES:
            raise ValueError(f"weight_decay_exclude must be one of {WEIGHT_DECAY_EXCLUDES}; "
                             f"got {weight_decay_exclude!r}")
        if harmonization is not None and not isinstance(harmonization, HarmonizationLoss):
            raise TypeError(f"harmonization must be a HarmonizationLoss or None; got {type(harmonization).__name__}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing}")
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw'; got {optimizer!r}")
        if scheduler not in ("cosine", "step", "none"):
            raise ValueError(f"scheduler must be 'cosine', 'step' or 'none'; got {scheduler!r}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0; got {lr}")
        self.save_hyperparameters(ignore=["backbone", "alignment", "harmonization"])
        self.backbone = backbone
        self.harmonization = harmonization
        terms = list(alignment or [])
        for t in terms:
            if not isinstance(t, AlignmentLoss):
                raise TypeError(f"alignment terms must be AlignmentLoss instances (CKALoss, RSALoss); "
                                f"got {type(t).__name__}")
        names = [t.name for t in terms]
        if len(set(names)) != len(names):
            raise ValueError(f"alignment term names must be unique (set name=...); got {names}")
        self.alignment = nn.ModuleList(terms)
        self.area_modules = self._resolve_areas(backbone, terms, areas or {})
        self._rows: list[Tensor | None] = [None] * len(terms)
        self._val_store: dict[str, list[Tensor]] = {}
        self._rng_to_restore: dict | None = None

    @property
    def _hp(self) -> _Hyperparameters:
        """:attr:`hparams` with the types of the ``__init__`` arguments it was saved from."""
        return cast(_Hyperparameters, self.hparams)

    @property
    def _terms(self) -> list[AlignmentLoss]:
        """The alignment terms, typed (``__init__`` admits only AlignmentLoss into :attr:`alignment`)."""
        return cast(list[AlignmentLoss], list(self.alignment))

    def _all_gather_tensor(self, value: Tensor) -> Tensor:
        """:meth:`all_gather` of one tensor: ``(world_size, *value.shape)``."""
        gathered = self.all_gather(value)
        if not isinstance(gathered, Tensor):
            raise TypeError(f"all_gather of a tensor returned {type(gathered).__name__}")
        return gathered

    # ------------------------------------------------------------------ setup and checks
    @staticmethod
    def _resolve_areas(backbone: nn.Module, terms: list[AlignmentLoss], areas: dict[str, str]) -> dict[str, str]:
        resolved = {}
        for t in terms:
            target = areas.get(t.area, t.area)
            try:
                resolved[t.area] = resolve_layers(backbone, {t.area: target})[t.area]
            except (KeyError, UnknownNameError) as exc:
                msg = exc.args[0] if exc.args else str(exc)
                raise UnknownNameError(
                    f"alignment term {t.name!r}: area {t.area!r} is not an area or module of "
                    f"{type(backbone).__name__} ({msg}); pass areas={{'{t.area}': '<module name>'}}") from exc
        return resolved

    def _num_outputs(self) -> int | None:
        n = getattr(self.backbone, "num_classes", None)
        return int(n) if isinstance(n, int) else None

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None:
            return
        n_out = self._num_outputs()
        num_classes = getattr(dm, "num_classes", None)
        if n_out is not None and num_classes is not None and n_out != num_classes:
            raise ValueError(f"class-count mismatch: the model has {n_out} outputs but the data module has "
                             f"{num_classes} classes; set the model's num_classes to {num_classes}")
        if not len(self.alignment):
            return
        ids = getattr(dm, "neural_ids", None)
        if ids is None:
            raise ValueError(f"alignment terms {[t.name for t in self._terms]} need neural stimuli: set the "
                             "data module's neural=... (e.g. 'kriegeskorte92' or a .npz with images)")
        nb = int(getattr(dm, "neural_batch_size", 0))
        n_held = len(getattr(dm, "neural_heldout_positions", ()))
        for i, t in enumerate(self._terms):
            try:
                self._rows[i] = t.target.rows_for(ids)
            except StimulusMismatchError as exc:
                raise StimulusMismatchError(f"alignment term {t.name!r}: {exc}") from exc
            if t.weight > 0:
                t.check_batch(nb, what=f"neural batch (neural_batch_size={nb})")
            if n_held:
                t.check_batch(n_held, what=f"held-out neural set ({n_held} stimuli)")

    def _rows_for(self, i: int, positions: Tensor) -> Tensor:
        rows = self._rows[i]
        return positions if rows is None else rows.to(positions.device)[positions]

    # ------------------------------------------------------------------ steps
    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def task_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The task term: cross-entropy with label smoothing (subclasses may weight classes)."""
        return F.cross_entropy(logits, labels, label_smoothing=self._hp.label_smoothing)

    def _cka_tag(self, t: AlignmentLoss) -> str:
        same_area = sum(1 for u in self._terms if u.area == t.area)
        return f"val/cka_{t.area}" if same_area == 1 else f"val/cka_{t.name}"

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        # batch: a dict of tensors or a tuple in the release's order (module docstring)
        batch = _as_dict(batch)
        x, y = batch["image"], batch["label"]
        b = x.shape[0]
        step = self.global_step
        terms = self._terms
        weights = [t.weight_at(step) for t in terms]
        active = [i for i, w in enumerate(weights) if w > 0]
        use_neural = bool(active) and "neural_image" in batch
        harm = self.harmonization
        harm_weight = 0.0 if harm is None else harm.weight_at(step)
        draws = 1
        if harm is not None and harm_weight > 0:
            _check_maps_in(batch, harm)
            x = x.detach().requires_grad_(True)   # the saliency is d logit / d image of this very forward pass
            draws = harm.noise_draws
        task_x = x.repeat(draws, 1, 1, 1) if draws > 1 else x
        inputs = torch.cat([task_x, batch["neural_image"].to(x.dtype)]) if use_neural else task_x
        hooks = {terms[i].area: self.area_modules[terms[i].area] for i in active} if use_neural else {}
        with capture_outputs(self.backbone, hooks) as acts:
            logits = self.backbone(inputs)
        acts.require()
        n_task = draws * b
        task_logits = logits[:n_task]
        task_y = y.repeat(draws) if draws > 1 else y
        task_loss = self.task_loss(task_logits, task_y)
        loss = task_loss
        for i in active if use_neural else ():
            t = terms[i]
            term = t(acts[t.area][n_task:], self._rows_for(i, batch["neural_index"]))
            loss = loss + weights[i] * term
            self.log(f"train/{t.name}", term.detach(), on_step=True, on_epoch=True, batch_size=b)
        for i, t in enumerate(terms):
            self.log(f"train/{t.name}_weight", weights[i], on_step=True, on_epoch=False, batch_size=b)
        if harm is not None:
            if harm_weight > 0:
                term = harm(task_logits, x, y, batch["heatmap"], batch.get("token"))
                loss = loss + harm_weight * term
                self.log(f"train/{harm.name}", term.detach(), on_step=True, on_epoch=True, batch_size=b)
            self.log(f"train/{harm.name}_weight", harm_weight, on_step=True, on_epoch=False, batch_size=b)
        with torch.no_grad():
            self.log_dict({"train/task_loss": task_loss.detach(), "train/loss": loss.detach(),
                           "train/acc1": topk_accuracy(task_logits, task_y, 1),
                           "train/acc5": topk_accuracy(task_logits, task_y, 5)},
                          on_step=True, on_epoch=True, prog_bar=False, batch_size=b)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_store = {}

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        batch = _as_dict(batch)
        if "image" in batch:
            x, y = batch["image"], batch["label"]
            logits = self.backbone(x)
            self.log_dict({"val/loss": F.cross_entropy(logits, y), "val/acc1": topk_accuracy(logits, y, 1),
                           "val/acc5": topk_accuracy(logits, y, 5)},
                          on_epoch=True, sync_dist=True, batch_size=x.shape[0], add_dataloader_idx=False,
                          prog_bar=True)
            harm = self.harmonization
            if harm is not None and "heatmap" in batch:
                saliency = saliency_maps(self.backbone, x, y, draws=harm.noise_draws)
                term = harmonization_term(saliency, batch["heatmap"], batch.get("token"), harm.levels)
                self.log(f"val/{harm.name}", term, on_epoch=True, sync_dist=True, batch_size=x.shape[0],
                         add_dataloader_idx=False)
            return
        if not len(self.alignment):
            return
        hooks = {t.area: self.area_modules[t.area] for t in self._terms}
        with capture_outputs(self.backbone, hooks, detach=True) as acts:
            self.backbone(batch["neural_image"])
        acts.require()
        for area, a in acts.items():
            self._val_store.setdefault(area, []).append(a.flatten(1).float())
        self._val_store.setdefault("_index", []).append(batch["neural_index"])

    def on_validation_epoch_end(self) -> None:
        if "_index" not in self._val_store or self.trainer.sanity_checking:
            self._val_store = {}
            return
        store = {k: torch.cat(v) for k, v in self._val_store.items()}
        self._val_store = {}
        if self.trainer.world_size > 1:  # every rank saw a (padded) shard: gather, then drop duplicates
            store = {k: v.flatten(0, 1) if v.ndim > 1 and k != "_index" else v.flatten()
                     for k, v in ((k, self._all_gather_tensor(v)) for k, v in store.items())}
        index = store["_index"]
        uniq, first = _first_occurrence(index)
        for i, t in enumerate(self._terms):
            value = t.alignment(store[t.area][first], self._rows_for(i, uniq))
            self.log(self._cka_tag(t), value, on_epoch=True, rank_zero_only=False, sync_dist=False)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> OptimizerLRScheduler:
        hp = self._hp
        decay, no_decay = _decay_split(self.backbone, hp.weight_decay_exclude)
        groups: list[dict[str, Any]] = [{"params": decay, "weight_decay": hp.weight_decay},
                                        {"params": no_decay, "weight_decay": 0.0}]
        return self._optimizer_and_schedule(groups)

    def _optimizer_and_schedule(self, groups: list[dict[str, Any]]) -> OptimizerLRScheduler:
        """The configured optimizer over parameter ``groups``, with its learning-rate schedule (Lightning format)."""
        hp = self._hp
        opt: torch.optim.Optimizer
        sched: torch.optim.lr_scheduler.LRScheduler
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov and hp.momentum > 0)
        else:
            opt = torch.optim.AdamW(groups, lr=hp.lr)
        if hp.scheduler == "none":
            return opt
        if hp.scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=hp.step_size, gamma=hp.gamma)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        total = int(self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _WarmupCosine(hp.warmup_steps, total, hp.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ exact resume of stochastic models
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Stochastic areas (VOneBlock noise) draw from torch's global RNG: keep it so a resumed run continues
        # the same random stream as an uninterrupted one.
        rng: dict[str, Tensor | list[Tensor]] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["neuroreg_rng"] = rng

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._rng_to_restore = checkpoint.get("neuroreg_rng")

    def on_train_start(self) -> None:
        if self._rng_to_restore is not None:
            torch.set_rng_state(self._rng_to_restore["torch"])
            if "cuda" in self._rng_to_restore and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(self._rng_to_restore["cuda"])
            self._rng_to_restore = None


def _decay_split(model: nn.Module, exclude: str) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decayed, not decayed) trainable parameters of ``model`` under the rule ``exclude``
    (:data:`WEIGHT_DECAY_EXCLUDES`).

    ``"norm"`` spares the parameters of normalisation layers (by type, and by the
    release's name filter in torch's dotted names: a part containing ``norm``,
    ``embed`` or ``class_token``, starting with ``bn``, or ``cls_token``), so
    biases of convolutions and linear layers decay.
    """
    spared: set[int] = set()
    if exclude == "norm":
        for module in model.modules():
            if isinstance(module, _NORM_LAYERS):
                spared.update(id(p) for p in module.parameters(recurse=False))
        spared.update(id(p) for name, p in model.named_parameters() if _release_spares(name))
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            skip = id(p) in spared if exclude == "norm" else p.ndim <= 1
            (no_decay if skip else decay).append(p)
    return decay, no_decay


def _release_spares(name: str) -> bool:
    """The release's weight-decay name filter (``bn/``, ``normalization``, ``norm``, ``Norm``, ``embed``,
    ``class_token`` in Keras names) on a torch parameter name."""
    parts = name.lower().split(".")
    return any(p.startswith("bn") or "norm" in p or "embed" in p or "class_token" in p or p == "cls_token"
               for p in parts)


_TUPLE_KEYS = {4: ("image", "heatmap", "token", "label"), 3: ("image", "heatmap", "label"), 2: ("image", "label")}


def _as_dict(batch: dict[str, Tensor] | Sequence[Tensor]) -> dict[str, Tensor]:
    """A batch as the dict the steps read; tuples in the release's order ``(images, heatmaps, tokens, labels)``.

    One-hot ``(B, C)`` labels (the release's) become class indices ``(B,)``.
    """
    if isinstance(batch, dict):
        out = dict(batch)
    elif isinstance(batch, (list, tuple)) and len(batch) in _TUPLE_KEYS:
        out = dict(zip(_TUPLE_KEYS[len(batch)], batch))
    else:
        raise TypeError("a batch must be a dict with 'image' and 'label' (and 'heatmap', 'token' for "
                        "harmonization) or a tuple (images, heatmaps, tokens, labels); got "
                        f"{type(batch).__name__}{f' of {len(batch)}' if isinstance(batch, (list, tuple)) else ''}")
    y = out.get("label")
    if isinstance(y, Tensor) and y.ndim == 2 and y.is_floating_point():
        if not bool(((y == 0) | (y == 1)).all() and (y.sum(1) == 1).all()):
            raise ValueError(f"labels of shape {tuple(y.shape)} must be class indices (B,) or one-hot rows; got "
                             "rows that are not one-hot (soft labels are not supported)")
        out["label"] = y.argmax(1)
    return out


def _check_maps_in(batch: dict[str, Tensor], harm: HarmonizationLoss) -> None:
    """The harmonization term needs a human map per image on the images' pixels."""
    if "heatmap" not in batch:
        raise ValueError(f"the {harm.name!r} term needs human importance maps in every training batch ('heatmap', "
                         "'token'), as SalientPatternsDataModule and ClickMeDataModule yield them; the batch has "
                         f"{sorted(batch)}; set model.harmonization null or its weight 0 for data without maps")
    x, maps = batch["image"], batch["heatmap"]
    spatial = tuple(maps.shape[-2:])
    if maps.shape[0] != x.shape[0] or spatial != tuple(x.shape[-2:]) or maps.ndim not in (3, 4):
        raise ShapeError(f"heatmap must be (B, H, W) or (B, 1, H, W) on the images' {tuple(x.shape[-2:])} pixels "
                         f"for B={x.shape[0]}; got shape {tuple(maps.shape)}")


def _first_occurrence(index: Tensor) -> tuple[Tensor, Tensor]:
    """Unique values of ``index`` (sorted) and the position of the first occurrence of each."""
    uniq, inverse = torch.unique(index, sorted=True, return_inverse=True)
    pos = torch.arange(len(index), device=index.device)
    first = torch.full((len(uniq),), len(index), dtype=torch.long, device=index.device)
    first = first.scatter_reduce(0, inverse, pos, reduce="amin")
    return uniq, first
