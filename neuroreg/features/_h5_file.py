"""The HDF5 file that :func:`neuroreg.features.extract` streams features into: written whole or not at all."""

from __future__ import annotations

import contextlib
import os
import re
from typing import NoReturn

import h5py

from neuroreg._utils.io import atomic_path, is_disk_full
from neuroreg.errors import OutputError


class FeaturesFile:
    """Context: an HDF5 file in a temp path renamed onto ``out`` on success, or None.

    A file that cannot be completed (an error while writing, or its final flush
    failing on a full disk) is closed with its unwritten buffers discarded, then
    removed. HDF5 cannot recover from a failed close: its objects are left half
    freed and the next release of any of them (the datasets still referenced by
    the exception's frames) crashes the process (SIGSEGV). So nothing is closed
    while writes can fail: the file is flushed first, and on any error its
    descriptor is pointed at the null device before closing.
    """

    def __init__(self, out) -> None:
        self.out = out
        self._ctx = None
        self.file = None

    def __enter__(self):
        if self.out is None:
            return None
        self._ctx = atomic_path(self.out)
        tmp = self._ctx.__enter__()
        try:
            self.file = h5py.File(tmp, "w")
            self.file.create_group("features")
        except Exception as exc:
            self._fail(exc)
        return self.file

    def __exit__(self, exc_type, exc, tb):
        if self.file is not None:
            if exc is None:
                try:
                    self.file.flush()          # the last buffered chunks reach the disk (or fail) here ...
                    self.file.close()          # ... so the close has nothing left to write
                except Exception as write_exc:
                    self._fail(write_exc)
            else:
                _discard(self.file)
        if self._ctx is not None:
            return self._ctx.__exit__(exc_type, exc, tb)
        return False

    def _fail(self, exc: Exception) -> NoReturn:
        """Discard the file, remove the temporary path and raise ``OutputError`` naming ``out``."""
        if self.file is not None:
            _discard(self.file)
        error = exc if isinstance(exc, OutputError) or is_disk_full(exc) else OutputError(
            f"{self.out}: cannot write the features file: {write_failure(exc)}")
        if error is not exc:
            error.__cause__ = exc
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            ctx.__exit__(type(error), error, error.__traceback__)  # removes the temporary file; a full disk
            # comes back as OutputError naming out
        raise error


def _discard(file: h5py.File) -> None:
    """Close an HDF5 file that is being thrown away without writing its buffers.

    The file's descriptor is pointed at the null device first, so the flush that
    closing implies cannot fail (a failed close leaves HDF5's objects half freed,
    see :class:`FeaturesFile`); the temporary file itself is removed by the caller.
    """
    if not file.id.valid:
        return
    with contextlib.suppress(Exception):
        fd = file.id.get_vfd_handle()
        if isinstance(fd, int) and os.name == "posix":
            null = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
    with contextlib.suppress(Exception):
        file.close()


def write_failure(exc: BaseException) -> str:
    """The reason of an HDF5 write error (``'File too large'``), without HDF5's buffer addresses and temp name."""
    text = " ".join(str(exc).split())
    found = re.search(r"error message = '([^']*)'", text)
    return found.group(1) if found else text[:300]
