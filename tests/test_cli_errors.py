"""Every `neuroreg` command turns a user error into one stderr line and a documented exit status."""

import re
import subprocess
import sys
from pathlib import Path

import lightning  # noqa: F401 - imported before any capsys test, so its log handler keeps a live stream
import pytest
import torch

from neuroreg._exit import (EXIT_BUSY, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_NOT_AVAILABLE, EXIT_OUTPUT, EXIT_STATUSES,
                            EXIT_USAGE, run_guarded)
from neuroreg.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "train_tiny_cornet_z.yaml")


def _one_error_line(capsys, command):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"neuroreg {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def blocked(tmp_path):
    """A path that cannot be created: its parent is a file."""
    f = tmp_path / "a_file"
    f.write_text("x")
    return f / "results"


@pytest.fixture
def truncated_ckpt(tmp_path):
    path = tmp_path / "half.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "global_step": 1}, path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


@pytest.mark.parametrize("command", ["score", "evaluate"])
@pytest.mark.parametrize("args, status, pattern", [
    (["--model", "no_such_net"], EXIT_USAGE, "unknown model 'no_such_net'"),
    (["--model", "cornet_z", "--image-size", "-3"], EXIT_USAGE, "--image-size must be a positive integer; got -3"),
    (["--model", "cornet_z", "--checkpoint", "{tmp}/missing.pt"], EXIT_INPUT, "checkpoint file not found"),
    (["--model", "cornet_z", "--checkpoint", "{truncated}"], EXIT_INPUT, "cannot read checkpoint .*half.ckpt"),
    (["--model", "cornet_z", "--out", "{blocked}"], EXIT_OUTPUT, "--out=.*results' cannot be created"),
])
def test_score_and_evaluate_user_errors(capsys, tmp_path, blocked, truncated_ckpt, command, args, status, pattern):
    args = [a.format(tmp=tmp_path, truncated=truncated_ckpt, blocked=blocked) for a in args]
    assert main([command, *args, "--device", "cpu"]) == status
    assert re.search(pattern, _one_error_line(capsys, command))


def test_foreign_checkpoint(capsys, tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    assert main(["score", "--model", "cornet_z", "--checkpoint", str(path), "--device", "cpu"]) == EXIT_INPUT
    assert "does not match cornet_z" in _one_error_line(capsys, "score")


def test_unknown_layer_and_data_set(capsys):
    assert main(["score", "--model", "cornet_z", "--layers", "V9", "--data", "kriegeskorte92"]) == EXIT_USAGE
    assert "layer 'V9' is not a module of CORnetZ" in _one_error_line(capsys, "score")
    assert main(["score", "--model", "cornet_z", "--data", "no_such_set"]) == EXIT_USAGE
    assert "unknown brain set 'no_such_set'" in _one_error_line(capsys, "score")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_is_not_available(capsys):
    assert main(["score", "--model", "cornet_z", "--device", "cuda"]) == EXIT_NOT_AVAILABLE
    assert "--device cuda: CUDA is not available" in _one_error_line(capsys, "score")


def test_evaluate_missing_task_data(capsys, tmp_path):
    assert main(["evaluate", "--model", "cornet_z", "--device", "cpu", "--task-data", str(tmp_path / "none"),
                 "--brain"]) == EXIT_INPUT
    assert "--task-data folder does not exist" in _one_error_line(capsys, "evaluate")


def test_demo_unwritable_out(capsys, blocked):
    assert main(["demo", "--out", str(blocked)]) == EXIT_OUTPUT
    assert "cannot be created" in _one_error_line(capsys, "demo")


FAST = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.num_sanity_val_steps", "0", "--data.init_args.n_train", "32", "--data.init_args.n_val", "16",
        "--data.init_args.neural_batch_size", "8", "--data.init_args.batch_size", "16", "--scorecard.enabled", "false"]


@pytest.mark.parametrize("args, status, pattern", [
    (["--trainer.max_steps", "-3"], EXIT_USAGE, "max_steps.*-3"),
    (["--trainer.accelerator", "no_such_accelerator"], EXIT_USAGE, "no_such_accelerator"),
    (["--ckpt_path", "{truncated}"], EXIT_INPUT, "--ckpt_path .*half.ckpt: cannot read the checkpoint"),
    (["--ckpt_path", "{tmp}/none.ckpt"], EXIT_INPUT, "--ckpt_path .*none.ckpt: file not found"),
    (["--ckpt_path", "{foreign}"], EXIT_INPUT, "checkpoint of another model: .* missing keys"),
    (["--ckpt_path", "{weights}"], EXIT_INPUT, "not a Lightning training checkpoint"),
    (["--ckpt_path", "last"], EXIT_INPUT, "--ckpt_path last: there is no checkpoint to resume"),
])
def test_train_user_errors(capsys, tmp_path, truncated_ckpt, args, status, pattern):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"backbone.fc.weight": torch.zeros(2, 2)}, "global_step": 4}, foreign)
    weights = tmp_path / "weights.pt"
    torch.save({"backbone.fc.weight": torch.zeros(2, 2)}, weights)
    args = [a.format(tmp=tmp_path, truncated=truncated_ckpt, foreign=foreign, weights=weights) for a in args]
    root = tmp_path / "run"
    assert main(["train", "--config", TINY, "--trainer.default_root_dir", str(root), *FAST, *args]) == status
    assert re.search(pattern, _one_error_line(capsys, "train"))
    assert not (root / "checkpoints").exists()
    assert not (root / ".neuroreg-run.lock").exists()


def test_train_refuses_a_folder_held_by_a_live_run(capsys, tmp_path):
    root = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        root.mkdir()
        (root / ".neuroreg-run.lock").write_text(
            '{"pid": %d, "host": "%s", "started": "now", "purpose": "neuroreg train"}'
            % (holder.pid, __import__("socket").gethostname()))
        assert main(["train", "--config", TINY, "--trainer.default_root_dir", str(root), *FAST]) == EXIT_BUSY
        line = _one_error_line(capsys, "train")
        assert f"in use by process {holder.pid}" in line and "neuroreg train" in line
    finally:
        holder.kill()
        holder.wait()


def test_bugs_keep_their_traceback_and_debug_shows_every_traceback(capsys):
    def bug():
        raise TypeError("an internal mistake")

    with pytest.raises(TypeError):
        run_guarded("x", bug)
    with pytest.raises(ValueError):
        run_guarded("x", lambda: (_ for _ in ()).throw(ValueError("bad value")), debug=True)
    assert run_guarded("x", lambda: (_ for _ in ()).throw(KeyboardInterrupt())) == EXIT_INTERRUPTED


def test_console_line_and_debug_flag(blocked):
    cmd = [sys.executable, "-m", "neuroreg.cli", "demo", "--out", str(blocked)]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert plain.returncode == EXIT_OUTPUT
    assert plain.stderr.strip().splitlines() == [plain.stderr.strip()] and "Traceback" not in plain.stderr
    debug = subprocess.run(cmd + ["--debug"], capture_output=True, text=True, timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "OutputError" in debug.stderr


def test_exit_statuses_are_documented():
    docs = (ROOT / "docs" / "reliability.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for code in EXIT_STATUSES:
        assert re.search(rf"^\|\s*{code}\s*\|", docs, re.M), code
        assert re.search(rf"^\|\s*{code}\s*\|", readme, re.M), code
    out = subprocess.run([sys.executable, "-m", "neuroreg.cli", "--help"], capture_output=True, text=True).stdout
    assert "exit statuses:" in out and "busy" in out
