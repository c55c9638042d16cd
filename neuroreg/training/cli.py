"""``neuroreg train``: LightningCLI over :class:`BrainRegularizedModule` and the data modules.

    neuroreg train --config configs/train_tiny_cornet_z.yaml
    neuroreg train --config configs/train_tiny_cornet_z.yaml --trainer.max_steps 10 --trainer.default_root_dir runs/a
    neuroreg train --config ... --ckpt_path last          # resume from <root>/checkpoints/last.ckpt
    neuroreg train --config ... --resume_if_possible true # resume if last.ckpt exists, else start fresh

Every option of the model, the data module, the trainer and the checkpoint
callback can be set in the YAML file or overridden on the command line
(``--print_config`` shows the full resolved configuration). Checkpoints go to
``<trainer.default_root_dir>/checkpoints`` unless ``--checkpoint.dirpath`` says
otherwise: the best one by ``val/acc1`` and ``last.ckpt`` (every
``--checkpoint.every_n_train_steps`` steps, at each validation and at the end).
Checkpoints are written atomically; a run folder is locked while a run uses it
(see docs/reliability.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Optional, Sequence

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO

from neuroreg._exit import run_guarded
from neuroreg._io import PathLock
from neuroreg.training.checkpointing import LOCK_NAME, AtomicCheckpointIO, ResumableCheckpoint, resolve_resume_path
from neuroreg.training.data import AlignedDataModule
from neuroreg.training.module import BrainRegularizedModule
from neuroreg.training.scorecard_callback import ScorecardCallback

__all__ = ["NeuroregCLI", "cli_main", "build_cli", "fit_cli", "add_arguments", "run"]


class NeuroregCLI(LightningCLI):
    """LightningCLI with a checkpoint callback under the run's root, ``--ckpt_path`` and the run's scorecard
    (``--scorecard.*``, :class:`~neuroreg.training.scorecard_callback.ScorecardCallback`)."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--ckpt_path", type=Optional[str], default=None,
                            help="checkpoint to resume from: a path, or 'last' for <dirpath>/last.ckpt "
                                 "(an error if there is none)")
        parser.add_argument("--resume_if_possible", type=bool, default=False,
                            help="resume from <dirpath>/last.ckpt if it exists, else start a fresh run (and say so)")
        parser.add_lightning_class_args(ResumableCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": "val/acc1", "checkpoint.mode": "max",
                             "checkpoint.save_last": True, "checkpoint.save_top_k": 1,
                             "checkpoint.filename": "best-step{step}", "checkpoint.auto_insert_metric_name": False})
        # the scorecard of the run (on by default; --scorecard.enabled false switches it off)
        parser.add_lightning_class_args(ScorecardCallback, "scorecard")

    def before_instantiate_classes(self) -> None:
        cfg = self.config
        if cfg.get("checkpoint") is not None and cfg.checkpoint.dirpath is None:
            root = cfg.trainer.default_root_dir or os.getcwd()
            cfg.checkpoint.dirpath = os.path.join(str(root), "checkpoints")

    def _instantiate_trainer(self, config: dict, callbacks: list):
        # Every checkpoint is written atomically unless the configuration names its own CheckpointIO.
        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        config["plugins"] = plugins
        return super()._instantiate_trainer(config, callbacks)


def cli_main(argv: Sequence[str] | None = None, *, debug: bool = False) -> int:
    """Parse ``argv`` (everything after ``neuroreg train``), build the parts, and fit.

    A bad configuration (unknown model or area, neural set smaller than the
    neural batch, class-count mismatch, negative ``max_steps``, unavailable
    accelerator) exits with status 2, a missing, truncated or foreign
    ``--ckpt_path`` with 4, a checkpoint that cannot be written with 5, a run
    folder held by another run with 6 (see ``neuroreg --help``), each with one
    line on stderr and before any training step where possible.
    """
    return run_guarded("train", lambda: _fit(argv), debug=debug)


def _is_main_process() -> bool:
    """Rank 0 of a (possibly multi-process) launch, judged from the launcher's environment."""
    return all(int(os.environ.get(k, "0") or 0) == 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def build_cli(argv: Sequence[str] | None) -> NeuroregCLI:
    """Parse ``argv`` and instantiate the model, data module and trainer, without fitting."""
    with warnings.catch_warnings():
        # `neuroreg train ...` passes its own argv; LightningCLI would warn that sys.argv differs.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return NeuroregCLI(BrainRegularizedModule, AlignedDataModule, subclass_mode_data=True, run=False,
                           args=list(argv) if argv is not None else None, seed_everything_default=0,
                           save_config_kwargs={"overwrite": True},
                           parser_kwargs={"prog": "neuroreg train", "default_env": False})


def fit_cli(cli: NeuroregCLI) -> None:
    """Fit a built CLI's model: lock the run folder, resolve ``--ckpt_path``/``--resume_if_possible``, fit.

    Raises :class:`~neuroreg.errors.RunLockedError` if another live run holds the
    folder (or a fresh run would overwrite an earlier run's ``last.ckpt``) and
    :class:`~neuroreg.errors.CheckpointError` for a missing, unreadable or
    foreign checkpoint, before any training step.
    """
    trainer = cli.trainer
    root = os.path.abspath(str(trainer.default_root_dir))
    # ModelCheckpoint and the like have a dirpath; Lightning's Checkpoint base class declares none
    dirpaths = [getattr(cb, "dirpath", None) for cb in trainer.checkpoint_callbacks]
    ckpt_dirs = sorted({os.path.abspath(str(d)) for d in dirpaths if d})
    locks = []
    if _is_main_process():
        # One live run per folder: its logs, config.yaml and last.ckpt belong to it alone.
        for folder in sorted({root, *ckpt_dirs}):
            if not any(folder.startswith(os.path.join(other, "")) for other in (root, *ckpt_dirs) if other != folder):
                locks.append(PathLock(os.path.join(folder, LOCK_NAME), purpose="neuroreg train"))
    try:
        for lock in locks:
            lock.acquire()
        ckpt_path, note = resolve_resume_path(cli.config.get("ckpt_path"), ckpt_dirs[0] if ckpt_dirs else None,
                                              cli.model, resume_if_possible=bool(cli.config.get("resume_if_possible")))
        if note and _is_main_process():
            print(f"neuroreg train: {note}", file=sys.stderr)
        try:
            trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
        except SystemExit:
            if trainer.interrupted:  # Lightning turns Ctrl-C into exit(1); report it as an interruption (130)
                raise KeyboardInterrupt from None
            raise
    finally:
        for lock in reversed(locks):
            lock.release()


def _fit(argv: Sequence[str] | None) -> int:
    fit_cli(build_cli(argv))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Subcommand protocol of ``neuroreg``: the arguments are parsed by LightningCLI in :func:`run`."""
    parser.add_argument("lightning_args", nargs=argparse.REMAINDER,
                        help="LightningCLI arguments, e.g. --config configs/train_tiny_cornet_z.yaml")


def run(args: argparse.Namespace) -> int:
    """Subcommand protocol of ``neuroreg``: hand the remaining arguments to :func:`cli_main`."""
    return cli_main(list(getattr(args, "lightning_args", []) or []))
