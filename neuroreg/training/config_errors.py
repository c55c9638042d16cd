"""Usage errors of the command line in one line: ``--config`` files checked before parsing, parser errors condensed.

jsonargparse (under LightningCLI and the ``--config`` commands) reports a bad
option as a usage block over many lines, and a bad ``--config`` file without
its name. :func:`check_config_files` reads every ``--config`` file before the
parser does and raises :class:`~neuroreg.errors.ConfigError` naming the file
and what is wrong; :func:`usage_error` turns a parser's ``ArgumentError`` into a
``ConfigError`` of one line naming the option, the value seen and what was
expected. Both end as exit status 2 (see :mod:`neuroreg.cli._exit`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Sequence

import yaml

from neuroreg.cli._exit import condense
from neuroreg.errors import ConfigError

__all__ = ["check_config_files", "config_files", "usage_error"]

_MAPPING_HINT = "expected a mapping of option names to values (e.g. 'trainer: {max_steps: 10}')"


def config_files(argv: Sequence[str]) -> list[str]:
    """The values of every ``--config VALUE`` / ``--config=VALUE`` in ``argv``, in order."""
    values = []
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif arg.startswith("--config="):
            values.append(arg[len("--config="):])
    return values


def _is_inline_yaml(value: str) -> bool:
    """jsonargparse also takes the configuration itself as the value (``--config '{a: 1}'``)."""
    return value.lstrip().startswith("{") or "\n" in value or ": " in value


def check_config_files(argv: Sequence[str]) -> None:
    """Raise :class:`ConfigError` for a ``--config`` file that is missing, a folder, unreadable, not YAML, empty or
    not a mapping; the message names the file."""
    for value in config_files(argv):
        path = Path(value).expanduser()
        if not path.exists():
            if _is_inline_yaml(value):
                continue
            raise ConfigError(f"--config {value}: file not found")
        if path.is_dir():
            raise ConfigError(f"--config {value} is a folder; expected a YAML file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--config {value}: cannot be read ({type(exc).__name__}: {exc})") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
            raise ConfigError(f"--config {value}: not valid YAML{where}: {problem}") from exc
        if data is None:
            raise ConfigError(f"--config {value} is empty; {_MAPPING_HINT}")
        if not isinstance(data, dict):
            kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
            raise ConfigError(f"--config {value} holds {kind}; {_MAPPING_HINT}")


def usage_error(exc: BaseException, argv: Sequence[str] = (),
                option_of: Callable[[str], str] | None = None) -> ConfigError:
    """A parser's error as a :class:`ConfigError` of one line; an unknown key is traced to the ``--config``
    file that holds it."""
    message = str(exc)
    unknown = re.match(r"Option '([^']+)' is not accepted|Key \"([^\"]+)\" is not expected", message.strip())
    if unknown is not None:
        key = unknown.group(1) or unknown.group(2)
        for value in config_files(argv):
            if _holds_key(value, key):
                return ConfigError(f"--config {value}: unknown option {key!r}")
        return ConfigError(f"unknown option {key!r}")
    return ConfigError(condense(message, option_of))


def _holds_key(value: str, key: str) -> bool:
    try:
        data = yaml.safe_load(Path(value).expanduser().read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True

