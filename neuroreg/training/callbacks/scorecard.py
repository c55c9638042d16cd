"""ScorecardCallback: every trained model passes through the scorecard, at the end of fit and along the way.

>>> trainer = L.Trainer(callbacks=[ScorecardCallback(every_n_epochs=1)], default_root_dir="runs/a")
>>> trainer.fit(module, datamodule=dm)   # runs/a/scorecard/{scorecard.json, report.html, curves.csv, ...}

At the end of ``fit`` the final model gets the full scorecard of
:func:`neuroreg.scorecard.evaluation` (accuracy on the validation data, the attack suite with
its sanity checks, brain scores), written to ``<run>/scorecard/`` with the same
files as ``neuroreg evaluate``. Along the way a cheaper configuration runs
(brain scores over a few layers, a short PGD at one budget on a capped number of
validation images): by default every ``k`` epochs, the smallest ``k`` at which
its estimated cost is at most ``periodic_budget`` (5 %) of the training's
(:mod:`neuroreg.training.callbacks.scorecard_cost`: counted in pixel-passes, so the steps
do not depend on timing), or every ``every_n_epochs`` epochs / ``every_n_steps``
steps when either is given. What is constant over the run (the brain stimuli at
the model's input size, the validation images of the periodic evaluation) is
prepared once. The results are logged to TensorBoard as scalars::

    brain/<dataset>/<rdm set or region>/<metric>     e.g. brain/kriegeskorte92/monkey_IT/crsa
    robust/<attack>_eps<eps * 255>                   e.g. robust/pgd_eps4 (L-inf; L2: robust/pgd_l2_0.5)
    clean/top1

plus a layer-profile figure; the same numbers go to ``<run>/scorecard/curves.csv``
and into the final scorecard as its ``curves`` section, so
``Scorecard.load(run)`` and ``neuroreg evaluate --run A B`` compare runs by their
curves and final numbers.

The evaluation never changes training: torch (CPU and CUDA), numpy and Python
random states are saved before and restored after, each submodule's train/eval
mode is restored, and parameters do not collect gradients. Under DDP it runs
on rank 0 while the other ranks wait at a barrier.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from neuroreg.data.preprocessing import preprocessing_of
from neuroreg.results.table import ScoreTable
from neuroreg.scorecard.summary import SECTIONS
from neuroreg.training.callbacks.curves import curve_tags, write_curves
from neuroreg.training.callbacks.scorecard_cost import (default_interval, final_attack_passes, final_evaluation_cost,
                                                        periodic_evaluation_cost, training_batch_cost)
from neuroreg.training.callbacks.scorecard_progress import cost_line, stage, stages_of_evaluate
from neuroreg.training.callbacks.scorecard_inputs import Normalized, at_input_size, validation_images
from neuroreg.training.callbacks.training_state import preserve_training_state

__all__ = ["ScorecardCallback"]


class ScorecardCallback(Callback):
    """The scorecard of the model being trained: periodic cheap curves and a full final card.

    Parameters
    ----------
    enabled: switch the callback off (``--scorecard.enabled false``).
    every_n_epochs: periodic evaluation after every N training epochs (0: off).
    every_n_steps: periodic evaluation every N optimizer steps (0: off; with
        ``every_n_epochs`` both run).
        When both are None (the default), the interval is derived at the first
        training batch: every k epochs, the smallest k at which one periodic
        evaluation's estimated cost is at most ``periodic_budget`` of the training
        cost of k epochs (:func:`neuroreg.training.callbacks.scorecard_cost.default_interval`;
        pixel-passes, not timing, so reruns evaluate at the same steps). Giving
        either one (a number, or 0/None for off) replaces the rule; both 0: no
        periodic evaluation.
    periodic_budget: the fraction of the training cost the derived interval allows
        the periodic evaluations (0.05: half the 10 percent the callback is measured against,
        a margin for the estimate).
    final: run the full scorecard at the end of fit.
    folder: where the final scorecard goes; relative paths are under the trainer's
        ``default_root_dir`` (the run folder).
    model_name: the model's name in the scorecard; default the run folder's name,
        so cards of several runs combine side by side.
    brain_sets: brain data sets (bundled names, ``nsd:ROOT``, ``algonauts2023:ROOT``).
    attacks, eps, norm: the final attack suite (``eps`` None: the preset grid).
    corruptions: final corruption suite (None: skip).
    layers, max_layers: the final layer sweep for brain scores.
    max_images: cap on validation images of the final card (None: all).
    periodic_attack: the periodic attack ("pgd"; None: no attack along the way).
    periodic_eps: its budget (L-inf 4/255 by default, RobustBench ImageNet scale).
    periodic_steps: PGD iterations of the periodic attack.
    periodic_max_images: validation images of the periodic accuracy and attack.
    periodic_max_layers: layers of the periodic brain sweep (evenly spaced).
    batch_size, seed: of the evaluation (the seed fixes attack starts and image picks).
    final_sections: the sections of the end-of-run card among accuracy, attacks, corruptions, brain,
        factortopy (None: every section whose inputs are given, as ``neuroreg evaluate`` does).
    final_attack_kwargs: options of the final attack suite
        (:func:`neuroreg.robustness.attack_suite`: ``pgd_steps``, ``square_queries``, ``sanity``, ...;
        empty: its defaults, the full suite with every sanity check).
    final_budget: the end-of-run card scales with the run: it may cost at most this multiple of the
        run's training (both in pixel-passes, :mod:`~neuroreg.training.callbacks.scorecard_cost`: the
        run's optimizer steps, resumed ones included, x the batches per step x the pixel-passes of
        this fit's first training batch, against the full card's estimate). Above it, the *reduced* card runs
        instead, with the periodic evaluation's settings (``periodic_attack`` at ``periodic_eps`` with
        ``periodic_steps`` steps and no sanity checks, ``periodic_max_images`` images, brain scores over
        ``periodic_max_layers`` layers), and a line says so with both estimates. A short test run
        (``--trainer.max_steps 4``) then ends in seconds, a real run gets the full card. None (default):
        always the full card.

    Each stage of the end-of-run card says when it starts and how many seconds it took, and a last
    line states its seconds against the training's (:mod:`~neuroreg.training.callbacks.scorecard_progress`);
    :attr:`cost_` keeps those seconds.
    """

    def __init__(self, enabled: bool = True, every_n_epochs: Optional[int] = None, every_n_steps: Optional[int] = None,
                 periodic_budget: float = 0.05, final: bool = True, folder: str = "scorecard", model_name: Optional[str] = None,
                 brain_sets: Sequence[str] = ("kriegeskorte92",), attacks: Sequence[str] = ("pgd",),
                 eps: Optional[list[float]] = None, norm: str = "Linf", corruptions: Optional[list[str]] = None,
                 layers: Any = "all", max_layers: Optional[int] = None, max_images: Optional[int] = None,
                 periodic_attack: Optional[str] = "pgd", periodic_eps: float = 4 / 255, periodic_steps: int = 5,
                 periodic_max_images: Optional[int] = 128, periodic_max_layers: Optional[int] = 4,
                 batch_size: int = 64, seed: int = 0, final_sections: Optional[list[str]] = None,
                 final_attack_kwargs: Optional[dict[str, Any]] = None, final_budget: Optional[float] = None) -> None:
        super().__init__()
        for name, value in (("every_n_epochs", every_n_epochs), ("every_n_steps", every_n_steps)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None; got {value}")
        if not 0 < periodic_budget <= 1:
            raise ValueError(f"periodic_budget must be a fraction in (0, 1]; got {periodic_budget}")
        if norm not in ("Linf", "L2"):
            raise ValueError(f"norm must be 'Linf' or 'L2'; got {norm!r}")
        if periodic_steps < 1:
            raise ValueError(f"periodic_steps must be >= 1; got {periodic_steps}")
        for name, values in (("eps", eps or []), ("periodic_eps", [periodic_eps])):
            if any(not math.isfinite(v) or v < 0 for v in values):
                raise ValueError(f"scorecard {name} (attack budgets) must be finite and >= 0; got {values}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if final_budget is not None and not (math.isfinite(final_budget) and final_budget > 0):
            raise ValueError(f"final_budget must be a positive multiple of the training's cost or None; "
                             f"got {final_budget}")
        unknown = sorted(set(final_sections or ()) - set(SECTIONS))
        if unknown:
            raise ValueError(f"final_sections must be among {list(SECTIONS)}; got {unknown}")
        self.enabled, self.every_n_epochs, self.every_n_steps, self.final = enabled, every_n_epochs, every_n_steps, final
        self.folder, self.model_name = folder, model_name
        self.brain_sets, self.attacks, self.eps, self.norm = list(brain_sets or ()), list(attacks or ()), eps, norm
        self.corruptions, self.layers, self.max_layers, self.max_images = corruptions, layers, max_layers, max_images
        self.periodic_attack, self.periodic_eps, self.periodic_steps = periodic_attack, periodic_eps, periodic_steps
        self.periodic_max_images, self.periodic_max_layers = periodic_max_images, periodic_max_layers
        self.batch_size, self.seed, self.periodic_budget = batch_size, seed, periodic_budget
        self.final_sections = None if final_sections is None else list(final_sections)
        self.final_attack_kwargs = dict(final_attack_kwargs or {})
        self.final_budget = final_budget
        self._batch_cost: Optional[int] = None        # pixel-passes of this fit's first training batch
        #: whether the last end-of-run card was the reduced one (``final_budget``)
        self.reduced_: bool = False
        self.curves_: list[dict] = []
        self._last_step = -1
        # (every_n_epochs, every_n_steps) in force, fixed at the first training batch of a fit
        self.interval_: Optional[tuple[int, int]] = None
        self._brain_cache: Optional[list] = None      # brain sets, stimuli at the model's input size
        self._task_cache: Any = None                  # periodic validation images as (images, labels) tensors
        self._train_started: Optional[float] = None   # perf_counter() at the first training step of this fit
        self._periodic_seconds = 0.0                  # wall-clock seconds of this fit's periodic evaluations
        #: seconds of the last end-of-run scorecard: scorecard_s, training_s (wall clock of fit's training
        #: loop, periodic evaluations included) and periodic_s
        self.cost_: dict[str, Optional[float]] = {}

    @property
    def auto_interval(self) -> bool:
        """True when the periodic interval is derived from the cost estimate (neither interval given)."""
        return self.every_n_epochs is None and self.every_n_steps is None

    # ------------------------------------------------------------------ where and what
    def run_folder(self, trainer: L.Trainer) -> Path:
        return Path(trainer.default_root_dir)

    def output_folder(self, trainer: L.Trainer) -> Path:
        folder = Path(self.folder)
        return folder if folder.is_absolute() else self.run_folder(trainer) / folder

    def _name(self, trainer: L.Trainer) -> str:
        return self.model_name or self.run_folder(trainer).resolve().name or "model"

    @staticmethod
    def _backbone(pl_module: L.LightningModule) -> nn.Module:
        return getattr(pl_module, "backbone", pl_module)

    def _task_data(self, trainer: L.Trainer, max_images: Optional[int]):
        return validation_images(getattr(trainer, "datamodule", None), max_images, self.seed)

    # ------------------------------------------------------------------ inputs prepared once per fit
    def _brain_sets(self, model: nn.Module) -> list:
        """The brain sets, loaded once, their stimuli resized once to the model's input size
        (:func:`~neuroreg.training.callbacks.scorecard_inputs.at_input_size`)."""
        from neuroreg.scorecard.evaluation import resolve_brain_set  # local: loads neuroreg.robustness (kornia, torchattacks)

        if self._brain_cache is None:
            prep = preprocessing_of(model)
            self._brain_cache = [at_input_size(resolve_brain_set(b), prep) for b in self.brain_sets]
        return self._brain_cache

    def _periodic_task(self, trainer: L.Trainer):
        """The periodic evaluation's validation images, read once per fit into ``(images, labels)`` tensors
        (left as a data set above ``_TASK_CACHE_BYTES``)."""
        if self._task_cache is None:
            task = self._task_data(trainer, self.periodic_max_images)
            if task is None:
                return None
            n = len(task)
            first = task[0][0] if n else None
            if first is None or n * first.numel() * 4 > _TASK_CACHE_BYTES:
                return task
            images, labels = zip(*(task[i] for i in range(n)))
            self._task_cache = (torch.stack(images), torch.as_tensor(labels, dtype=torch.long))
        return self._task_cache

    # ------------------------------------------------------------------ evaluation
    def _final_sections(self) -> list[str]:
        sections = ["accuracy", "brain", "factortopy", *(["attacks"] if self.attacks else []),
                    *(["corruptions"] if self.corruptions else [])]
        return sections if self.final_sections is None else [s for s in sections if s in self.final_sections]

    def _evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, *, periodic: bool):
        from neuroreg.scorecard.evaluation import evaluate  # local: loads neuroreg.robustness (kornia, torchattacks)

        model = self._backbone(pl_module)
        task = self._periodic_task(trainer) if periodic else self._task_data(trainer, self.max_images)
        attacks: list[str]
        eps: list[float] | None
        corruptions: list[str] | None
        attack_kwargs: dict[str, Any]
        if periodic:
            attacks = [self.periodic_attack] if self.periodic_attack else []
            eps, corruptions, layers, max_layers = [self.periodic_eps], None, "all", self.periodic_max_layers
            attack_kwargs = {"pgd_steps": self.periodic_steps, "sanity": False, "progress": False, "n_draws": 1,
                             "eot_iter": _PERIODIC_EOT_ITER}
            sections = ["accuracy", "brain", *(["attacks"] if attacks else [])]
        else:
            attacks, eps, corruptions = self.attacks, self.eps, self.corruptions
            layers, max_layers = self.layers, self.max_layers
            attack_kwargs = {"progress": False, **self.final_attack_kwargs}
            sections = self._final_sections()
        if task is None:
            sections = [s for s in sections if s in ("brain", "factortopy")]
        with preserve_training_state(model):
            brain_sets = self._brain_sets(model)
            return evaluate({self._name(trainer): model}, task, brain_sets=brain_sets, sections=sections,
                            attacks=attacks, eps=eps, norm=self.norm, corruptions=corruptions, layers=layers,
                            max_layers=max_layers, attack_kwargs=attack_kwargs, batch_size=self.batch_size,
                            seed=self.seed, progress=False)

    # ------------------------------------------------------------------ when
    def _cost_inputs(self, trainer: L.Trainer, model: nn.Module, max_images: Optional[int],
                     attacked: bool) -> tuple[list[tuple[int, int]], int, int, bool]:
        """(brain stimuli and their pixels per set, validation images, their pixels, stochastic model?)."""
        from neuroreg.robustness.wrapper import is_stochastic  # local: loads neuroreg.robustness, as evaluate does

        with preserve_training_state(model):
            prep = preprocessing_of(model)
            brain = [(int(b.n_stimuli), prep.input_size[-2] * prep.input_size[-1]) for b in self._brain_sets(model)]
            task = self._task_data(trainer, max_images)
            n_images = len(task) if task is not None else 0
            pixels, stochastic = 0, False
            if n_images:
                x = torch.stack([task[i][0] for i in range(min(2, n_images))])
                pixels = int(x.shape[-2]) * int(x.shape[-1])
                if attacked:
                    device = next((p.device for p in model.parameters()), torch.device("cpu"))
                    with torch.no_grad():
                        stochastic = is_stochastic(Normalized(model, prep), x.to(device))
        return brain, n_images, pixels, stochastic

    def periodic_cost(self, trainer: L.Trainer, pl_module: L.LightningModule) -> int:
        """Estimated pixel-passes of one periodic evaluation of this run
        (:func:`neuroreg.training.callbacks.scorecard_cost.periodic_evaluation_cost`)."""
        brain, n_images, pixels, stochastic = self._cost_inputs(trainer, self._backbone(pl_module),
                                                                self.periodic_max_images, bool(self.periodic_attack))
        return periodic_evaluation_cost(brain_stimuli=brain, n_images=n_images, image_pixels=pixels,
                                        attack=self.periodic_attack if n_images else None,
                                        steps=self.periodic_steps, eot_iter=_PERIODIC_EOT_ITER,
                                        stochastic=stochastic)

    def final_cost(self, trainer: L.Trainer, pl_module: L.LightningModule) -> int:
        """Estimated pixel-passes of the full end-of-run card of this run
        (:func:`neuroreg.training.callbacks.scorecard_cost.final_evaluation_cost`; FactorTopy fits not counted)."""
        sections = self._final_sections()
        attacked = "attacks" in sections and bool(self.attacks)
        brain, n_images, pixels, stochastic = self._cost_inputs(trainer, self._backbone(pl_module),
                                                                self.max_images, attacked)
        kw = self.final_attack_kwargs
        attack = final_attack_passes(self.attacks, n_eps=len(self.eps) if self.eps else 3,
                                     steps=int(kw.get("pgd_steps", 10)), eot_iter=int(kw.get("eot_iter", 10)),
                                     stochastic=stochastic, sanity=bool(kw.get("sanity", True)),
                                     n_draws=int(kw.get("n_draws", 5))) if attacked else 0
        corruption = (len(self.corruptions or []) * 5) if "corruptions" in sections else 0
        return final_evaluation_cost(brain_stimuli=brain if "brain" in sections else [], n_images=n_images,
                                     image_pixels=pixels, attack_passes_per_image=attack,
                                     corruption_passes_per_image=corruption)

    def _reduced_final(self, trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
        """Whether the end-of-run card must be the reduced one (``final_budget``), said in one line either way."""
        if self.final_budget is None:
            return False
        full = self.final_cost(trainer, pl_module)
        trained = (self._batch_cost or 0) * int(trainer.global_step) * int(trainer.accumulate_grad_batches)
        allowed = self.final_budget * trained
        reduced = full > allowed
        rank_zero_info(f"scorecard: the full end-of-run card is estimated at {full:,} pixel-passes against "
                       f"{trained:,} of this run's training (final_budget {self.final_budget:g} allows "
                       f"{allowed:,.0f}): " + (
                           f"the reduced card runs ({self.periodic_attack or 'no attack'} at eps "
                           f"{self.periodic_eps:.4g}, {self.periodic_steps} steps, no sanity checks, at most "
                           f"{self.periodic_max_images} images, {self.periodic_max_layers} layers; "
                           "--scorecard.final_budget null for the full card)" if reduced else "the full card runs"))
        return reduced

    def _fix_interval(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any) -> tuple[int, int]:
        if not self.auto_interval:
            return int(self.every_n_epochs or 0), int(self.every_n_steps or 0)
        interval: Optional[tuple[int, int]] = None
        if trainer.is_global_zero:   # rank 0 holds the brain sets; the others take its answer
            evaluation = self.periodic_cost(trainer, pl_module)
            per_batch = training_batch_cost(batch)
            interval = default_interval(evaluation, per_batch, batches_per_epoch=float(trainer.num_training_batches),
                                        budget=self.periodic_budget,
                                        accumulate_grad_batches=int(trainer.accumulate_grad_batches))
            every = f"{interval[0]} epochs" if interval[0] else f"{interval[1]} steps"
            rank_zero_info(f"scorecard: periodic evaluation every {every} (estimated {evaluation:,} pixel-passes "
                           f"against {per_batch:,} per training batch, budget {self.periodic_budget:.0%}; "
                           "set --scorecard.every_n_epochs or every_n_steps to choose)")
        shared = trainer.strategy.broadcast(interval, src=0)
        if shared is None:   # rank 0 always sends one
            raise RuntimeError("scorecard: rank 0 sent no periodic interval")
        return int(shared[0]), int(shared[1])

    def _log(self, trainer: L.Trainer, card, step: int, epoch: int) -> dict[str, float]:
        tags = curve_tags(card)
        name = self._name(trainer)
        for tag, value in tags.items():
            self.curves_.append({"model": name, "step": step, "epoch": epoch, "tag": tag, "value": value})
        writer = _tensorboard_writer(trainer)
        if writer is not None:
            for tag, value in tags.items():
                writer.add_scalar(tag, value, global_step=step)
            fig = _layer_profile(card)
            if fig is not None:
                writer.add_figure("scorecard/layer_profile", fig, global_step=step)
            writer.flush()
        self._write_curves(trainer)
        return tags

    def _write_curves(self, trainer: L.Trainer) -> Path:
        return write_curves(self.curves_, self.output_folder(trainer))

    def _periodic(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = int(trainer.global_step)
        if step == self._last_step:  # epoch and step schedules can meet on one step
            return
        self._last_step = step
        if trainer.is_global_zero:
            tic = time.perf_counter()
            card = self._evaluate(trainer, pl_module, periodic=True)
            self._log(trainer, card, step, int(trainer.current_epoch))
            seconds = time.perf_counter() - tic
            self._periodic_seconds += seconds
            rank_zero_info(f"scorecard: periodic evaluation at step {step} took {seconds:.1f} s")
        trainer.strategy.barrier("scorecard_periodic")

    # ------------------------------------------------------------------ Lightning hooks
    def on_fit_start(self, trainer, pl_module) -> None:
        # a new fit may bring another model or data: prepare the inputs and the interval afresh
        self.interval_, self._brain_cache, self._task_cache = None, None, None
        self._train_started, self._periodic_seconds, self.cost_ = None, 0.0, {}
        self._batch_cost, self.reduced_ = None, False

    def on_train_start(self, trainer, pl_module) -> None:
        self._train_started = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.enabled and self.interval_ is None:
            self.interval_ = self._fix_interval(trainer, pl_module, batch)
        if self.enabled and self.final_budget is not None and self._batch_cost is None:
            self._batch_cost = training_batch_cost(batch)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.enabled or self.interval_ is None or not self.interval_[1] or trainer.sanity_checking:
            return
        if trainer.global_step > 0 and trainer.global_step % self.interval_[1] == 0:
            self._periodic(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self.enabled or self.interval_ is None or not self.interval_[0]:
            return
        if (trainer.current_epoch + 1) % self.interval_[0] == 0:
            self._periodic(trainer, pl_module)

    def on_fit_end(self, trainer, pl_module) -> None:
        if not self.enabled or not self.final:
            return
        if trainer.is_global_zero:
            training = None if self._train_started is None else time.perf_counter() - self._train_started
            tic = time.perf_counter()
            folder = self._final_card(trainer, pl_module)
            seconds = time.perf_counter() - tic
            self.cost_ = {"scorecard_s": seconds, "training_s": training, "periodic_s": self._periodic_seconds}
            rank_zero_info(f"scorecard: written to {folder}; {cost_line(seconds, training, self._periodic_seconds)} "
                           "(--scorecard.final_sections chooses its sections, --scorecard.final false skips it)")
        trainer.strategy.barrier("scorecard_final")

    def _final_card(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path:
        """The full scorecard of the trained model, each stage said as it runs; returns its folder."""
        say = rank_zero_info
        with stage(say, "scorecard: brain sets at the model's input size"):
            self._brain_sets(self._backbone(pl_module))
        self.reduced_ = self._reduced_final(trainer, pl_module)
        with stages_of_evaluate(say, "scorecard: "):
            # the reduced card is the periodic evaluation's configuration, written as the end-of-run card
            card = self._evaluate(trainer, pl_module, periodic=self.reduced_)
        step, epoch = int(trainer.global_step), int(trainer.current_epoch)
        folder = self.output_folder(trainer)
        with stage(say, f"scorecard: report written to {folder}"):
            self._log_final(trainer, card, step)
            if self.curves_:
                card.add("curves", ScoreTable({"model": r["model"], "step": r["step"], "epoch": r["epoch"],
                                               "metric": r["tag"], "score": r["value"]} for r in self.curves_))
            card.title = (f"neuroreg scorecard: {self._name(trainer)} (step {step}, epoch {epoch}"
                          + ("; reduced end-of-run card: the run was short for the full one, final_budget)"
                             if self.reduced_ else ")"))
            if self.curves_:
                # local: pyplot, rarely needed in training
                from neuroreg.training.callbacks.curves_figure import write_curves_figure
                card.figures.append((str(write_curves_figure(self.curves_, folder)),
                                     "Scores along training (periodic scorecard: brain scores over a few layers, "
                                     "short PGD on a subset of the validation images).", "curves"))
            card.save(folder, tensorboard=False)
        return folder

    def _log_final(self, trainer: L.Trainer, card, step: int) -> None:
        writer = _tensorboard_writer(trainer)
        if writer is None:
            return
        for tag, value in curve_tags(card).items():
            writer.add_scalar(f"final/{tag}", value, global_step=step)
        writer.flush()

    def state_dict(self) -> dict:
        return {"curves": list(self.curves_), "last_step": self._last_step}

    def load_state_dict(self, state_dict: dict) -> None:
        self.curves_ = list(state_dict.get("curves", []))
        self._last_step = int(state_dict.get("last_step", -1))


#: EOT gradient draws per step of the periodic attack on a stochastic model
_PERIODIC_EOT_ITER = 2
#: the periodic validation images are kept as one tensor up to this size (128 images at 224 px: 77 MB)
_TASK_CACHE_BYTES = 512 * 2 ** 20


def _tensorboard_writer(trainer: L.Trainer):
    for logger in trainer.loggers:
        exp = getattr(logger, "experiment", None)
        if exp is not None and hasattr(exp, "add_scalar"):
            return exp
    return None


def _layer_profile(card):
    brain = card.sections.get("brain")
    if brain is None or not len(brain):
        return None
    from neuroreg.scorecard.report import plot_depth_profile  # local: pyplot, rarely needed in training
    first = brain[0]
    sub = brain.filter(dataset=first.get("dataset"), metric=first["metric"])
    try:
        return plot_depth_profile(sub, title=f"{first['metric']} on {first.get('dataset')}")
    except ValueError as exc:  # nothing to draw is not worth stopping the run for
        warnings.warn(f"scorecard layer profile not drawn: {exc}", stacklevel=2)
        return None
