"""`neuroreg evaluate --model cornet_z vone_cornet_s --brain brainio:DIR` on the fixture Brain-Score cache."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

CACHE = Path(__file__).resolve().parent / "fixtures" / "brainio" / "composite"


@pytest.mark.slow
def test_behaviour_section_and_composite_for_both_models(tmp_path):
    out = tmp_path / "cmp"
    proc = subprocess.run([sys.executable, "-m", "neuroreg.cli.main", "evaluate", "--model", "cornet_z",
                           "vone_cornet_s", "--brain", f"brainio:{CACHE}", "--out", str(out)],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(out / "summary.csv").set_index("model")
    assert list(summary.index) == ["cornet_z", "vone_cornet_s"]
    rows = pd.DataFrame(r for r in json.loads((out / "scorecard.json").read_text()) if r["section"] == "behaviour")
    assert set(rows["model"]) == {"cornet_z", "vone_cornet_s"}
    for model in ("cornet_z", "vone_cornet_s"):
        mine = rows[rows["model"] == model]
        comp = mine[mine["component"].notna()].set_index("component")
        assert list(comp.index) == ["V4", "IT", "behaviour", "composite"]
        assert np.isfinite(comp["brainscore_ceiled"]).all()
        assert comp.loc["composite", "score"] == pytest.approx(comp.loc[["V4", "IT", "behaviour"],
                                                                        "brainscore_ceiled"].mean())
        assert summary.loc[model, "brainscore:composite"] == pytest.approx(comp.loc["composite", "score"])
        assert set(comp["protocol"]) == {"brainscore-2026"}
        # the ceilings are the data's: the neural split-half reliability and I2n's split-half r
        assert 0.8 < comp.loc["V4", "ceiling"] < 1 and 0.8 < comp.loc["IT", "ceiling"] < 1
        assert comp.loc["behaviour", "ceiling"] == pytest.approx(summary.loc[model, "i2n:all ceiling"])
        i2n = mine[(mine["metric"] == "i2n") & mine["component"].isna()]
        assert list(i2n["split"].astype(str)) == ["0", "1", "mean"] and (i2n["number_of_trials"] == 2).all()
        assert (mine["metric"] == "image_dprime").sum() == 24
        committed = mine[(mine["metric"] == "predictivity") & (mine["is_best"] == True)]  # noqa: E712
        assert sorted(committed["region"]) == ["IT", "V4"]
    # the ceilings do not depend on the model
    assert summary["i2n:all ceiling"].nunique() == 1
    meta = json.loads((out / "scorecard_meta.json").read_text())
    for model in ("cornet_z", "vone_cornet_s"):
        assert "Brain-Score cache" in meta["ran_on"]["behaviour"][model] and "1008 trials" in meta["ran_on"][
            "behaviour"][model]
    assert len(list(out.glob("behaviour_dprime_*.png"))) == 1
    assert "Behaviour and the Brain-Score composite" in (out / "report.html").read_text()
