"""The data sets take num_classes, as timm and the rest of neuroreg name it; the old spelling n_classes is gone."""

import warnings

import pytest

from neuroreg.data import GratingsDataModule, GratingsDataset, PatternDataModule

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
        assert GratingsDataModule(**SMALL).classes == []              # nothing built before it is asked for
        pm = PatternDataModule(num_classes=3, **PATTERNS)
        assert pm.num_classes == 3 and pm.classes == ["checkerboard", "dots", "rings"]
        assert PatternDataModule(**PATTERNS).num_classes == 6


def test_the_old_spelling_is_refused():
    calls = [lambda: GratingsDataset(12, n_classes=3), lambda: GratingsDataModule(n_classes=3, **SMALL),
             lambda: PatternDataModule(n_classes=3, **PATTERNS)]
    for call in calls:
        with pytest.raises(TypeError, match="unexpected keyword argument 'n_classes'"):
            call()
    assert not hasattr(GratingsDataset(12), "n_classes")
