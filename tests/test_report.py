"""Report writers: tables round-trip, figures are real PNGs, writes are atomic."""

import json

import pandas as pd
import pytest

from neuroreg.results.report import Report, markdown_table, plot_layer_profile, save_figure, write_table
from neuroreg.scoring import ScoreTable


def _table():
    t = ScoreTable()
    for i, layer in enumerate(["conv1", "layer1", "layer2"]):
        for split in ("train", "test"):
            t.append(model="m", layer=layer, region="IT", subject="monkey", metric="crsa", split=split,
                     score=0.1 * (i + 1) + (0.01 if split == "test" else 0.0), ceiling_r=0.5)
    return t


def test_write_table_round_trips(tmp_path):
    paths = write_table(_table(), tmp_path, "scores")
    df = pd.read_csv(paths["csv"])
    assert len(df) == 6 and df["score"].max() == pytest.approx(0.31)
    assert df["normalized"].max() == pytest.approx(0.62)
    assert len(json.loads(paths["json"].read_text())) == 6
    assert paths["md"].read_text().startswith("| model |")
    assert not list(tmp_path.glob(".*.tmp"))


def test_markdown_table_escapes_pipes():
    md = markdown_table(pd.DataFrame({"a": ["x|y"], "b": [1.23456]}))
    assert "x\\|y" in md and "1.235" in md


def test_layer_profile_figure_is_png(tmp_path):
    fig = plot_layer_profile(_table(), metric="crsa", ceilings={"IT": 0.5}, title="t")
    path = save_figure(fig, tmp_path / "profile.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_layer_profile_rejects_empty_selection():
    with pytest.raises(ValueError, match="no rows to plot"):
        plot_layer_profile(_table(), metric="versa")


def test_report_writes_markdown_and_self_contained_html(tmp_path):
    fig_path = save_figure(plot_layer_profile(_table()), tmp_path / "p.png")
    rep = Report("Demo", tmp_path)
    rep.add("Brain scores", "cRSA per layer", tables=[("scores", _table())], figures=[fig_path])
    out = rep.write()
    assert "## Brain scores" in out["md"].read_text() and "](p.png)" in out["md"].read_text()
    page = out["html"].read_text()
    assert "data:image/png;base64," in page and "<table" in page


def test_scoretable_best_selects_on_train_reports_test():
    best = _table().best("region")
    assert len(best) == 1
    row = best[0]
    assert row["layer"] == "layer2" and row["split"] == "test" and row["score"] == pytest.approx(0.31)


def test_scoretable_rejects_nan_scores():
    with pytest.raises(ValueError, match="finite"):
        ScoreTable().append(model="m", score=float("nan"))


def test_comparison_figures_name_every_model_in_the_legend_even_with_a_leading_underscore():
    # matplotlib hides artist labels that start with "_": a legend read back from the axes lost such a
    # model, and with a single such model it was empty and the figure failed ("number sections ...")
    import matplotlib.pyplot as plt

    from neuroreg.scorecard.report import plot_comparison, plot_depth_profile

    table = ScoreTable()
    for model in ("_job0", "plain"):
        for i in range(3):
            table.append(model=model, layer=f"l{i}", depth=i / 2, region="EBA", split="test", metric="versa",
                         score=0.1 * i, dataset="user")
    for models in (["_job0"], ["_job0", "plain"]):
        sub = ScoreTable([r for r in table if r["model"] in models])
        fig = plot_depth_profile(sub)
        assert [t.get_text() for t in fig.legends[0].get_texts()] == models
        plt.close(fig)
        summary = pd.DataFrame({"model": models, "versa:user/EBA": [0.3] * len(models)})
        fig = plot_comparison(summary)
        assert [t.get_text() for t in fig.legends[0].get_texts()] == models
        plt.close(fig)
