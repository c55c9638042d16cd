"""extract(out=...) and `neuroreg sweep` on a disk that fills up: an OutputError and its exit status, never a crash.

Each case runs in a fresh process, since the fault was a segmentation fault after
the error had been reported: HDF5 had failed to close the half-written file and
crashed when the datasets referenced by the exception were released. The small
disk is a real tmpfs where this machine lets the tests mount one (root);
otherwise, and in addition, a file size limit (RLIMIT_FSIZE) makes HDF5's
writes fail the same way at the same point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(os.name != "posix", reason="tmpfs and RLIMIT_FSIZE are POSIX")

# argv: limit ("fsize" or "none"), free space reported ("short" or "plenty"), out
_EXTRACT = """
import resource, signal, sys
from collections import namedtuple
import torch
from torch import nn
import neuroreg._utils.io
from neuroreg import extract
from neuroreg.errors import OutputError

limit, free, out = sys.argv[1:4]
if limit == "fsize":   # no file may grow past 2 MB: HDF5's writes fail with EFBIG as on a full disk
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))
# "short": the free-space check stops the run (2 MB free, as on the small disk); "plenty": the check
# passes, so HDF5's write itself fails
usage = namedtuple("usage", "total used free")
reported = (2 << 20) if free == "short" else (1 << 40)
neuroreg._utils.io.shutil.disk_usage = lambda p: usage(1 << 41, 1 << 40, reported)
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1))     # 64 KB of features per image, 6.4 MB in all
try:
    extract(model, torch.rand(100, 3, 16, 16), ["0"], out=out, batch_size=8, progress=False)
except OutputError as exc:
    print(f"OutputError: {exc}", file=sys.stderr)
    sys.exit(5)
"""


def _env() -> dict[str, str]:
    path = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def _run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _small_disk(folder: Path, size: str) -> bool:
    """Mount a tmpfs of ``size`` on ``folder``; False where this machine does not allow it."""
    if os.geteuid() != 0:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """(folder, limit): a 3 MB tmpfs where one can be mounted, else a folder with a 2 MB file size limit."""
    folder = tmp_path / "small"
    if _small_disk(folder, "3m"):
        yield folder, "none"
        subprocess.run(["umount", str(folder)], check=True)
    else:
        folder.mkdir()
        yield folder, "fsize"


def _signal_name(code: int) -> str:
    return signal.Signals(-code).name if code < 0 else str(code)


@pytest.mark.parametrize("free", ["short", "plenty"], ids=["free_space_check", "write_fails"])
def test_extract_on_a_full_disk_exits_with_the_error_not_a_signal(small_disk, free):
    folder, limit = small_disk
    out = folder / "f.h5"
    done = _run([sys.executable, "-c", _EXTRACT, limit, free, str(out)])
    assert done.returncode == 5, (_signal_name(done.returncode), done.stderr[-2000:])
    message = done.stderr.strip().splitlines()[-1]
    if free == "short":
        assert message.startswith(f"OutputError: {out}: not enough free space for 100 stimuli"), message
    elif limit == "fsize":
        assert message == f"OutputError: {out}: cannot write the features file: File too large"
    else:
        assert message.startswith(f"OutputError: {out}: the disk is full"), message
    assert sorted(p.name for p in folder.iterdir()) == []   # no partial file, no temporary file, no lock


# argv: limit, free (as above), config, store
_SWEEP = """
import resource, signal, sys
from collections import namedtuple
import neuroreg._utils.io
from neuroreg.cli.main import main

limit, free, config, store = sys.argv[1:5]
if limit == "fsize":
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))
usage = namedtuple("usage", "total used free")
reported = (2 << 20) if free == "short" else (1 << 40)
neuroreg._utils.io.shutil.disk_usage = lambda p: usage(1 << 41, 1 << 40, reported)
sys.exit(main(["sweep", "--config", config, "--store", store]))
"""


def test_sweep_on_a_full_disk_exits_with_the_output_status_not_a_signal(small_disk, tmp_path):
    import yaml

    folder, limit = small_disk
    config = tmp_path / "sweep.yaml"   # cornet_z's four areas on 92 images at 64 px: about 8 MB of features
    config.write_text(yaml.safe_dump({"models": ["cornet_z"], "brain": ["kriegeskorte92"], "scorers": ["crsa"],
                                      "options": {"image_size": 64}}))
    store = folder / "st"
    done = _run([sys.executable, "-c", _SWEEP, limit, "short", str(config), str(store)])
    assert done.returncode == 5, (_signal_name(done.returncode), done.stderr[-2000:])
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("neuroreg sweep: error: OutputError: ") and "not enough free space" in line, line
    (job,) = (store / "jobs").iterdir()
    status = json.loads((job / "status.json").read_text())
    assert status["state"] == "todo" and "OutputError" in status["error"]   # run again once there is room
    assert not (job / ".lock").exists()
    assert [p.name for p in (store / "features").iterdir()] == []
