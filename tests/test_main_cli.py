"""The neuroreg command: --version, info, and honest 'not available' for unfinished commands."""

import subprocess
import sys

import pytest

import neuroreg
from neuroreg.cli.main import EXIT_NOT_AVAILABLE, build_parser, main


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert neuroreg.__version__ in capsys.readouterr().out


def test_info_lists_device_and_bundled_sets(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "device:" in out and "kriegeskorte92" in out and "algonauts2019_78" in out
    assert "torch" in out


def test_every_documented_command_is_registered():
    parser, handlers = build_parser()
    assert {"info", "demo", "train", "finetune", "evaluate", "score", "bench"} <= set(handlers)


def test_unavailable_commands_fail_loudly(capsys):
    _, handlers = build_parser()
    for name, handler in handlers.items():
        if getattr(handler, "__name__", "") == "run" and handler.__qualname__.startswith("_not_available"):
            import argparse
            assert handler(argparse.Namespace()) == EXIT_NOT_AVAILABLE
            assert "not available yet" in capsys.readouterr().err


def test_console_script_runs():
    proc = subprocess.run([sys.executable, "-m", "neuroreg.cli.main", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and "neuroreg" in proc.stdout


def test_import_is_light_and_models_still_register_in_timm():
    code = ("import sys, neuroreg; assert 'torch' not in sys.modules, 'import neuroreg loaded torch'; "
            "import timm; assert 'cornet_z' in timm.list_models('cornet*'); "
            "print(type(timm.create_model('cornet_z')).__name__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "CORnetZ", proc.stderr[-2000:]
    proc = subprocess.run([sys.executable, "-m", "neuroreg.cli.main", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "exit statuses:" in proc.stdout
