"""Configuration errors in one line: ``--config`` files checked before parsing, parser errors condensed.

jsonargparse (under LightningCLI and the command line's ``--config`` commands) reports a bad
option as a usage block over many lines, and a bad ``--config`` file without
its name. :func:`check_config_files` reads every ``--config`` file before the
parser does and raises :class:`~neuroreg.errors.ConfigError` naming the file
and what is wrong; :func:`usage_error` turns a parser's ``ArgumentError`` into a
``ConfigError`` of one line naming the option, the value seen and what was
expected (:func:`condense_parser_error`). On the command line both end as exit status 2.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Callable, Sequence

import yaml

from neuroreg.errors import ConfigError

__all__ = ["check_config_files", "condense_parser_error", "config_files", "usage_error"]

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
    return ConfigError(condense_parser_error(message, option_of))


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


def _type_name(text: str) -> str:
    """``<class 'int'>`` -> ``int``, ``<class 'NoneType'>`` -> ``None``, ``typing.Literal['a', 'b']`` ->
    ``one of 'a', 'b'``; anything else as written."""
    text = text.strip()
    literal = re.fullmatch(r"(?:typing\.)?Literal\[(.*)\]", text)
    if literal is not None:
        return f"one of {literal.group(1)}"
    names = [("None" if n == "NoneType" else n.rsplit(".", 1)[-1]) for n in re.findall(r"<class '([\w.]+)'>", text)]
    return " or ".join(names) if names else text


def _article(name: str) -> str:
    if name.startswith("one of") or name == "None":
        return ""
    return "an " if name[:1].lower() in "aeiou" else "a "


def _class_problem(option: str, body: str) -> str | None:
    """A subclass option (``--data``) whose class_path or init_args were refused: the inner reason, with the
    option spelled out down to the key (``--data.init_args.n_images``)."""
    problem = re.search(r"Problem with given class_path '([^']+)':\n(.*?)(?=\n\s*- |\n\s*Given value|\Z)", body,
                        re.S)
    if problem is None:
        return None
    class_path, inner = problem.group(1), textwrap.dedent(problem.group(2)).strip()
    if inner.startswith("Parser key"):
        return condense_parser_error(inner, lambda key: f"{option}.init_args.{key}")
    unknown = re.match(r"Option '([^']+)' is not accepted", inner)
    if unknown is not None:
        return f"{option}.init_args: unknown option {unknown.group(1)!r} of {class_path}"
    return f"{option}.class_path: {class_path!r}: {' '.join(inner.split())}"


def condense_parser_error(message: str, option_of: Callable[[str], str] | None = None) -> str:
    """One line for a jsonargparse/argparse error ``message``: ``--option: expected <type>, got '<value>'``.

    ``option_of`` maps a parser key (``model.lr``, ``batch_size``) to the option as typed (default ``--key``).
    """
    option_of = option_of or (lambda key: f"--{key}")
    first, _, rest = message.strip().partition("\n")
    found = re.match(r'Parser key "([^"]+)"(?: element (\d+))?:\s*(.*)', first)
    if found is None:
        return " ".join(message.split())
    key, element, inline = found.groups()
    option = option_of(key) + (f" (item {element})" if element else "")
    body = "\n".join(part for part in (inline, rest) if part.strip())
    nested = _class_problem(option_of(key), body)
    if nested is not None:
        return nested
    given = re.search(r"(?:Given value|Got value): (.*)", body)
    value = given.group(1).strip() if given else None
    subtypes = re.search(r"Subtypes: \[(.*)\]", body)
    if subtypes is not None and value is not None:
        expected = " or ".join(_type_name(t) for t in re.split(r",\s*(?![^\[]*\])", subtypes.group(1)))
        return f"{option}: expected {expected}, got {value!r}"
    single = re.match(r"\s*Expected a (.+?)\. Got value: (.*)", body, re.S)
    if single is not None:
        name = _type_name(single.group(1))
        return f"{option}: expected {_article(name)}{name}, got {single.group(2).strip()!r}"
    return f"{option}: {' '.join(body.split())}"
