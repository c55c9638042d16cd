"""The ``neuroreg`` command: info, demo, train, finetune, evaluate, score, sweep, tune, bench."""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
from typing import Callable, Sequence

__all__ = ["main", "build_parser"]

EXIT_NOT_AVAILABLE = 3


def _cmd_info(args: argparse.Namespace) -> int:
    import torch

    import neuroreg
    from neuroreg.brain import bundled_sets

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
    "demo": ("run the main job end to end on the bundled data, offline", "neuroreg.demo"),
    "train": ("train a model with brain regularizers (LightningCLI; --config configs/*.yaml)", "neuroreg.training.cli"),
    "finetune": ("fine-tune on a new domain and measure forgetting", "neuroreg.training.finetune_cli"),
    "evaluate": ("scorecard: accuracy, robustness and brain scores", "neuroreg.commands.evaluate"),
    "score": ("brain scores (cRSA, veRSA, CKA) of a model on a neural data set", "neuroreg.commands.score"),
    "sweep": ("score many models x data sets x scorers, resumable, here or on Ray", "neuroreg.commands.sweep"),
    "tune": ("sweep training settings with Ray Tune (--config configs/tune_*.yaml)", "neuroreg.commands.tune"),
    "bench": ("run a benchmark from experiments/ and print ratios", "neuroreg.bench"),
}


#: Commands parsed with jsonargparse so that they accept ``--config FILE.yaml``.
_CONFIG_COMMANDS = ("demo", "evaluate", "score")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    import neuroreg

    parser = argparse.ArgumentParser(
        prog="neuroreg", description="Brain-constrained vision models: build, train, fine-tune, score.")
    parser.add_argument("--version", action="version", version=f"neuroreg {neuroreg.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {}
    p = sub.add_parser("info", help="versions, compute device and bundled data sets")
    handlers["info"] = _cmd_info
    for name, (help_text, module_name) in _COMMANDS.items():
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # LightningCLI parses its own arguments: hand everything after `train` over untouched.
    if argv and argv[0] == "train":
        try:
            module = importlib.import_module("neuroreg.training.cli")
        except ModuleNotFoundError:
            return _not_available("train", "neuroreg.training.cli is not part of this version")(argparse.Namespace())
        return int(module.cli_main(argv[1:]) or 0)
    if argv and argv[0] in _CONFIG_COMMANDS:
        # every command takes --config (jsonargparse); `train` has LightningCLI's own
        from neuroreg.commands._config import parse_command
        try:
            module = importlib.import_module(_COMMANDS[argv[0]][1])
        except ModuleNotFoundError:
            module = None
        if module is not None:
            return int(module.run(parse_command(argv[0], module, argv[1:], _COMMANDS[argv[0]][0])) or 0)
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(handlers[args.command](args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
