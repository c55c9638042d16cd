"""Exit statuses of the ``neuroreg`` command and the one place that turns exceptions into them.

Every command runs through :func:`run_guarded`: a user error (bad argument,
unreadable input, unwritable output, busy run folder, missing feature) becomes
one line on stderr and a documented exit status; anything else is a bug and
keeps its traceback. ``--debug`` keeps the traceback for every error.

=====  ==========================================================================
 0     success
 1     internal error (a bug): the traceback is printed
 2     usage error: bad option, value, configuration, model, layer or data shape
 3     not available: a device, optional dependency or command this install lacks
 4     input error: a file or folder is missing, unreadable, corrupt or foreign
 5     output error: a file or folder is in the target's way, it is unwritable, or the disk is full
 6     busy: the run folder or output file is held by another live process, or holds an earlier run
 130   interrupted (Ctrl-C)
=====  ==========================================================================
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from neuroreg._utils.io import is_disk_full
from neuroreg.training.config_errors import condense_parser_error
from neuroreg.errors import (CheckpointError, DataFormatError, NeuroregError, NotAvailableError, OutputError,
                             RunLockedError)

__all__ = ["EXIT_OK", "EXIT_BUG", "EXIT_USAGE", "EXIT_NOT_AVAILABLE", "EXIT_INPUT", "EXIT_OUTPUT", "EXIT_BUSY",
           "EXIT_INTERRUPTED", "EXIT_STATUSES", "exit_status", "run_guarded"]

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_NOT_AVAILABLE = 3
EXIT_INPUT = 4
EXIT_OUTPUT = 5
EXIT_BUSY = 6
EXIT_INTERRUPTED = 130

#: status -> meaning (the table in docs/reliability.md and the README).
EXIT_STATUSES = {
    EXIT_OK: "success",
    EXIT_BUG: "internal error (a bug): the traceback is printed",
    EXIT_USAGE: "usage error: bad option, value, configuration, model, layer or data shape",
    EXIT_NOT_AVAILABLE: "not available: a device, optional dependency or command this install lacks",
    EXIT_INPUT: "input error: a file or folder is missing, unreadable, corrupt or foreign",
    EXIT_OUTPUT: "output error: a file or folder is in the target's way, it is unwritable, or the disk is full",
    EXIT_BUSY: "busy: the run folder or output file is held by another live process, or holds an earlier run",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


def _named(exc: BaseException, *names: str) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def exit_status(exc: BaseException) -> int | None:
    """The documented exit status of a user error, or None for a bug (which keeps its traceback)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, RunLockedError):
        return EXIT_BUSY
    if isinstance(exc, OutputError) or (isinstance(exc, Exception) and is_disk_full(exc)):
        return EXIT_OUTPUT
    if isinstance(exc, NotAvailableError):
        return EXIT_NOT_AVAILABLE
    if isinstance(exc, (CheckpointError, DataFormatError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
                        PermissionError)):
        return EXIT_INPUT
    if isinstance(exc, (NeuroregError, ValueError, argparse.ArgumentError)):
        return EXIT_USAGE
    # Lightning's configuration errors (negative max_steps, unknown accelerator, ...), without importing it.
    if _named(exc, "MisconfigurationException"):
        return EXIT_USAGE
    return None


def _one_line(exc: BaseException) -> str:
    text = condense_parser_error(str(exc)) if isinstance(exc, argparse.ArgumentError) else " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_guarded(command: str, fn: Callable[[], int | None], *, debug: bool = False) -> int:
    """Run ``fn``; map a user error to one stderr line and its exit status (see the module table).

    A bug (an exception :func:`exit_status` does not know) is re-raised with its
    traceback; with ``debug=True`` every error is re-raised.
    """
    try:
        return int(fn() or 0)
    except (Exception, KeyboardInterrupt) as exc:
        status = exit_status(exc)
        if debug or status is None:
            raise
        who = f"neuroreg {command}" if command else "neuroreg"
        if status == EXIT_INTERRUPTED:
            print(f"{who}: interrupted", file=sys.stderr)
        else:
            print(f"{who}: error: {_one_line(exc)}  (exit status {status}; --debug shows the traceback)",
                  file=sys.stderr)
        return status
