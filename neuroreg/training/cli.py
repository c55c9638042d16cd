"""``neuroreg train``: LightningCLI over :class:`BrainRegularizedModule` and the data modules.

    neuroreg train --config configs/train_tiny_cornet_z.yaml
    neuroreg train --config configs/train_tiny_cornet_z.yaml --trainer.max_steps 10 --trainer.default_root_dir runs/a
    neuroreg train --config ... --ckpt_path last          # resume from <root>/checkpoints/last.ckpt

Every option of the model, the data module, the trainer and the checkpoint
callback can be set in the YAML file or overridden on the command line
(``--print_config`` shows the full resolved configuration). Checkpoints go to
``<trainer.default_root_dir>/checkpoints`` unless ``--checkpoint.dirpath`` says
otherwise: the best one by ``val/acc1`` and ``last.ckpt``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Optional, Sequence

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from neuroreg.errors import NeuroregError
from neuroreg.training.data import AlignedDataModule
from neuroreg.training.module import BrainRegularizedModule
from neuroreg.training.scorecard_callback import ScorecardCallback

__all__ = ["NeuroregCLI", "cli_main", "build_cli", "fit_cli", "add_arguments", "run"]


class NeuroregCLI(LightningCLI):
    """LightningCLI with a checkpoint callback under the run's root, ``--ckpt_path`` and the run's scorecard
    (``--scorecard.*``, :class:`~neuroreg.training.scorecard_callback.ScorecardCallback`)."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--ckpt_path", type=Optional[str], default=None,
                            help="checkpoint to resume from: a path, or 'last' for <dirpath>/last.ckpt")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
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


def cli_main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (everything after ``neuroreg train``), build the parts, and fit.

    A bad configuration (unknown model or area, neural set smaller than the
    neural batch, class-count mismatch, missing files) is reported in one line
    on stderr with exit status 2, before any training step.
    """
    try:
        return _fit(argv)
    except (NeuroregError, ValueError, FileNotFoundError) as exc:
        print(f"neuroreg train: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


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
    """Fit a built CLI's model (resuming from ``--ckpt_path`` when given)."""
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.get("ckpt_path"))


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
