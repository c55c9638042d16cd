"""The LightningCLI core of ``neuroreg train`` and ``neuroreg finetune``: build the parts from a configuration, then
fit with the run folder locked.

:func:`build_cli` parses the arguments and instantiates the model, data module and trainer
(:class:`NeuroregCLI`: the checkpoint callback under the run's root, ``--ckpt_path``, the run's
scorecard); :func:`fit_cli` fits a built CLI: run folder locked, resume point resolved,
:meth:`NeuroregCLI.before_fit`, ``trainer.fit``, :meth:`NeuroregCLI.after_fit`, lock released;
:func:`run_cli` does both, holding Lightning's start-up lines back until every check has passed.
The command line (:mod:`neuroreg.cli.train`) and a Tune trial (:mod:`neuroreg.sweep.tune`) run a
configuration through these same functions.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from typing import Callable, Iterator, Optional, Sequence

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO

from neuroreg._utils.io import PathLock, check_output_target
from neuroreg.errors import OutputError
from neuroreg.training.callbacks.scorecard import ScorecardCallback
from neuroreg.training.checkpointing import LOCK_NAME, AtomicCheckpointIO, ResumableCheckpoint, resolve_resume_path
from neuroreg.training.config_errors import check_config_files, usage_error
from neuroreg.training.module import BrainRegularizedModule

__all__ = ["NeuroregCLI", "build_cli", "fit_cli", "run_cli", "held_start_up_lines"]


class NeuroregCLI(LightningCLI):
    """LightningCLI with a checkpoint callback under the run's root, ``--ckpt_path`` and the run's scorecard
    (``--scorecard.*``, :class:`~neuroreg.training.callbacks.ScorecardCallback`).

    :func:`fit_cli` runs every command built on it (``train``, ``finetune``) the same way: run folder locked,
    resume point resolved, :meth:`before_fit`, ``trainer.fit``, :meth:`after_fit`, lock released.
    """

    #: the ``neuroreg`` command: in messages and in the run folder's lock file
    command = "train"

    def before_fit(self) -> None:
        """Called once the run folder is locked and the resume point is known, before the first training step:
        check and load what the run needs from outside (a bad input stops the run before it starts)."""

    def after_fit(self) -> None:
        """Called after a successful ``trainer.fit``, with the run folder still locked."""

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


def _is_main_process() -> bool:
    """Rank 0 of a (possibly multi-process) launch, judged from the launcher's environment."""
    return all(int(os.environ.get(k, "0") or 0) == 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def build_cli(argv: Sequence[str] | None, cli_class: type[NeuroregCLI] = NeuroregCLI,
              model_class: type[LightningModule] = BrainRegularizedModule,
              datamodule_class: type[LightningDataModule] = LightningDataModule,
              description: str | None = None) -> NeuroregCLI:
    """Parse ``argv`` and instantiate the model, data module and trainer of ``cli_class``, without fitting.

    A bad ``--config`` file, an unknown option or a value of the wrong type raises
    :class:`~neuroreg.errors.ConfigError` with one line naming the file or option and the value.
    """
    args = list(argv) if argv is not None else sys.argv[1:]
    check_config_files(args)
    parser_kwargs = {"prog": f"neuroreg {cli_class.command}", "default_env": False, "exit_on_error": False}
    if description:
        parser_kwargs.update(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    with warnings.catch_warnings():
        # `neuroreg train ...` passes its own argv; LightningCLI would warn that sys.argv differs.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        try:
            return cli_class(model_class, datamodule_class, subclass_mode_data=True, run=False, args=args,
                             seed_everything_default=0, save_config_kwargs={"overwrite": True},
                             parser_kwargs=parser_kwargs)
        except argparse.ArgumentError as exc:
            raise usage_error(exc, args) from exc


def _acquire(lock: PathLock, option: str) -> None:
    try:
        lock.acquire()
    except OSError as exc:  # the folder cannot be created (below a file, in /proc, read-only)
        raise OutputError(f"{option}={str(lock.path.parent)!r} cannot be created or written: "
                          f"{exc.strerror or exc}") from exc


#: Lightning's loggers: their start-up lines (seed, devices, tips) are held back until the run starts.
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


class _Held(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def held_start_up_lines() -> Iterator[Callable[[], None]]:
    """Hold Lightning's start-up log lines back; the yielded ``release()`` prints them and lets later lines
    through. Without ``release()`` (the run stopped before it started) they are dropped, so a configuration
    error is the only line on stderr."""
    held = _Held()
    saved = {}
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = logger.handlers[:]
        logger.handlers = [held]
    released = False

    def restore() -> None:
        for name, handlers in saved.items():
            logging.getLogger(name).handlers = handlers

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            restore()
            for record in held.records:
                logging.getLogger(record.name).handle(record)

    try:
        yield release
    finally:
        if not released:
            restore()


def fit_cli(cli: NeuroregCLI, *, on_start: Callable[[], None] | None = None) -> None:
    """Fit a built CLI's model: lock the run folder, resolve ``--ckpt_path``/``--resume_if_possible``,
    ``cli.before_fit()``, ``on_start()``, fit, ``cli.after_fit()``.

    Raises :class:`~neuroreg.errors.OutputError` if the run folder cannot be written,
    :class:`~neuroreg.errors.RunLockedError` if another live run holds the folder (or a
    fresh run would overwrite an earlier run's ``last.ckpt``) and
    :class:`~neuroreg.errors.CheckpointError` for a missing, unreadable or foreign
    checkpoint, before any training step.
    """
    trainer = cli.trainer
    root = os.path.abspath(str(trainer.default_root_dir))
    # ModelCheckpoint and the like have a dirpath; Lightning's Checkpoint base class declares none
    dirpaths = [getattr(cb, "dirpath", None) for cb in trainer.checkpoint_callbacks]
    ckpt_dirs = sorted({os.path.abspath(str(d)) for d in dirpaths if d})
    options = {root: "--trainer.default_root_dir", **{d: "--checkpoint.dirpath" for d in ckpt_dirs if d != root}}
    for folder, option in options.items():  # an existing file, below a file, no write permission: exit status 5
        check_output_target(folder, kind="dir", name=option)
    locks = []
    if _is_main_process():
        # One live run per folder: its logs, config.yaml and last.ckpt belong to it alone.
        for folder in sorted({root, *ckpt_dirs}):
            if not any(folder.startswith(os.path.join(other, "")) for other in (root, *ckpt_dirs) if other != folder):
                locks.append(PathLock(os.path.join(folder, LOCK_NAME), purpose=f"neuroreg {cli.command}"))
    try:
        for lock in locks:
            _acquire(lock, options[str(lock.path.parent)])
        ckpt_path, note = resolve_resume_path(cli.config.get("ckpt_path"), ckpt_dirs[0] if ckpt_dirs else None,
                                              cli.model, resume_if_possible=bool(cli.config.get("resume_if_possible")))
        if note and _is_main_process():
            print(f"neuroreg {cli.command}: {note}", file=sys.stderr)
        cli.before_fit()
        if on_start is not None:
            on_start()
        try:
            trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
        except SystemExit:
            if trainer.interrupted:  # Lightning turns Ctrl-C into exit(1); report it as an interruption (130)
                raise KeyboardInterrupt from None
            raise
        cli.after_fit()
    finally:
        for lock in reversed(locks):
            lock.release()


def run_cli(argv: Sequence[str] | None, cli_class: type[NeuroregCLI] = NeuroregCLI,
            model_class: type[LightningModule] = BrainRegularizedModule,
            datamodule_class: type[LightningDataModule] = LightningDataModule, description: str | None = None) -> int:
    """Build and fit (:func:`build_cli`, :func:`fit_cli`): the body of ``neuroreg train`` and ``neuroreg finetune``.
    Lightning's start-up lines appear once every check has passed, so an error before the first step is the only
    line on stderr."""
    with held_start_up_lines() as release:
        fit_cli(build_cli(argv, cli_class, model_class, datamodule_class, description), on_start=release)
    return 0
