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

from neuroreg.training.config_errors import check_config_files, usage_error

__all__ = ["parse_command", "build_command_parser"]


def build_command_parser(name: str, module, description: str = ""):
    parser = ArgumentParser(prog=f"neuroreg {name}", description=description or None, default_env=False,
                            exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile,
                        help="YAML file with any of the options below (keys: option names with underscores)")
    module.add_arguments(parser)
    return parser


def parse_command(name: str, module, argv: Sequence[str], description: str = "") -> argparse.Namespace:
    """Parse ``argv`` (after the command name) into a plain argparse Namespace, ``--config`` applied.

    Raises :class:`~neuroreg.errors.ConfigError` (one line) for a bad ``--config`` file, an unknown option or a
    value of the wrong type."""
    argv = list(argv)
    check_config_files(argv)
    parser = build_command_parser(name, module, description)
    options = {a.dest: a.option_strings[-1] for a in parser._actions if a.option_strings}
    try:
        ns = parser.parse_args(argv)
    except argparse.ArgumentError as exc:
        raise usage_error(exc, argv, lambda key: options.get(key, f"--{key}")) from exc
    values = {k: v for k, v in vars(ns).items() if k != "config" and not k.startswith("__")}
    return argparse.Namespace(**values)
