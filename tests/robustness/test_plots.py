import pytest
from matplotlib.figure import Figure
from PIL import Image

from neuroreg.robustness import plot_accuracy_vs_eps, plot_corruption_heatmap
from neuroreg.results.table import ScoreTable


def _attack_table():
    t = ScoreTable()
    for eps, acc in [(0.0, 0.9), (2 / 255, 0.6), (4 / 255, 0.3)]:
        for attack in ("pgd", "eotpgd"):
            t.append(model="m", metric="accuracy", score=acc - (0.1 if attack == "eotpgd" else 0), attack=attack,
                     eps=eps, norm="Linf", role="main", sd=0.02)
    t.append(model="m", metric="sanity:black_box", score=0.0, passed=False, detail="masking", role=None)
    return t


def _corruption_table():
    t = ScoreTable()
    t.append(model="m", metric="accuracy", score=0.9, corruption="none", severity=0)
    for c in ("fog", "snow"):
        for s in range(1, 6):
            t.append(model="m", metric="accuracy", score=0.9 - 0.1 * s, corruption=c, severity=s)
    return t


def test_accuracy_vs_eps_draws_one_line_per_attack_and_saves(tmp_path):
    fig = plot_accuracy_vs_eps(_attack_table(), path=tmp_path / "eps.png")
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and len(ax.lines) == 2
    assert list(ax.lines[0].get_xdata()) == pytest.approx([0, 2, 4])  # L-inf eps shown in 8-bit steps
    assert "FAILED" in ax.get_title()
    assert Image.open(tmp_path / "eps.png").size[0] > 100


def test_heatmap_has_a_cell_per_corruption_and_severity(tmp_path):
    fig = plot_corruption_heatmap(_corruption_table(), path=tmp_path / "heat.pdf")
    grid = fig.axes[0].images[0].get_array()
    assert grid.shape == (2, 5)
    assert grid[0, 4] == pytest.approx(0.4)
    assert (tmp_path / "heat.pdf").read_bytes()[:4] == b"%PDF"


def test_rejects_tables_of_the_other_suite():
    with pytest.raises(ValueError, match="corruption"):
        plot_corruption_heatmap(_attack_table())
    with pytest.raises(ValueError, match="role"):
        plot_accuracy_vs_eps(_corruption_table())
