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
(see docs/reliability.md). The LightningCLI core (building and fitting) is
:mod:`neuroreg.training.lightning_cli`, which Tune trials run too.
"""

from __future__ import annotations

import argparse
from typing import Callable, Sequence

from neuroreg.cli._exit import run_guarded
from neuroreg.training.lightning_cli import run_cli

__all__ = ["cli_main", "add_arguments", "run", "lightning_subcommand"]


def cli_main(argv: Sequence[str] | None = None, *, debug: bool = False) -> int:
    """Parse ``argv`` (everything after ``neuroreg train``), build the parts, and fit.

    A bad configuration (a bad ``--config`` file, unknown option or value of the wrong type, unknown model or
    area, neural set smaller than the neural batch, class-count mismatch, negative ``max_steps``, unavailable
    accelerator) exits with status 2, a missing, truncated or foreign ``--ckpt_path`` with 4, a run folder or
    checkpoint that cannot be written with 5, a run folder held by another run with 6 (see ``neuroreg --help``),
    each with one line on stderr and before any training step where possible.
    """
    return run_guarded("train", lambda: _fit(argv), debug=debug)


def _fit(argv: Sequence[str] | None) -> int:
    return run_cli(argv)


def lightning_subcommand(cli_main: Callable[..., int], example: str
                         ) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]:
    """The ``add_arguments(parser)`` and ``run(args)`` of the ``neuroreg`` subcommand protocol for a command whose
    arguments LightningCLI parses (``train``, ``finetune``): everything after the command goes to ``cli_main``."""

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("lightning_args", nargs=argparse.REMAINDER,
                            help=f"LightningCLI arguments, e.g. --config {example}")

    def run(args: argparse.Namespace) -> int:
        return cli_main(list(getattr(args, "lightning_args", []) or []))

    return add_arguments, run


add_arguments, run = lightning_subcommand(cli_main, "configs/train_tiny_cornet_z.yaml")
