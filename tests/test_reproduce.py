"""The reproduction scripts run end to end in their --quick mode and write finite tables (values not asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would: dataclasses and pickling (worker processes) look it up
    spec.loader.exec_module(module)
    return module


def _finite_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    assert path.is_file(), path
    df = pd.read_csv(path)
    assert len(df) > 0, path
    for c in columns:
        values = pd.to_numeric(df[c], errors="coerce").dropna().to_numpy()
        assert len(values) and np.isfinite(values).all(), (path, c)
    return df


@pytest.mark.slow
def test_layer_rsa_quick(tmp_path):
    _script("reproduce_layer_rsa").main(["--quick", "--out", str(tmp_path)])
    best = _finite_csv(tmp_path / "best_layers.csv", ["score", "ci_low", "ci_high"])
    assert best["dataset"].nunique() == 2
    assert best["model"].nunique() == 3  # trained, one random seed, the VOneBlock
    _finite_csv(tmp_path / "difference.csv", ["trained_minus_random", "ci_low", "ci_high"])
    assert len(list(tmp_path.glob("profile_*.png"))) == 2 and (tmp_path / "best_layers.md").is_file()


@pytest.mark.slow
def test_region_depth_quick(tmp_path):
    _script("reproduce_region_depth").main(["--quick", "--out", str(tmp_path)])
    summary = _finite_csv(tmp_path / "summary.csv", ["gap", "ci_low", "ci_high"])
    assert set(summary["measure"]) == {"argmax", "soft"} and (summary["mode"] == "quick").all()
    assert summary["verdict"].dropna().isin(["reproduced", "not reproduced", "inconclusive"]).all()
    per_subject = _finite_csv(tmp_path / "per_subject.csv", ["depth_EVC", "depth_IT", "gap"])
    assert per_subject["subject"].nunique() == 15 and per_subject["seed"].nunique() == 2  # two random seeds
    depths = per_subject[["depth_EVC", "depth_IT"]].to_numpy()
    assert ((depths >= 0) & (depths <= 1)).all()
    assert (tmp_path / "region_depth.png").is_file() and (tmp_path / "summary.md").read_text().startswith("QUICK")


@pytest.mark.slow
def test_reference_agreement(tmp_path):
    _script("reproduce_reference_agreement").main(["--out", str(tmp_path)])
    table = _finite_csv(tmp_path / "agreement.csv", ["max_difference"])
    assert table["reference"].str.contains("rsatoolbox").any() and table["reference"].str.contains("scikit").any()


@pytest.mark.slow
def test_vone_robustness_quick(tmp_path):
    _script("reproduce_vone_robustness").main(["--quick", "--out", str(tmp_path)])
    summary = _finite_csv(tmp_path / "summary.csv", ["mean"])
    assert summary["model"].nunique() == 3 and (tmp_path / "accuracy_vs_eps.png").is_file()
    runs = _finite_csv(tmp_path / "runs.csv", ["score"])
    assert {"pgd", "eotpgd", "strongest", "corruption"} <= set(runs["attack"])  # EOT-PGD for the VOne model
    assert (tmp_path / "summary.md").is_file() and len(pd.read_csv(tmp_path / "sanity.csv")) > 0


@pytest.mark.slow
def test_finetune_hierarchy_quick(tmp_path):
    _script("reproduce_finetune_hierarchy").main(["--quick", "--out", str(tmp_path)])
    hier = _finite_csv(tmp_path / "hierarchy.csv", ["score"])
    assert {"before", "after", "change"} <= set(hier["stage"])
    assert (tmp_path / "forgetting.csv").is_file()


@pytest.mark.slow
def test_finetune_chain_small(tmp_path, capsys):
    _script("finetune_chain").main(["--out", str(tmp_path), "--n-images", "48", "--image-size", "32",
                                    "--epochs", "1", "--batch-size", "8"])
    rows = _finite_csv(tmp_path / "b" / "forgetting.csv", ["score"])
    assert set(rows.loc[rows["metric"] == "previous_task_accuracy", "dataset"]) == {"pattern:a"}
    assert "backward_transfer" in capsys.readouterr().out
