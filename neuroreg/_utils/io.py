"""Safe file writing: atomic replacement, output checks before work starts, free space, and run locks.

- :func:`atomic_path` writes to a temporary file beside the target and renames it
  on success, so a crash or a full disk never leaves a half-written file under
  the target's name and never harms the previous version.
- :func:`check_output_target` refuses a target that is a folder (or a file where
  a folder is wanted) or that cannot be written, naming the target itself.
- :func:`ensure_free_space` stops before writing when the disk cannot hold the result.
- :class:`PathLock` is an exclusive lock file holding the owner's PID and host, so
  two processes cannot write the same run folder or output file at once.
- :func:`reading` turns a format library's error on a corrupt or truncated file
  into ``DataFormatError: <path>: <what is wrong>``; :func:`read_text` reads text
  files in UTF-8 (with or without a byte-order mark) or Latin-1.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import json
import os
import shutil
import socket
import struct
import tempfile
import time
import warnings
import zipfile
from pathlib import Path
from typing import Iterator, Literal

from neuroreg.errors import DataFormatError, NeuroregError, OutputError, RunLockedError

__all__ = ["atomic_path", "atomic_write_text", "check_output_target", "free_bytes", "ensure_free_space",
           "format_bytes", "PathLock", "holder_gone", "is_disk_full", "reading", "read_text"]

# What numpy, h5py, scipy.io, zipfile and PIL raise on a corrupt, truncated or foreign file.
_FORMAT_ERRORS = (OSError, ValueError, EOFError, IndexError, KeyError, zipfile.BadZipFile, struct.error)


@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str = "file") -> Iterator[None]:
    """Re-raise a format library's error inside the block as ``DataFormatError: <path>: cannot read <what>: ...``.

    Errors neuroreg raises itself, and a missing file or a permission error (whose
    messages already name the path), pass through unchanged.
    """
    try:
        yield
    except (NeuroregError, FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - filtered just below
        if not isinstance(exc, _FORMAT_ERRORS) and type(exc).__name__ not in ("MatReadError", "UnpicklingError"):
            raise
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise DataFormatError(f"{path}: cannot read {what}: it is corrupt, truncated or not this format "
                              f"({type(exc).__name__}: {detail})") from exc


def read_text(path: str | os.PathLike) -> str:
    """A text file's content: UTF-8 (a byte-order mark is dropped), UTF-16 or UTF-32 with a byte-order mark
    (what spreadsheet programs save as "Unicode text"), else Latin-1 with a warning naming it."""
    data = Path(path).read_bytes()
    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):  # UTF-32-LE's mark starts with UTF-16-LE's: test it first
            with reading(path, f"the text ({codec.upper()} by its byte-order mark)"):
                return data.decode(codec)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        warnings.warn(f"{path} is not UTF-8 (byte {exc.start}: {data[exc.start:exc.start + 1]!r}); "
                      f"read it as Latin-1 (ISO-8859-1)", stacklevel=2)
        return data.decode("latin-1")


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KB'`` (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def free_bytes(path: str | os.PathLike) -> int:
    """Free bytes on the file system that holds ``path`` (or would hold it, for a path not created yet)."""
    return shutil.disk_usage(_existing_ancestor(Path(path))).free


def is_disk_full(exc: BaseException) -> bool:
    """Whether an exception (or one it was raised from) is 'no space left' / 'quota exceeded'."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(cur):  # libraries (HDF5, zip writers) that lose the errno
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def ensure_free_space(path: str | os.PathLike, need: int, what: str, *, margin: float = 0.05) -> None:
    """Raise :class:`OutputError` unless the disk of ``path`` has ``need`` bytes (+ ``margin``) free."""
    free = free_bytes(path)
    need_total = int(need * (1 + margin))
    if free < need_total:
        raise OutputError(f"{path}: not enough free space for {what}: needs about {format_bytes(need_total)}, "
                          f"the disk has {format_bytes(free)} free")


def check_output_target(path: str | os.PathLike, *, kind: Literal["file", "dir", "any"] = "file",
                        name: str = "out") -> Path:
    """Check before any work that ``path`` can be written as a ``kind``; raise :class:`OutputError` naming it.

    A file target must not be an existing folder; a folder target must not be an
    existing file (``kind="any"`` accepts either). The target (if it exists) or
    its nearest existing parent folder must be writable.
    """
    target = Path(path)
    if kind == "file" and target.is_dir():
        raise OutputError(f"{name}={str(target)!r} is a folder; give a file path (e.g. {target / 'features.h5'})")
    if kind == "dir" and target.exists() and not target.is_dir():
        raise OutputError(f"{name}={str(target)!r} is an existing file; give a folder")
    if kind == "file" and target.name == "":
        raise OutputError(f"{name}={str(target)!r} does not name a file")
    anchor = target if target.exists() else _existing_ancestor(target)
    if not anchor.is_dir() and anchor != target:
        raise OutputError(f"{name}={str(target)!r} cannot be created: {anchor} is a file, not a folder")
    folder = anchor if anchor.is_dir() else anchor.parent
    if not os.access(folder, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise OutputError(f"{name}={str(target)!r} is not writable (no write permission in {folder})")
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched,
    so a crash never leaves a half-written result behind. A full disk is reported
    as :class:`OutputError` naming ``path`` (not the temporary file).
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write here: {exc.strerror or exc}") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:  # the bytes are on disk before the name points at them
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if isinstance(exc, Exception) and is_disk_full(exc) and not isinstance(exc, OutputError):
            raise OutputError(f"{target}: the disk is full ({format_bytes(free_bytes(target.parent))} free); "
                              f"nothing was written under this name") from exc
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8). Returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def holder_gone(info: dict | None) -> bool:
    """Whether the process a lock or status record names (``{"pid", "host"}``) is known to be gone.

    Only a process on this host can be checked: one on another host counts as alive.
    """
    if not info:
        return False
    pid = info.get("pid")
    return (info.get("host") == socket.gethostname() and isinstance(pid, int) and not isinstance(pid, bool)
            and not _pid_alive(pid))


class PathLock:
    """Exclusive lock file ``path`` holding ``{"pid", "host", "started", "purpose"}`` as JSON.

    ``acquire()`` creates the file atomically (``O_CREAT | O_EXCL``). If it exists
    and names a process on this host that is no longer running, the stale lock is
    taken over; otherwise :class:`RunLockedError` names the holder. ``release()``
    removes the file only if this process still holds it. Use as a context manager.
    """

    def __init__(self, path: str | os.PathLike, purpose: str = "") -> None:
        self.path = Path(path)
        self.purpose = purpose
        self._held = False

    def _record(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "purpose": self.purpose}

    def holder(self) -> dict | None:
        """The lock file's content, or None if there is no lock file (``{}`` if unreadable)."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "PathLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = self.holder()
                if info is None:
                    continue  # released between our two calls
                if holder_gone(info):
                    self.path.unlink(missing_ok=True)
                    continue
                who = (f"process {info.get('pid')} on host {info.get('host')} (since {info.get('started')})"
                       if info else "an unknown process (the lock file is unreadable)")
                what = f" for {info['purpose']}" if info and info.get("purpose") else ""
                raise RunLockedError(f"{self.path.parent} is in use by {who}{what}; wait for it to finish, use "
                                     f"another folder, or delete {self.path} if that process is gone")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._record(), f)
            self._held = True
            return self
        raise RunLockedError(f"could not take the lock {self.path} (it keeps changing hands)")

    def release(self) -> None:
        if not self._held:
            return
        info = self.holder()
        if info and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)
        self._held = False

    def __enter__(self) -> "PathLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
