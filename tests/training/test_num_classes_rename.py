"""num_classes, as timm and the rest of neuroreg name it; n_classes still works with a DeprecationWarning."""

import warnings
from pathlib import Path

import pytest
import torch
import yaml

from neuroreg.data import GratingsDataModule, GratingsDataset, PatternDataModule

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL = dict(n_train=16, n_val=8, batch_size=8, image_size=16)
PATTERNS = dict(n_images=24, batch_size=4, image_size=16, num_workers=0, normalize=False)


def test_num_classes_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = GratingsDataset(12, num_classes=3, image_size=16, seed=1)
        assert ds.num_classes == 3 and [ds[i][1] for i in range(4)] == [0, 1, 2, 0]
        assert GratingsDataset(12, 3, 16).num_classes == 3          # still the second positional argument
        assert GratingsDataset(12).num_classes == 4
        assert GratingsDataModule(num_classes=3, **SMALL).num_classes == 3
        assert GratingsDataModule(**SMALL).num_classes == 4
        assert GratingsDataModule(**SMALL).classes == []              # nothing built before it is asked for
        pm = PatternDataModule(num_classes=3, **PATTERNS)
        assert pm.num_classes == 3 and pm.classes == ["checkerboard", "dots", "rings"]
        assert PatternDataModule(**PATTERNS).num_classes == 6


def test_n_classes_still_works_and_warns():
    with pytest.warns(DeprecationWarning, match="GratingsDataset: n_classes= is deprecated; use num_classes="):
        old = GratingsDataset(12, n_classes=3, image_size=16, seed=1)
    new = GratingsDataset(12, num_classes=3, image_size=16, seed=1)
    assert old.num_classes == 3 and all(torch.equal(old[i][0], new[i][0]) for i in range(6))
    with pytest.warns(DeprecationWarning, match="GratingsDataset.n_classes is deprecated; use num_classes"):
        assert old.n_classes == 3

    with pytest.warns(DeprecationWarning, match="GratingsDataModule: n_classes= is deprecated"):
        dm = GratingsDataModule(n_classes=3, **SMALL)
    with pytest.warns(DeprecationWarning, match="GratingsDataModule.n_classes is deprecated"):
        assert dm.n_classes == 3
    assert dm.num_classes == 3 and dm.classes == ["0deg", "60deg", "120deg"]

    with pytest.warns(DeprecationWarning, match="PatternDataModule: n_classes= is deprecated"):
        pm = PatternDataModule(n_classes=3, **PATTERNS)
    with pytest.warns(DeprecationWarning, match="PatternDataModule.n_classes is deprecated"):
        assert pm.n_classes == 3
    assert pm.num_classes == 3


def test_both_names_must_agree_and_errors_name_the_new_one():
    with pytest.raises(TypeError, match="give only num_classes"), pytest.warns(DeprecationWarning):
        GratingsDataset(12, num_classes=4, n_classes=3)
    with pytest.raises(TypeError, match="give only num_classes"), pytest.warns(DeprecationWarning):
        GratingsDataModule(num_classes=4, n_classes=3)
    with pytest.raises(TypeError, match="give only num_classes"), pytest.warns(DeprecationWarning):
        PatternDataModule(n_images=24, num_classes=4, n_classes=3)
    with pytest.warns(DeprecationWarning):                            # the same value twice is accepted
        assert GratingsDataset(12, num_classes=3, n_classes=3).num_classes == 3
    with pytest.raises(ValueError, match="num_classes >= 2"):
        GratingsDataset(12, num_classes=1)
    with pytest.raises(ValueError, match=r"num_classes must be in \[2, 6\]; got 7"):
        PatternDataModule(n_images=24, num_classes=7)


def test_configs_say_num_classes_and_old_configs_still_load():
    from jsonargparse import ArgumentParser

    for name in ("train_tiny_cornet_z.yaml", "finetune_tiny.yaml"):
        assert "n_classes" not in (CONFIGS / name).read_text(), name
    cfg = yaml.safe_load((CONFIGS / "train_tiny_cornet_z.yaml").read_text())
    assert cfg["data"]["init_args"]["num_classes"] == 4
    for cls in (GratingsDataModule, PatternDataModule):
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls, "data")
        instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes   # renamed in 4.49
        extra = ["--data.normalize", "false"]
        assert instantiate(parser.parse_args(["--data.num_classes", "3", *extra])).data.num_classes == 3
        with pytest.warns(DeprecationWarning, match="n_classes= is deprecated"):
            data = instantiate(parser.parse_args(["--data.n_classes", "3", *extra])).data
        assert data.num_classes == 3
