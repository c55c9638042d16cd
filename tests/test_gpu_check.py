"""experiments/gpu_check.py runs end to end at its tiny sizes on the CPU, so the device check cannot rot before a
device runs it: every section is present with finite positive figures, the JSON and Markdown table are written
(timings are not asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "gpu_check.py"
SECTIONS = {"training", "extraction", "scoring", "noise", "attacks"}


@pytest.mark.slow
def test_gpu_check_tiny_on_the_cpu(tmp_path):
    out = tmp_path / "check.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["device"].startswith("cpu") and report["torch"] and report["tiny"] is True
    assert set(report["sections"]) == SECTIONS
    for section, figures in report["sections"].items():
        assert figures, section
        for name, value in figures.items():
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (section, name, value)
    assert {"counter_s", "randn_s", "generators_s", "counter_vs_randn"} <= set(report["sections"]["noise"])
    assert any(k.startswith("rdm_") for k in report["sections"]["scoring"])
    assert any(k.startswith("ridge_gcv_") for k in report["sections"]["scoring"])
    table = out.with_suffix(".md").read_text()
    assert table.startswith("Device: cpu") and "| noise | counter_vs_randn |" in table
    assert {p.name for p in tmp_path.iterdir()} == {"check.json", "check.md"}   # no temporary left behind


def test_gpu_check_refuses_a_missing_cuda_device(tmp_path):
    pytest.importorskip("torch")
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda", "--tiny"], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2 and "--device cuda: torch sees no CUDA device" in done.stderr
