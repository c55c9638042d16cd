"""The ``neuroreg`` command: info, demo, train, finetune, evaluate, score, sweep, tune, bench, export.

Only the chosen command's module is imported (``--version`` and ``--help`` import
neither torch nor Lightning). Every command runs under one error guard
(:func:`neuroreg.cli._exit.run_guarded`): a user error is one line on stderr and a
documented exit status; ``--debug`` (anywhere on the line) shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import platform
import sys
from typing import Callable, Iterable, NoReturn, Sequence

import neuroreg
from neuroreg.cli._exit import EXIT_NOT_AVAILABLE, EXIT_STATUSES, EXIT_USAGE, run_guarded
from neuroreg._utils.io import check_output_target
from neuroreg.errors import NotAvailableError

__all__ = ["main", "build_parser", "EXIT_NOT_AVAILABLE"]


def _cmd_info(args: argparse.Namespace) -> int:
    import torch  # local: `neuroreg --version`/`--help` must not load torch

    from neuroreg.brain import bundled_sets  # local: loads torch, timm and the model zoo

    print(f"neuroreg {neuroreg.__version__}")
    print(f"python {platform.python_version()} ({sys.executable})")
    for pkg in ("torch", "torchvision", "timm", "kornia", "torchattacks", "lightning", "numpy", "scipy",
                "sklearn", "pandas", "h5py"):
        try:
            mod = importlib.import_module(pkg)
            print(f"  {pkg:<13} {getattr(mod, '__version__', '?')}")
        except Exception as exc:  # report, never crash the info command
            print(f"  {pkg:<13} unavailable ({type(exc).__name__}: {exc})")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        print(f"device: cuda ({torch.cuda.device_count()}: {names})")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        print("device: mps")
    else:
        print(f"device: cpu ({torch.get_num_threads()} threads)")
    print("bundled data sets:")
    for name, desc in bundled_sets().items():
        print(f"  {name:<17} {desc}")
    print(f"models: {', '.join(neuroreg.list_models()) or '-'}")
    return 0


def _not_available(command: str, what: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(f"neuroreg {command}: not available yet ({what}).", file=sys.stderr)
        return EXIT_NOT_AVAILABLE
    return run


# Subcommand -> (help, module providing `add_arguments(parser)` and `run(args)`).
_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("run the main job end to end on the bundled data, offline", "neuroreg.cli.demo"),
    "train": ("train a model with brain regularizers (LightningCLI; --config configs/*.yaml)", "neuroreg.cli.train"),
    "finetune": ("fine-tune on a new domain and measure forgetting", "neuroreg.cli.finetune"),
    "evaluate": ("scorecard: accuracy, robustness and brain scores", "neuroreg.cli.evaluate"),
    "score": ("brain scores (cRSA, veRSA, CKA) of a model on a neural data set", "neuroreg.cli.score"),
    "sweep": ("score many models x data sets x scorers, resumable, here or on Ray", "neuroreg.cli.sweep"),
    "tune": ("sweep training settings with Ray Tune (--config configs/tune_*.yaml)", "neuroreg.cli.tune"),
    "bench": ("run a benchmark from experiments/ and print ratios", "neuroreg.cli.bench"),
    "export": ("write a model for another tool: export brainscore writes a Brain-Score model plugin",
               "neuroreg.cli.export"),
}

# Commands that parse their own arguments (LightningCLI): everything after the name is handed over
# untouched to the module's `cli_main(argv)` (with `debug=` if it takes it), under the same error guard.
_OWN_PARSER = frozenset({"train", "finetune"})

#: Integer options that must be positive, whichever command declares them.
_POSITIVE_INT_OPTIONS = ("image_size", "batch_size", "max_images", "num_classes")
#: Options naming an output folder (every command's --out and --store is one), checked to be creatable and
#: writable before the work starts: an existing file there is refused.
_OUTPUT_OPTIONS = ("out", "store")
#: Commands parsed with jsonargparse so that they accept ``--config FILE.yaml``.
_CONFIG_COMMANDS = ("demo", "evaluate", "score")


class _OneLineParser(argparse.ArgumentParser):
    """argparse that raises its usage error instead of printing the usage block and exiting: the guard prints it
    as one line with exit status 2 (sub-command parsers are of this class too)."""

    def error(self, message: str) -> NoReturn:
        raise argparse.ArgumentError(None, message)


def _epilog() -> str:
    rows = "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_STATUSES.items())
    return f"exit statuses:\n{rows}\n\n--debug (anywhere on the line) shows the traceback of an error."


def build_parser(only: Iterable[str] | None = None
                 ) -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    """The argument parser and the command handlers.

    ``only``: the commands whose modules are imported and whose options are
    declared (default: all); the others are listed by name and help text only,
    so ``--help`` and ``--version`` stay fast.
    """
    wanted = set(_COMMANDS) if only is None else set(only)
    parser = _OneLineParser(
        prog="neuroreg", description="Brain-constrained vision models: build, train, fine-tune, score.",
        epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"neuroreg {neuroreg.__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {}
    sub.add_parser("info", help="versions, compute device and bundled data sets")
    handlers["info"] = _cmd_info
    for name, (help_text, module_name) in _COMMANDS.items():
        if name not in wanted:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise
            p = sub.add_parser(name, help=f"{help_text} [not available yet]", add_help=True)
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            handlers[name] = _not_available(name, f"{module_name} is not part of this version")
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        handlers[name] = module.run
    return parser, handlers


def _check_device(device: str) -> None:
    import torch  # local: `neuroreg --version`/`--help` must not load torch

    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"--device {device!r} is not a device name (cpu, cuda, cuda:1, mps)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise NotAvailableError(f"--device {device}: CUDA is not available on this machine "
                                    f"(torch {torch.__version__}, torch.cuda.is_available() is False); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise NotAvailableError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise NotAvailableError(f"--device {device}: MPS is not available on this machine; use --device cpu")


def check_common_arguments(args: argparse.Namespace) -> None:
    """Checks every command gets before its work starts: device, positive sizes, writable ``--out``/``--store``."""
    for name in _POSITIVE_INT_OPTIONS:
        value = getattr(args, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer; got {value}")
    device = getattr(args, "device", None)
    if isinstance(device, str) and device:
        _check_device(device)
    for name in _OUTPUT_OPTIONS:
        target = getattr(args, name, None)
        if isinstance(target, (str, os.PathLike)):
            check_output_target(target, kind="dir", name=f"--{name}")


def _command_of(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
        if arg in ("-h", "--help", "--version"):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    # --debug may appear anywhere; LightningCLI would not know it, so it is taken out here.
    debug = "--debug" in argv
    if command in _OWN_PARSER:
        rest = [a for a in argv[argv.index(command) + 1:] if a != "--debug"]

        def own() -> int:
            try:
                module = importlib.import_module(_COMMANDS[command][1])
            except ModuleNotFoundError:
                return _not_available(command, f"{_COMMANDS[command][1]} is not part of this version")(
                    argparse.Namespace())
            accepts_debug = "debug" in inspect.signature(module.cli_main).parameters
            return module.cli_main(rest, debug=debug) if accepts_debug else module.cli_main(rest)
        return run_guarded(command, own, debug=debug)
    argv = [a for a in argv if a != "--debug"]
    parser, handlers = build_parser(only=[command] if command in _COMMANDS else [])
    if command in _CONFIG_COMMANDS:
        # these take --config (jsonargparse); train/finetune have LightningCLI's own
        from neuroreg.cli._config import parse_command  # local: loads jsonargparse (~0.3 s)
        rest = argv[argv.index(command) + 1:]

        def configured() -> int:
            module = importlib.import_module(_COMMANDS[command][1])
            args = parse_command(command, module, rest, _COMMANDS[command][0])
            check_common_arguments(args)
            return module.run(args)
        return run_guarded(command, configured, debug=debug)

    def work() -> int:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        check_common_arguments(args)
        return handlers[args.command](args)
    return run_guarded(command if command in _COMMANDS or command == "info" else "", work, debug=debug)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
