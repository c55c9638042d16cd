"""Every `neuroreg` command turns a user error into one stderr line and a documented exit status."""

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import lightning  # noqa: F401 - imported before any capsys test, so its log handler keeps a live stream
import pytest
import torch

from neuroreg.cli._exit import (EXIT_BUSY, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_NOT_AVAILABLE, EXIT_OUTPUT, EXIT_STATUSES,
                            EXIT_USAGE, run_guarded)
from neuroreg.cli.main import main

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
    cmd = [sys.executable, "-m", "neuroreg.cli.main", "demo", "--out", str(blocked)]
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
    out = subprocess.run([sys.executable, "-m", "neuroreg.cli.main", "--help"], capture_output=True, text=True).stdout
    assert "exit statuses:" in out and "busy" in out


# --- configuration and option errors: one line naming the option (or file) and the value, exit status 2

FINETUNE = str(ROOT / "configs" / "finetune_tiny.yaml")
FT_FAST = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
           "--trainer.num_sanity_val_steps", "0", "--trainer.logger", "false", "--data.init_args.n_images", "48",
           "--data.init_args.image_size", "32", "--data.init_args.batch_size", "8", "--scorecard.enabled", "false",
           "--trainer.max_steps", "1"]


def _only_error_line(capsys, command):
    """Stderr is exactly one line, the error."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"neuroreg {command}: error:"), err
    return lines[0]


@pytest.fixture
def configs(tmp_path):
    files = {"bad": "trainer: [max_steps\n", "empty": "", "list": "- a\n- b\n", "unknown": "no_such_option: 1\n",
             "scalar": "just text\n"}
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    (tmp_path / "folder.yaml").mkdir()
    return tmp_path


_CONFIG_CASES = [
    ("bad", r"--config .*bad\.yaml: not valid YAML.*line \d+"),
    ("empty", r"--config .*empty\.yaml is empty; expected a mapping of option names to values"),
    ("list", r"--config .*list\.yaml holds a list; expected a mapping of option names to values"),
    ("scalar", r"--config .*scalar\.yaml holds a str; expected a mapping of option names to values"),
    ("missing", r"--config .*missing\.yaml: file not found"),
    ("folder", r"--config .*folder\.yaml is a folder; expected a YAML file"),
    ("unknown", r"--config .*unknown\.yaml: unknown option 'no_such_option'"),
]


@pytest.mark.parametrize("command, base", [("train", ["--config", TINY]), ("finetune", ["--config", FINETUNE]),
                                           ("score", ["--model", "cornet_z"]), ("evaluate", ["--model", "cornet_z"])])
@pytest.mark.parametrize("case, pattern", _CONFIG_CASES)
def test_bad_config_files_are_one_line_usage_errors(capsys, configs, command, base, case, pattern):
    assert main([command, *base, "--config", str(configs / f"{case}.yaml")]) == EXIT_USAGE
    assert re.search(pattern, _only_error_line(capsys, command))


@pytest.mark.parametrize("command, args, pattern", [
    ("train", ["--config", TINY, "--model.lr", "nan"], r"--model\.lr: expected a float, got 'nan'"),
    ("train", ["--config", TINY, "--trainer.max_steps", "abc"], r"--trainer\.max_steps: expected an int, got 'abc'"),
    ("train", ["--config", TINY, "--scorecard.eps", "-1"], r"--scorecard\.eps: expected list\[float\] or None, "
                                                          r"got '-1'"),
    ("train", ["--config", TINY, "--no_such_option", "1"], r"unrecognized arguments: --no_such_option 1"),
    ("train", ["--config", TINY, "--scorecard.eps", "[-1]"], r"scorecard eps \(attack budgets\) must be finite "
                                                            r"and >= 0; got \[-1\.0\]"),
    ("finetune", ["--config", FINETUNE, "--model.lr", "nan"], r"--model\.lr: expected a float, got 'nan'"),
    ("finetune", ["--config", FINETUNE, "--model.strategy", "nope"],
     r"--model\.strategy: expected one of 'full', 'linear_probe', .*got 'nope'"),
    ("finetune", ["--config", FINETUNE, "--data.init_args.n_images", "abc"],
     r"--data\.init_args\.n_images: expected an int, got 'abc'"),
    ("finetune", ["--config", FINETUNE, "--data.init_args.no_such_option", "1"],
     r"--data\.init_args: unknown option 'no_such_option' of neuroreg\.data\.PatternDataModule"),
    ("finetune", ["--config", FINETUNE, "--data.class_path", "nope.Nope"],
     r"--data\.class_path: 'nope\.Nope': No module named 'nope'"),
    ("evaluate", ["--model", "cornet_z", "--eps", "nan"], r"--eps.*: expected a float, got 'nan'"),
    ("evaluate", ["--model", "cornet_z", "--eps", "-1"], r"--eps: budgets must be finite and >= 0; got -1"),
    ("evaluate", ["--model", "cornet_z", "--batch-size", "x"], r"--batch-size: expected an int, got 'x'"),
    ("evaluate", ["--model", "cornet_z", "--norm", "L3"], r"--norm: invalid choice: 'L3'"),
    ("score", ["--model", "cornet_z", "--no-such-option"], r"unrecognized arguments: --no-such-option"),
])
def test_bad_option_values_are_one_line_usage_errors(capsys, command, args, pattern):
    assert main([command, *args]) == EXIT_USAGE
    assert re.search(pattern, _only_error_line(capsys, command))


def test_wrong_type_in_a_config_file_names_the_option_and_value(capsys, tmp_path):
    cfg = tmp_path / "wrong.yaml"
    cfg.write_text("batch_size: lots\n")
    assert main(["score", "--model", "cornet_z", "--config", str(cfg)]) == EXIT_USAGE
    assert "--batch-size: expected an int, got 'lots'" in _only_error_line(capsys, "score")


# --- outputs are checked before the work starts (exit status 5)

@pytest.mark.parametrize("command", ["score", "evaluate"])
def test_out_that_is_an_existing_file_is_refused_before_scoring(capsys, tmp_path, monkeypatch, command):
    def no_scoring(*args, **kwargs):
        raise AssertionError("scoring started")

    monkeypatch.setattr(importlib.import_module("neuroreg.scorecard.evaluation"), "evaluate", no_scoring)
    out = tmp_path / "results.txt"
    out.write_text("keep me")
    assert main([command, "--model", "cornet_z", "--device", "cpu", "--out", str(out)]) == EXIT_OUTPUT
    assert "is an existing file; give a folder" in _one_error_line(capsys, command)
    assert out.read_text() == "keep me"


def _root_dir_cases(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    return {"below_a_file": blocker / "run", "proc": Path("/proc/neuroreg_run")}


@pytest.mark.parametrize("command, config", [("train", TINY), ("finetune", FINETUNE)])
@pytest.mark.parametrize("case", ["below_a_file", "proc"])
def test_unwritable_run_folder_is_an_output_error(capsys, tmp_path, command, config, case):
    root = _root_dir_cases(tmp_path)[case]
    if case == "proc" and not Path("/proc").is_dir():
        pytest.skip("no /proc on this system")
    fast = FAST if command == "train" else FT_FAST
    assert main([command, "--config", config, "--trainer.default_root_dir", str(root), *fast]) == EXIT_OUTPUT
    line = _one_error_line(capsys, command)
    assert "--trainer.default_root_dir" in line and str(root) in line


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
@pytest.mark.parametrize("command, config", [("train", TINY), ("finetune", FINETUNE)])
def test_run_folder_without_write_permission_is_an_output_error(capsys, tmp_path, command, config):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        fast = FAST if command == "train" else FT_FAST
        assert main([command, "--config", config, "--trainer.default_root_dir", str(locked / "run"),
                     *fast]) == EXIT_OUTPUT
        assert "--trainer.default_root_dir" in _one_error_line(capsys, command)
    finally:
        locked.chmod(0o700)


# --- finetune: the forgetting report's inputs are checked before the first training step

@pytest.mark.parametrize("args, status, pattern", [
    (["--forgetting.probe_sets", "[nope]"], EXIT_USAGE, r"--forgetting\.probe_sets: 'nope' is not a bundled set"),
    (["--forgetting.probe_sets", "[{tmp}/none.npz]"], EXIT_INPUT, r"--forgetting\.probe_sets: .*none\.npz"),
    (["--forgetting.original_data", "{corrupt}"], EXIT_INPUT,
     r"--forgetting\.original_data: unreadable .*broken\.jpg"),
    (["--forgetting.start_cache", "{corrupt}/a/ok.png/cache"], EXIT_OUTPUT,
     r"--forgetting\.start_cache=.*cannot be created: .*ok\.png is a file"),
])
def test_finetune_refuses_bad_report_inputs_before_training(capsys, tmp_path, monkeypatch, args, status, pattern):
    import lightning.pytorch

    def no_training(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(lightning.pytorch.Trainer, "fit", no_training)
    corrupt = tmp_path / "original"
    for name in ("a", "b"):
        (corrupt / name).mkdir(parents=True)
        _write_image(corrupt / name / "ok.png")
    (corrupt / "b" / "broken.jpg").write_bytes(b"not a jpeg at all")
    args = [a.format(tmp=tmp_path, corrupt=corrupt) for a in args]
    root = tmp_path / "run"
    assert main(["finetune", "--config", FINETUNE, "--trainer.default_root_dir", str(root), *FT_FAST,
                 *args]) == status
    assert re.search(pattern, _one_error_line(capsys, "finetune"))
    assert not (root / "checkpoints").exists() and not (root / ".neuroreg-run.lock").exists()


def _write_image(path, size=8, value=0):
    from PIL import Image

    Image.new("RGB", (size, size), (value, value, value)).save(path)


# --- evaluate: the task folder's classes must be the model's outputs

def test_evaluate_refuses_a_task_folder_with_other_classes_than_outputs(capsys, tmp_path, monkeypatch):
    def no_scoring(*args, **kwargs):
        raise AssertionError("scoring started")

    monkeypatch.setattr(importlib.import_module("neuroreg.scorecard.evaluation"), "evaluate", no_scoring)
    task = tmp_path / "task"
    for i, name in enumerate(("cat", "dog", "fox")):
        (task / name).mkdir(parents=True)
        _write_image(task / name / "0.png", value=40 * i)
    assert main(["evaluate", "--model", "cornet_z", "--num-classes", "5", "--device", "cpu",
                 "--task-data", str(task), "--brain"]) == EXIT_USAGE
    line = _one_error_line(capsys, "evaluate")
    assert "3 class folders" in line and "5 outputs" in line and "--num-classes" in line


@pytest.mark.parametrize("argv, who, pattern", [
    (["sweep", "--config", "s.yaml", "--store", "st", "--no-such-option"], "sweep",
     r"unrecognized arguments: --no-such-option"),
    (["sweep"], "sweep", r"the following arguments are required: --config, --store"),
    (["no_such_command"], "", r"invalid choice: 'no_such_command'"),
])
def test_plain_argparse_errors_are_one_line(capsys, argv, who, pattern):
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    prefix = f"neuroreg {who}: error:" if who else "neuroreg: error:"
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    assert re.search(pattern, lines[0])


@pytest.mark.parametrize("command", ["sweep", "tune"])
def test_store_that_is_an_existing_file_is_refused_before_work(capsys, tmp_path, command):
    store = tmp_path / "store.txt"
    store.write_text("keep me")
    assert main([command, "--config", str(tmp_path / "any.yaml"), "--store", str(store)]) == EXIT_OUTPUT
    assert "--store=" in (line := _one_error_line(capsys, command)) and "is an existing file; give a folder" in line
    assert store.read_text() == "keep me"
