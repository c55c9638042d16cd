"""extract(): bad images, dtypes, seeded noise, and an out= file that is never partial, full or shared."""

import errno
import os
import subprocess
import sys
from collections import namedtuple

import h5py
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import neuroreg._utils.io
import neuroreg.features.extraction
from neuroreg import extract
from neuroreg.errors import NonFiniteError, OutputError, RunLockedError
from neuroreg.models import VOneBlock


class _Counting(nn.Module):
    """conv -> relu; counts forward calls (to prove a check came before any work)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.relu(self.conv(x))


class _Images(Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], 0


@pytest.fixture
def images():
    return torch.rand(10, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".lock")))


def test_dataset_with_nan_image_is_refused_with_its_index(images):
    bad = images.clone()
    bad[7, 1, 2, 3] = float("nan")
    with pytest.raises(NonFiniteError, match="first at stimulus 7"):
        extract(_Counting(), _Images(bad), ["conv"], batch_size=4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("as_dataset", [False, True], ids=["tensor", "dataset"])
def test_other_float_dtypes_are_converted(images, dtype, as_dataset):
    model = _Counting()
    x = images.to(dtype)
    got = extract(model, _Images(x) if as_dataset else x, ["conv"], batch_size=4)["conv"]
    # reference: the same (rounded) images as float32 through the plain module
    with torch.no_grad():
        want = model.conv(x.float())
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_vone_features_repeat_with_the_same_seed(images):
    block = VOneBlock(image_size=16, visual_degrees=2, simple_channels=4, complex_channels=4, ksize=5, stride=2,
                      noise_mode="neuronal", seed=0)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = extract(nn.Sequential(block), images, ["0"], seed=5)["0"]
    after = torch.rand(3)
    b = extract(nn.Sequential(block), images, ["0"], seed=5)["0"]
    c = extract(nn.Sequential(block), images, ["0"], seed=6)["0"]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # the noise is really on
    assert torch.equal(before, after)  # the caller's random stream is untouched


def test_out_that_is_a_folder_fails_before_any_work(tmp_path, images):
    model = _Counting()
    with pytest.raises(OutputError, match=f"out='{tmp_path}' is a folder"):
        extract(model, images, ["conv"], out=tmp_path)
    assert model.calls == 0


def test_out_below_a_file_fails_naming_the_target(tmp_path, images):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    target = blocker / "feats.h5"
    model = _Counting()
    with pytest.raises(OutputError, match="feats.h5.*cannot be created.*is a file"):
        extract(model, images, ["conv"], out=target)
    assert model.calls == 0


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_out_fails_before_any_work(tmp_path, images):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    model = _Counting()
    try:
        with pytest.raises(OutputError, match="feats.h5.*not writable"):
            extract(model, images, ["conv"], out=folder / "feats.h5")
    finally:
        folder.chmod(0o700)
    assert model.calls == 0


def test_too_little_free_space_stops_after_the_first_batch(tmp_path, images, monkeypatch):
    usage = namedtuple("usage", "total used free")  # 10 x 4 x 16 x 16 float32 = 40 KB, + 5 % margin
    monkeypatch.setattr(neuroreg._utils.io.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    target = tmp_path / "feats.h5"
    model = _Counting()
    with pytest.raises(OutputError, match="not enough free space for 10 stimuli x 1 layers.*needs about 42.0 KB"):
        extract(model, images, ["conv"], out=target, batch_size=4)
    assert model.calls == 1
    assert not target.exists() and _leftovers(tmp_path) == []


def test_disk_full_while_writing_leaves_no_file(tmp_path, images, monkeypatch):
    real_write, calls = neuroreg.features.extraction._write, []

    def failing(target, start, act):
        calls.append(start)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(target, start, act)

    monkeypatch.setattr(neuroreg.features.extraction, "_write", failing)
    target = tmp_path / "feats.h5"
    target.write_bytes(b"previous result")
    with pytest.raises(OutputError, match="feats.h5: the disk is full"):
        extract(_Counting(), images, ["conv"], out=target, batch_size=4)
    assert target.read_bytes() == b"previous result"
    assert _leftovers(tmp_path) == []


def test_second_writer_of_the_same_file_is_refused(tmp_path, images):
    target = tmp_path / "feats.h5"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        neuroreg._utils.io.PathLock(tmp_path / "feats.h5.lock").acquire()  # written by this process ...
        lock = tmp_path / "feats.h5.lock"
        lock.write_text(lock.read_text().replace(f'"pid": {os.getpid()}', f'"pid": {holder.pid}'))  # ... now held
        with pytest.raises(RunLockedError, match=f"in use by process {holder.pid}"):
            extract(_Counting(), images, ["conv"], out=target)
        assert not target.exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and the next writer takes it over, then releases it
    feats = extract(_Counting(), images, ["conv"], out=target)
    assert feats["conv"].shape == (10, 4, 16, 16)
    with h5py.File(target) as f:
        assert f["features"]["conv"].shape == (10, 4, 16, 16)
    assert _leftovers(tmp_path) == []
