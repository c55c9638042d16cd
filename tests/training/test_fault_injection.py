"""Real `neuroreg train` processes, killed (SIGKILL) or starved of disk mid-run, resume to the uninterrupted result."""

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neuroreg.cli._exit import EXIT_OUTPUT

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "train_tiny_cornet_z.yaml")
MAX_STEPS, EVERY = 8, 3  # 4 batches per epoch: resume points fall mid-epoch (3, 6) and on an epoch end (4)
ARGS = ["--config", TINY, "--trainer.max_steps", str(MAX_STEPS), "--checkpoint.every_n_train_steps", str(EVERY),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.num_sanity_val_steps", "0", "--trainer.logger", "false",
        "--data.init_args.n_train", "64", "--data.init_args.n_val", "16",
        "--data.init_args.neural_batch_size", "8", "--data.init_args.batch_size", "16", "--scorecard.enabled", "false"]


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _cmd(root, *extra):
    return [sys.executable, "-m", "neuroreg.cli.main", "train", *ARGS, "--trainer.default_root_dir", str(root), *extra]


def _step(path):
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def _weights(root):
    return torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    proc = subprocess.run(_cmd(root), env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _step(root / "checkpoints" / "last.ckpt") == MAX_STEPS  # the final state is always saved
    return _weights(root)


def test_sigkill_at_a_random_step_then_resume_matches_uninterrupted_run(tmp_path, uninterrupted):
    seed = random.randrange(1 << 30)
    kill_after = random.Random(seed).randint(1, MAX_STEPS - 1)
    root = tmp_path / "run"
    last = root / "checkpoints" / "last.ckpt"
    reporter = ["--trainer.callbacks+=step_reporter.StepReporter"]
    env = {**_env(), "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), _env()["PYTHONPATH"]])}
    proc = subprocess.Popen(_cmd(root, *reporter), env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        for line in proc.stdout:
            if line.strip() == f"finished step {kill_after}":
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, (seed, kill_after, proc.returncode)
    assert (root / ".neuroreg-run.lock").is_file()  # left behind by the killed process: must not block the resume
    # Resume points: every EVERY steps and each validation (epoch end, after step 4). The reporter runs before
    # the checkpoint callback, so the kill usually lands before step `kill_after` is saved, rarely just after.
    points = (EVERY, 4, 2 * EVERY)
    allowed = {max([p for p in points if p < kill_after], default=0)} | ({kill_after} & set(points))
    saved = _step(last) if last.exists() else 0  # a complete, loadable checkpoint
    assert saved in allowed, (seed, kill_after, saved)
    if saved == 0:
        refused = subprocess.run(_cmd(root, "--ckpt_path", "last"), env=_env(), capture_output=True, text=True,
                                 timeout=300)
        assert refused.returncode == 4 and "no checkpoint to resume" in refused.stderr, refused.stderr[-2000:]
        resume = ["--resume_if_possible", "true"]
        note = "starting a fresh run"
    else:
        resume = ["--ckpt_path", "last"]
        note = f"resuming from {last} (step {saved})"
    resumed = subprocess.run(_cmd(root, *resume), env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert note in resumed.stderr, (seed, kill_after, resumed.stderr[-2000:])
    assert _step(last) == MAX_STEPS
    _assert_same_weights(uninterrupted, _weights(root))
    assert not (root / ".neuroreg-run.lock").exists()


_DISK_FULL_AT_SAVE = """
import errno, sys, torch
real_save, calls = torch.save, [0]
def failing_save(obj, f, *a, **k):
    calls[0] += 1
    if calls[0] == {n}:
        f.write(b"PK" + bytes(4096))  # part of the file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")
    return real_save(obj, f, *a, **k)
torch.save = failing_save
from neuroreg.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_disk_full_keeps_previous_checkpoint_and_resume_matches(tmp_path, uninterrupted):
    root = tmp_path / "run"
    last = root / "checkpoints" / "last.ckpt"
    cmd = _cmd(root)
    failing = [sys.executable, "-c", _DISK_FULL_AT_SAVE.replace("{n}", "2"), *cmd[3:]]
    proc = subprocess.run(failing, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == EXIT_OUTPUT, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("neuroreg train: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "cannot write checkpoint" in errors[0] and "the disk is full" in errors[0]
    assert "needs about" in errors[0] and "is intact" in errors[0]
    assert 0 < _step(last) < MAX_STEPS  # the previous checkpoint loads
    leftovers = [p.name for p in last.parent.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    for ckpt in last.parent.glob("*.ckpt"):
        _step(ckpt)  # nothing truncated under a checkpoint name
    resumed = subprocess.run(_cmd(root, "--ckpt_path", "last"), env=_env(), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same_weights(uninterrupted, _weights(root))
