"""`nr.evaluate(..., human_alignment=DIR)` and `neuroreg evaluate --human-alignment DIR`: the section side by side."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

import neuroreg as nr
from fixtures.clickme import Tiny, write_clickme_shard
from neuroreg.scorecard.human_alignment import score_human_alignment

SIZE = 32


@pytest.fixture(scope="module")
def clickme_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("clickme")
    write_clickme_shard(root / "val-0.tfrecords", labels=[3, 1, 4, 1, 5, 9], seed=0)
    return root


def test_evaluate_adds_the_section_for_each_model_with_the_scorer_s_numbers(clickme_root, tmp_path):
    models = {"a": Tiny(0), "b": Tiny(1)}
    card = nr.evaluate(models, brain_sets=(), human_alignment=clickme_root, image_size=SIZE, batch_size=4,
                       progress=False)
    assert set(card.sections) == {"human_alignment"}
    direct = score_human_alignment(models, clickme_root, image_size=SIZE, batch_size=2, progress=False)
    got = {r["model"]: r for r in card.sections["human_alignment"]}
    for row in direct:
        assert got[row["model"]]["score"] == pytest.approx(row["score"], abs=1e-6)
        assert got[row["model"]]["n_images"] == 6
    assert got["a"]["score"] != pytest.approx(got["b"]["score"])
    summary = card.summary().set_index("model")
    assert summary.loc["a", "human_alignment"] == pytest.approx(got["a"]["score"])
    assert "6 images with a human map" in card.ran_on["human_alignment"]["b"]
    card.save(tmp_path / "card", tensorboard=False)
    assert "Human alignment (ClickMe)" in (tmp_path / "card" / "report.html").read_text()


def test_the_section_asked_for_without_maps_is_an_error():
    with pytest.raises(ValueError, match="human_alignment needs ClickMe maps|needs ClickMe maps"):
        nr.evaluate({"a": Tiny(0)}, brain_sets=(), sections=["human_alignment"], progress=False)


def test_cli_writes_the_section_for_two_models(clickme_root, tmp_path):
    out = tmp_path / "cmp"
    proc = subprocess.run([sys.executable, "-m", "neuroreg.cli.main", "evaluate", "--model", "cornet_z", "cornet_r",
                           "--brain", "--sections", "human_alignment", "--human-alignment", str(clickme_root),
                           "--image-size", "64", "--batch-size", "3", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = pd.read_csv(out / "scorecard.csv")
    rows = rows[rows["section"] == "human_alignment"]
    assert sorted(rows["model"]) == ["cornet_r", "cornet_z"]
    assert (rows["n_images"] == 6).all() and rows["score"].notna().all()
    summary = pd.read_csv(out / "summary.csv").set_index("model")
    assert summary["human_alignment"].notna().all()
