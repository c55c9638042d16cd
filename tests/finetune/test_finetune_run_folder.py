"""`neuroreg finetune` keeps a run folder to one run, exactly as `neuroreg train` does (docs/reliability.md).

A first 2-step run is made once; each test copies its folder. Every refused call must leave the folder as it
was: the same ``last.ckpt`` and ``splits.csv``, no lock file left behind.
"""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import lightning  # noqa: F401 - imported before any capsys test, so its log handler keeps a live stream
import pytest
import torch

from neuroreg.cli._exit import EXIT_BUSY, EXIT_INPUT, EXIT_OK, EXIT_OUTPUT
from neuroreg._utils.io import PathLock
from neuroreg.cli.main import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = str(CONFIGS / "finetune_tiny.yaml")
FAST = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.num_sanity_val_steps", "0", "--trainer.logger", "false", "--data.init_args.n_images", "48",
        "--data.init_args.image_size", "32", "--data.init_args.batch_size", "8", "--forgetting.enabled", "false",
        "--scorecard.enabled", "false"]


def finetune(root, *args):
    return main(["finetune", "--config", TINY, "--trainer.default_root_dir", str(root), *FAST, *args])


def one_error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("neuroreg finetune: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def step_of(path):
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


def snapshot(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("first") / "run"
    assert finetune(root, "--trainer.max_steps", "2") == EXIT_OK
    assert step_of(root / "checkpoints" / "last.ckpt") == 2 and (root / "splits.csv").is_file()
    assert not (root / ".neuroreg-run.lock").exists()
    return root


@pytest.fixture
def used_folder(first_run, tmp_path):
    root = tmp_path / "run"
    shutil.copytree(first_run, root)
    return root


def test_a_fresh_run_into_a_used_folder_is_refused_and_changes_nothing(used_folder, capsys):
    before = snapshot(used_folder)
    assert finetune(used_folder, "--trainer.max_steps", "4") == EXIT_BUSY
    line = one_error_line(capsys)
    assert "already holds last.ckpt of an earlier run" in line and "--ckpt_path last" in line
    assert snapshot(used_folder) == before


@pytest.mark.parametrize("resume", [["--resume_if_possible", "true"], ["--ckpt_path", "last"]])
def test_resume_continues_from_last_ckpt(used_folder, capsys, resume):
    splits = (used_folder / "splits.csv").read_bytes()
    assert finetune(used_folder, "--trainer.max_steps", "3", *resume) == EXIT_OK
    assert "neuroreg finetune: resuming from" in capsys.readouterr().err
    assert step_of(used_folder / "checkpoints" / "last.ckpt") == 3
    assert (used_folder / "splits.csv").read_bytes() == splits
    assert not (used_folder / ".neuroreg-run.lock").exists()


def test_resume_if_possible_in_an_empty_folder_starts_fresh_and_says_so(tmp_path, capsys):
    root = tmp_path / "run"
    assert finetune(root, "--trainer.max_steps", "1", "--resume_if_possible", "true") == EXIT_OK
    assert "no checkpoint to resume in" in capsys.readouterr().err
    assert step_of(root / "checkpoints" / "last.ckpt") == 1


def test_a_folder_held_by_a_live_run_is_refused(tmp_path, capsys):
    root = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        root.mkdir()
        (root / ".neuroreg-run.lock").write_text(
            '{"pid": %d, "host": "%s", "started": "now", "purpose": "neuroreg finetune"}'
            % (holder.pid, socket.gethostname()))
        assert finetune(root, "--trainer.max_steps", "1") == EXIT_BUSY
        line = one_error_line(capsys)
        assert f"in use by process {holder.pid}" in line and "neuroreg finetune" in line
        assert sorted(p.name for p in root.iterdir()) == [".neuroreg-run.lock"]
    finally:
        holder.kill()
        holder.wait()


def test_the_run_holds_the_lock_while_it_trains(tmp_path, monkeypatch):
    root = tmp_path / "run"
    seen = []
    fit = lightning.pytorch.Trainer.fit

    def fit_and_look(self, *args, **kwargs):
        info = PathLock(root / ".neuroreg-run.lock").holder()
        seen.append(info)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(lightning.pytorch.Trainer, "fit", fit_and_look)
    assert finetune(root, "--trainer.max_steps", "1") == EXIT_OK
    assert seen and seen[0]["pid"] == os.getpid() and seen[0]["purpose"] == "neuroreg finetune"
    assert not (root / ".neuroreg-run.lock").exists()


class _Payload:
    """A pickle that would create a folder when unpickled without weights_only."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return os.makedirs, (self.target,)


@pytest.mark.parametrize("kind, pattern", [
    ("last", "--ckpt_path last: there is no checkpoint to resume"),
    ("truncated", "--ckpt_path .*half.ckpt: cannot read the checkpoint"),
    ("malicious", "--ckpt_path .*evil.ckpt: cannot read the checkpoint"),
])
def test_bad_ckpt_path_is_one_line_and_status_4(tmp_path, capsys, kind, pattern):
    import re

    pwned = tmp_path / "pwned"
    if kind == "truncated":
        path = tmp_path / "half.ckpt"
        torch.save({"state_dict": {"w": torch.zeros(1000)}, "global_step": 1}, path)
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    elif kind == "malicious":
        path = tmp_path / "evil.ckpt"
        torch.save({"state_dict": {}, "global_step": _Payload(pwned)}, path)
    root = tmp_path / "run"
    ckpt = "last" if kind == "last" else str(path)
    assert finetune(root, "--trainer.max_steps", "1", "--ckpt_path", ckpt) == EXIT_INPUT
    assert re.search(pattern, one_error_line(capsys))
    assert not (root / "checkpoints").exists() and not (root / "splits.csv").exists()
    assert not (root / ".neuroreg-run.lock").exists() and not pwned.exists()


def test_default_root_dir_that_cannot_be_written_is_an_output_error(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert finetune(blocker / "run", "--trainer.max_steps", "1") == EXIT_OUTPUT
    assert "--trainer.default_root_dir" in one_error_line(capsys)


def test_an_error_before_the_first_step_is_the_only_line_on_stderr(tmp_path):
    """Lightning's start-up lines (seed, devices) are held back until the run starts."""
    proc = subprocess.run([sys.executable, "-m", "neuroreg.cli.main", "finetune", "--config", TINY,
                           "--trainer.default_root_dir", str(tmp_path / "run"), *FAST,
                           "--forgetting.enabled", "true", "--forgetting.probe_sets", "[nope]"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--forgetting.probe_sets: 'nope' is not a bundled set" in lines[0], proc.stderr


@pytest.mark.slow
def test_two_fine_tunes_started_into_one_folder_the_second_is_refused(tmp_path, capsys):
    """A real concurrent run: the second finds the first's lock and stops before doing anything."""
    import time

    root = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "neuroreg.cli.main", "finetune", "--config", TINY,
                              "--trainer.default_root_dir", str(root), *FAST, "--trainer.max_steps", "100000"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (root / ".neuroreg-run.lock").exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.5)
        assert finetune(root, "--trainer.max_steps", "1") == EXIT_BUSY
        line = one_error_line(capsys)
        assert f"in use by process {first.pid}" in line and "neuroreg finetune" in line
    finally:
        first.kill()
        first.wait()
