"""``--config FILE.yaml`` for every ``neuroreg`` command, through jsonargparse (as LightningCLI does for ``train``).

A command module declares its options with ``add_arguments(parser)`` (argparse
style); :func:`parse_command` builds a jsonargparse parser from them, adds
``--config`` and parses. YAML keys are the option names with underscores
(``task_data``, ``max_layers``); options given on the command line after
``--config`` override the file. ``--print_config`` shows the resolved options.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from jsonargparse import ActionConfigFile, ArgumentParser

__all__ = ["parse_command", "build_command_parser"]


def build_command_parser(name: str, module, description: str = ""):
    parser = ArgumentParser(prog=f"neuroreg {name}", description=description or None, default_env=False)
    parser.add_argument("--config", action=ActionConfigFile,
                        help="YAML file with any of the options below (keys: option names with underscores)")
    module.add_arguments(parser)
    return parser


def parse_command(name: str, module, argv: Sequence[str], description: str = "") -> argparse.Namespace:
    """Parse ``argv`` (after the command name) into a plain argparse Namespace, ``--config`` applied."""
    parser = build_command_parser(name, module, description)
    ns = parser.parse_args(list(argv))
    values = {k: v for k, v in vars(ns).items() if k != "config" and not k.startswith("__")}
    return argparse.Namespace(**values)
