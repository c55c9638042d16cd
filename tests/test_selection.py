"""Best-layer selection against numpy's argmax and pandas' idxmax."""

import numpy as np
import pandas as pd
import pytest

from neuroreg.scoring import ScoreTable
from neuroreg.results.selection import best_index


@pytest.mark.parametrize("scores", [[0.1, 0.5, 0.2], [0.3, 0.3, 0.1], [-2.0, -1.0, -1.0], [7.0]])
def test_matches_numpy_argmax_without_nan(scores):
    assert best_index(scores) == int(np.argmax(scores))


def test_nan_never_wins_like_pandas_idxmax():
    scores = [np.nan, 0.2, np.nan, 0.4, 0.4]
    assert best_index(scores) == pd.Series(scores).idxmax() == 3
    assert best_index([np.nan, np.nan]) is None and best_index([]) is None


def test_score_table_best_picks_the_first_of_tied_layers_like_idxmax():
    rows = [dict(model="m", region="IT", subject=1, metric="crsa", layer=layer, split=split, score=s)
            for layer, split, s in [("a", "train", 0.1), ("b", "train", 0.3), ("c", "train", 0.3),
                                    ("a", "test", 0.9), ("b", "test", 0.2), ("c", "test", 0.7)]]
    df = pd.DataFrame(rows)
    want = df.loc[df[df["split"] == "train"]["score"].idxmax(), "layer"]
    best = ScoreTable(rows).best().to_pandas()
    assert best["layer"].tolist() == [want] == ["b"] and best["score"].tolist() == [0.2]
