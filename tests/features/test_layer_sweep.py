"""The default layer sweep covers every stage output and every block; best brain layer chosen among them."""

import pytest
import timm
import torch
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual
from timm.models.resnet import BasicBlock

import neuroreg as nr
from neuroreg.scorecard.evaluation import brain_scores
from neuroreg.features.layers import sweep_layers


def _stage_outputs(model):
    """Stage outputs written here from the architecture: ResNet layer1..4, EfficientNet blocks.0..6."""
    if hasattr(model, "layer1"):
        return [f"layer{i}" for i in range(1, 5)]
    return [f"blocks.{i}" for i in range(len(model.blocks))]


@pytest.mark.parametrize("name, block_type, n_blocks", [("resnet18", BasicBlock, 8),
                                                        ("efficientnet_lite0", (DepthwiseSeparableConv,
                                                                                InvertedResidual), 16)])
def test_default_sweep_covers_every_stage_and_block(name, block_type, n_blocks):
    model = timm.create_model(name)
    sweep = sweep_layers(model)
    modules = set(sweep.layers.values())
    assert set(_stage_outputs(model)) <= modules
    blocks = [n for n, m in model.named_modules() if isinstance(m, block_type)]
    assert len(blocks) == n_blocks
    # every block's output is swept: by name, or as its stage (the stage's output is its last block's)
    for b in blocks:
        stage = b.rpartition(".")[0]
        last = stage + "." + list(dict(model.get_submodule(stage).named_children()))[-1]
        assert b in modules or (b == last and stage in modules), b
    depths = list(sweep.depth.values())
    assert depths[0] == 0.0 and depths[-1] == 1.0 and depths == sorted(depths)


def test_areas_and_cap():
    model = timm.create_model("efficientnet_lite0")
    assert list(sweep_layers(model, "areas").layers) == ["V1", "V2", "V4", "IT"]
    full = sweep_layers(model)
    capped = sweep_layers(model, max_layers=4)
    assert len(capped) == 4
    assert list(capped.layers)[0] == list(full.layers)[0] and list(capped.layers)[-1] == list(full.layers)[-1]
    assert all(capped.depth[k] == full.depth[k] for k in capped.layers)
    with pytest.raises(ValueError, match="max_layers"):
        sweep_layers(model, max_layers=0)


def test_brain_models_sweep_their_named_areas():
    sweep = sweep_layers(nr.create_model("vone_cornet_s"))
    assert sweep.layers == {"V1": "vone_block", "V2": "backbone.V2", "V4": "backbone.V4", "IT": "backbone.IT"}


def test_best_bundled_layer_is_chosen_among_the_sweep():
    torch.manual_seed(0)
    model = timm.create_model("resnet18").eval()
    sweep = sweep_layers(model)
    table = brain_scores(model, ["kriegeskorte92"], image_size=64)
    assert {r["layer"] for r in table} == set(sweep.layers)
    best = table.best(("dataset", "rdm_set", "region"))
    assert len(best) and all(r["layer"] in sweep.layers and r["split"] == "test" for r in best)
    assert all(r["depth"] == sweep.depth[r["layer"]] for r in best)
