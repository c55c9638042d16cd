"""The seed-003 comparison (hierarchy slope vs forgetting) runs end to end in --quick mode."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "reproduce_hierarchy_vs_forgetting.py"


def _script():
    spec = importlib.util.spec_from_file_location("reproduce_hierarchy_vs_forgetting", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_mode_writes_tables_and_figure(tmp_path):
    _script().main(["--quick", "--out", str(tmp_path)])
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert runs["network"].nunique() == 2 and set(runs["seed"]) == {0}
    for column in ("hierarchy_slope", "finetuned_test", "retention_drop", "cka_drift", "brain_drop"):
        assert np.isfinite(runs[column].to_numpy(dtype=float)).all(), column
    assert runs["best_epoch"].between(1, runs["epochs"].max()).all()
    corr = pd.read_csv(tmp_path / "correlation.csv")
    assert set(corr["forgetting"]) == {"retention_drop", "cka_drift", "brain_drop"}
    assert set(corr["verdict"]) <= {"reproduced", "not reproduced", "inconclusive"}
    assert (tmp_path / "hierarchy_forgetting.png").stat().st_size > 0
    assert "hierarchy slope" in (tmp_path / "summary.md").read_text()


def test_bootstrap_resamples_networks_and_seeds():
    """Network means in perfect inverse order give rho = -1 in every resample; seeds vary within a network."""
    module = _script()
    runs = pd.DataFrame({"network": np.repeat(list("abcd"), 3), "seed": np.tile([0, 1, 2], 4),
                         "hierarchy_slope": np.repeat([0.1, 0.2, 0.3, 0.4], 3) + np.tile([-0.01, 0.0, 0.01], 4),
                         "cka_drift": np.repeat([0.4, 0.3, 0.2, 0.1], 3) + np.tile([0.01, 0.0, -0.01], 4)})
    boots = module.bootstrap_spearman(runs, "cka_drift", n_boot=200)
    finite = boots[np.isfinite(boots)]
    assert len(finite) > 100 and (finite < -0.7).all()
    assert np.isclose(np.median(finite), -1.0)
