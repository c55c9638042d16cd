"""experiments/bench_finetune.py runs end to end at a tiny size (timings not asserted): its check that a report
reading the stored start side equals the full one must hold, also for a stochastic front end (VOneBlock noise)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "experiments" / "bench_finetune.py"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["efficientnet_lite0_imagenet", "vone_cornet_s"])
def test_bench_finetune_tiny(model, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_finetune", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    bench.main(["--model", model, "--n-images", "36", "--image-size", "32", "--epochs", "1", "--batch-size", "8",
                "--device", "cpu", "--json", str(out)])
    record = json.loads(out.read_text())
    assert record["model"] == model and record["n_train"] > 0
    assert record["report_cpu_s"] > 0 and record["warm_report_cpu_s"] > 0
    assert "ratio report / one epoch" in capsys.readouterr().out
