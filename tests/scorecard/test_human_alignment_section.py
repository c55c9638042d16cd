"""The scorecard's human-alignment section (neuroreg.scorecard.human_alignment): one row per model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixtures.clickme import Tiny, write_clickme_shard
from neuroreg.scorecard import Scorecard
from neuroreg.scorecard.human_alignment import SECTION, human_alignment_ran_on, score_human_alignment
from neuroreg.scoring import HUMAN_SPEARMAN_CEILING, human_alignment

SIZE = 32


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def clickme_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("clickme")
    write_clickme_shard(root / "val-0.tfrecords", labels=[3, 1, 4, 1, 5, 9], seed=0)
    return root


def test_one_row_per_model_from_a_clickme_root(clickme_root):
    models = {"a": Tiny(0), "b": Tiny(1)}
    per_image: dict = {}
    table = score_human_alignment(models, clickme_root, image_size=SIZE, batch_size=4, per_image=per_image,
                                  progress=False)
    assert [r["model"] for r in table] == ["a", "b"]
    for row in table:
        assert row["metric"] == "alignment_score" and row["split"] == "test" and row["n_images"] == 6
        assert row["dataset"] == f"clickme val ({clickme_root.name})" and row["explainer"] == "saliency"
        metrics = per_image[row["model"]]
        assert row["score"] == pytest.approx(metrics.alignment_score)
        assert row["spearman"] == pytest.approx(float(np.mean(metrics.spearman)))
        assert row["score"] == pytest.approx(row["spearman"] / HUMAN_SPEARMAN_CEILING)
        assert row["dice"] == pytest.approx(float(np.mean(metrics.dice)))
        assert row["iou"] == pytest.approx(float(np.mean(metrics.iou)))
    assert table[0]["score"] != table[1]["score"]
    direct = human_alignment(models["b"], clickme_root, image_size=SIZE, batch_size=6, progress=False)
    assert direct.filter(metric="alignment_score")[0]["score"] == pytest.approx(table[1]["score"], abs=1e-6)


def test_section_goes_into_a_scorecard_with_what_it_ran_on(clickme_root):
    images = torch.rand(5, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    heatmaps = torch.rand(5, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3, 4])
    table = score_human_alignment(Tiny(2), (images, heatmaps, labels), model_name="tiny", dataset="own maps",
                                  progress=False)
    ran_on = human_alignment_ran_on(table)
    assert list(ran_on) == ["tiny"]
    assert ran_on["tiny"].startswith("own maps: 5 images with a human map;") and "0.65753" in ran_on["tiny"]
    card = Scorecard().add(SECTION, table, ran_on=ran_on)
    assert card.models == ["tiny"] and card.ran_on[SECTION]["tiny"] == ran_on["tiny"]
    assert len(card.sections[SECTION]) == 1


def test_unnamed_module_takes_its_class_name_and_bad_models_are_refused():
    images = torch.rand(3, 3, SIZE, SIZE)
    data = (images, torch.rand(3, SIZE, SIZE), torch.tensor([0, 1, 2]))
    assert score_human_alignment(Tiny(0), data, progress=False)[0]["model"] == "Tiny"
    with pytest.raises(TypeError, match="nn.Module or a non-empty dict"):
        score_human_alignment({}, data)
    with pytest.raises(TypeError, match=r"models must be nn.Modules; got \{'x': 'str'\}"):
        score_human_alignment({"x": "resnet"}, data)
