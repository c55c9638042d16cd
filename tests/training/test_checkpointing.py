"""Resume points, atomic checkpoint writes, run-folder locks and --ckpt_path resolution (fast, in-process)."""

import errno
import json
import os
import socket
import subprocess
import sys
from collections import namedtuple

import lightning as L
import pytest
import torch

import neuroreg._utils.io
from conftest import make_tiny_net
from neuroreg._utils.io import PathLock
from neuroreg.alignment import CKALoss
from neuroreg.errors import CheckpointError, OutputError, RunLockedError
from neuroreg.training import BrainRegularizedModule
from neuroreg.data import GratingsDataModule
from neuroreg.training.checkpointing import AtomicCheckpointIO, ResumableCheckpoint, resolve_resume_path


def _fit(root, brain, max_steps, every, callbacks=()):
    L.seed_everything(0)
    module = BrainRegularizedModule(make_tiny_net(seed=1), [CKALoss("IT", brain, weight=0.5)], lr=0.05)
    dm = GratingsDataModule(n_train=64, n_val=16, neural=brain, neural_batch_size=8, batch_size=8, image_size=16,
                            seed=3)
    ckpt = ResumableCheckpoint(dirpath=str(root / "checkpoints"), monitor="val/acc1", mode="max", save_last=True,
                               every_n_train_steps=every, filename="best-step{step}", auto_insert_metric_name=False)
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, default_root_dir=str(root), logger=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[ckpt, *callbacks], plugins=[AtomicCheckpointIO()])
    trainer.fit(module, dm)
    return trainer


class _LastSteps(L.Callback):
    """Records {step: global step stored in last.ckpt} after each training batch (before this step's save)."""

    def __init__(self, path):
        self.path, self.seen = path, {}

    def on_train_batch_end(self, trainer, *args):
        if self.path.is_file():
            self.seen[trainer.global_step] = torch.load(self.path, weights_only=True)["global_step"]


def test_last_checkpoint_every_n_steps_before_any_validation_and_at_the_end(tmp_path, brain):
    # 8 batches per epoch: steps 3 and 6 come before the first validation; 11 ends mid-epoch.
    last = tmp_path / "checkpoints" / "last.ckpt"
    spy = _LastSteps(last)
    _fit(tmp_path, brain, max_steps=11, every=3, callbacks=[spy])
    assert min(spy.seen) == 4 and spy.seen[4] == 3 and spy.seen[7] == 6  # Lightning alone: nothing before step 8
    assert torch.load(last, weights_only=True)["global_step"] == 11


def _usage(free):
    return namedtuple("usage", "total used free")(10**12, 10**12 - free, free)


def test_atomic_write_refuses_when_space_is_short_and_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(10)}, path)
    before = path.read_bytes()
    monkeypatch.setattr(neuroreg._utils.io.shutil, "disk_usage", lambda p: _usage(1000))
    with pytest.raises(OutputError, match=r"last.ckpt: not enough free space: needs about 4\.3 MB, the disk has "
                                          r"1000 B free; the previous last.ckpt is intact"):
        AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(1 << 20)}, path)  # (4 MB + 64 KB) x 1.05
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["last.ckpt"]


def test_failed_write_removes_the_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "best.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, path)
    before = path.read_bytes()

    def full_disk(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OutputError, match="best.ckpt: the disk is full .* the previous best.ckpt is intact"):
        AtomicCheckpointIO().save_checkpoint({"step": 2}, path)
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["best.ckpt"]


def test_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    lock_path = tmp_path / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_path.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "t"}))
        with pytest.raises(RunLockedError, match=f"in use by process {holder.pid} on host"):
            PathLock(lock_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with PathLock(lock_path, purpose="test") as lock:  # the holder is dead: stale, taken over
        assert json.loads(lock_path.read_text())["pid"] == os.getpid()
    assert not lock_path.exists()
    lock_path.write_text(json.dumps({"pid": 1, "host": "another-host", "started": "t"}))
    with pytest.raises(RunLockedError, match="another-host"):  # liveness unknown on another host: refuse
        PathLock(lock_path).acquire()


def test_resume_path_resolution(tmp_path):
    ckpt_dir = tmp_path / "checkpoints"
    with pytest.raises(CheckpointError, match="--ckpt_path last: there is no checkpoint to resume"):
        resolve_resume_path("last", ckpt_dir)
    assert resolve_resume_path(None, ckpt_dir, resume_if_possible=True) == (
        None, f"no checkpoint to resume in {ckpt_dir}: starting a fresh run")
    ckpt_dir.mkdir()
    model = torch.nn.Linear(2, 2)
    torch.save({"state_dict": model.state_dict(), "global_step": 7}, ckpt_dir / "last.ckpt")
    with pytest.raises(RunLockedError, match="already holds last.ckpt of an earlier run"):
        resolve_resume_path(None, ckpt_dir, model)
    expected = (str(ckpt_dir / "last.ckpt"), f"resuming from {ckpt_dir / 'last.ckpt'} (step 7)")
    assert resolve_resume_path("last", ckpt_dir, model) == expected
    assert resolve_resume_path(None, ckpt_dir, model, resume_if_possible=True) == expected
    with pytest.raises(CheckpointError, match=r"checkpoint of another model: 1 shape mismatches \(first: weight"):
        resolve_resume_path("last", ckpt_dir, torch.nn.Linear(3, 2))
