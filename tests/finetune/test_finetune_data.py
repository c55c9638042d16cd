from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from finetune_layouts import make_eurosat, make_isic
from sklearn.metrics import balanced_accuracy_score

from neuroreg.errors import DataFormatError
from neuroreg.data import EUROSAT_CLASSES, EuroSATDataModule, ISIC2019DataModule, PatternDataModule
from neuroreg.scoring.classification import balanced_accuracy
from neuroreg.finetune.finetune import balanced_accuracy_from_confusion
from neuroreg.data.splits import split_table

FAST = dict(batch_size=4, image_size=32, num_workers=0)


@pytest.mark.parametrize("layout", ["2750", "eurosat/2750", ""])
def test_eurosat_layouts_split_stratified_and_reusable(tmp_path, layout):
    root = make_eurosat(tmp_path / "eurosat_root", layout=layout, per_class=10)
    dm = EuroSATDataModule(str(root), **FAST)
    assert dm.num_classes == 10 and dm.classes == list(EUROSAT_CLASSES)
    frame = dm.splits_frame()
    assert len(frame) == 100 and list(frame.columns) == ["image", "split", "label"]
    counts = frame.groupby(["label", "split"]).size().unstack()
    assert (counts["train"] == 7).all() and (counts["val"] == 1).all() and (counts["test"] == 2).all()
    path = dm.write_splits(tmp_path / "splits.csv")
    again = EuroSATDataModule(str(root), splits=str(path), seed=123, **FAST)
    pd.testing.assert_frame_equal(again.splits_frame(), frame)
    x, y = dm.eval_dataset("test")[0]
    assert x.shape == (3, 32, 32) and 0 <= y < 10


def test_eurosat_budget_marks_unused(tmp_path):
    root = make_eurosat(tmp_path / "e", per_class=10)
    frame = EuroSATDataModule(str(root), n_per_class=3, **FAST).splits_frame()
    assert (frame[frame.split == "train"].groupby("label").size() == 3).all()
    assert (frame.split == "unused").sum() == 40


def test_eurosat_errors_name_the_offending_files(tmp_path):
    root = make_eurosat(tmp_path / "e", per_class=3)
    for f in (root / "2750" / "River").iterdir():
        f.unlink()
    with pytest.raises(DataFormatError, match=r"empty class folder.*River"):
        EuroSATDataModule(str(root), **FAST).setup()
    root2 = make_eurosat(tmp_path / "e2", per_class=3)
    (root2 / "2750" / "Forest" / "Forest_2.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataFormatError, match=r"unreadable EuroSAT image.*Forest_2\.jpg"):
        EuroSATDataModule(str(root2), **FAST).setup()
    root3 = make_eurosat(tmp_path / "e3", per_class=10, classes=EUROSAT_CLASSES[:9])
    with pytest.raises(DataFormatError, match=r"missing \['SeaLake'\]"):
        EuroSATDataModule(str(root3), **FAST).setup()
    assert EuroSATDataModule(str(root3), classes="folders", **FAST).num_classes == 9
    with pytest.raises(DataFormatError, match="no EuroSAT class folders"):
        EuroSATDataModule(str(tmp_path), **FAST).setup()


def test_split_with_an_absent_class_is_refused(tmp_path):
    root = make_eurosat(tmp_path / "e", per_class=2)   # 2 images per class cannot fill train, val and test
    with pytest.raises(DataFormatError, match=r"the '(val|test)' split has no image of class"):
        EuroSATDataModule(str(root), **FAST).setup()


def test_isic_grouped_by_lesion_and_balanced(tmp_path):
    info = make_isic(tmp_path / "isic", n_lesions_per_class=6, images_per_lesion=3, singles_per_class=4)
    dm = ISIC2019DataModule(str(info["root"]), **FAST)
    dm.setup()
    assert dm.classes == ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]     # UNK has no image
    frame = dm.splits_frame()
    assert list(frame.columns) == ["image", "split", "label", "lesion_id"]
    with_lesion = frame[frame.lesion_id != ""]
    assert (with_lesion.groupby("lesion_id")["split"].nunique() == 1).all()
    assert set(frame.split) == {"train", "val", "test"}
    for name, row in frame.set_index("image").iterrows():
        assert row.label == info["label_of"][name] and row.lesion_id == info["lesion_of"][name]
    # inverse-frequency weights n / (K n_c) on the training split, from the split itself
    train = frame[frame.split == "train"]
    counts = train.label.value_counts()
    expected = [len(train) / (8 * counts[c]) for c in dm.classes]
    np.testing.assert_allclose(dm.loss_weights().numpy(), expected, rtol=1e-6)


def test_isic_sampler_balances_the_training_draws(tmp_path):
    info = make_isic(tmp_path / "isic", n_lesions_per_class=6, images_per_lesion=3)
    gt = pd.read_csv(info["root"] / "ISIC_2019_Training_GroundTruth.csv")
    extra = gt[gt.NV == 1.0]
    dm = ISIC2019DataModule(str(info["root"]), balance="sampler", **FAST)
    dm.setup()
    labels = np.asarray([dm._train.labels[r] for r in dm._train.rows])
    assert dm.loss_weights() is None and len(extra)
    assert np.bincount(labels).min() > 0


@pytest.mark.parametrize("edit, message", [
    (lambda r: _rewrite(r / "ISIC_2019_Training_GroundTruth.csv", lambda t: t.replace(",VASC", ",VASCX", 1)),
     r"missing column\(s\) \['VASC'\]"),
    (lambda r: _rewrite(r / "ISIC_2019_Training_GroundTruth.csv",
                        lambda t: t.replace("1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0",
                                            "1.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0", 1)),
     r"not one-hot.*\(2, 'ISIC_0000000'"),
    (lambda r: (r / "ISIC_2019_Training_Input" / "ISIC_0000004.jpg").unlink(),
     r"missing from .*ISIC_0000004\.jpg"),
    (lambda r: (r / "ISIC_2019_Training_Input" / "ISIC_0000005.jpg").write_bytes(b"\x00" * 10),
     r"unreadable ISIC 2019 image.*ISIC_0000005\.jpg"),
    (lambda r: _rewrite(r / "ISIC_2019_Training_Metadata.csv", lambda t: t.replace("lesion_id", "lesion", 1)),
     r"Metadata\.csv: missing column\(s\) \['lesion_id'\]"),
])
def test_isic_errors_name_the_offending_rows(tmp_path, edit, message):
    info = make_isic(tmp_path / "isic")
    edit(info["root"])
    with pytest.raises(DataFormatError, match=message):
        ISIC2019DataModule(str(info["root"]), **FAST).setup()


def _rewrite(path: Path, fn) -> None:
    path.write_text(fn(path.read_text()))


def test_split_does_not_depend_on_row_order():
    rng = np.random.default_rng(0)
    images = np.array([f"img{i:03d}" for i in range(120)])
    labels = rng.integers(0, 4, 120)
    groups = np.array([f"g{i // 3}" for i in range(120)])
    a = dict(zip(images, split_table(images, labels, groups=groups, seed=3)))
    perm = rng.permutation(120)
    b = dict(zip(images[perm], split_table(images[perm], labels[perm], groups=groups[perm], seed=3)))
    assert a == b
    parts = pd.Series(a)
    assert (pd.Series(groups, index=images).groupby(parts).nunique() > 0).all()
    assert (pd.DataFrame({"g": groups, "s": parts[images].to_numpy()}).groupby("g")["s"].nunique() == 1).all()


def test_balanced_accuracy_matches_scikit_learn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 200)
    y[y == 3] = 4                                   # a class that never occurs
    pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, 5, 200))
    conf = torch.bincount(torch.as_tensor(y * 5 + pred), minlength=25).view(5, 5)
    assert float(balanced_accuracy_from_confusion(conf)) == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
    # from predicted labels, whatever they are (strings, a predicted class that is never true)
    names = np.array(["mel", "nv", "bcc", "ak", "bkl"])
    assert balanced_accuracy(names[pred], names[y]) == pytest.approx(balanced_accuracy_score(names[y], names[pred]),
                                                                     abs=1e-12)
    with pytest.raises(ValueError, match="one entry per sample"):
        balanced_accuracy(pred[:-1], y)


def test_pattern_domain_is_deterministic_and_labelled():
    dm = PatternDataModule(n_images=60, **FAST)
    a, la = dm.eval_dataset("train")[3]
    b, lb = PatternDataModule(n_images=60, **FAST).eval_dataset("train")[3]
    assert torch.equal(a, b) and la == lb and dm.num_classes == 6


def test_datasets_pickle_for_worker_processes(tmp_path):
    import pickle
    root = make_eurosat(tmp_path / "e", per_class=10)
    for dm in (EuroSATDataModule(str(root), **FAST), PatternDataModule(n_images=60, **FAST)):
        ds = dm.eval_dataset("test")
        clone = pickle.loads(pickle.dumps(ds))
        assert torch.equal(clone[0][0], ds[0][0])


def test_reused_splits_file_is_checked(tmp_path):
    root = make_eurosat(tmp_path / "e", per_class=10)
    path = EuroSATDataModule(str(root), **FAST).write_splits(tmp_path / "splits.csv")
    frame = pd.read_csv(path)
    frame.loc[3, "split"] = "holdout"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataFormatError, match=r"split must be one of .*\(5, '.*', 'holdout'\)"):
        EuroSATDataModule(str(root), splits=str(tmp_path / "bad.csv"), **FAST).setup()
    frame.drop(index=3).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataFormatError, match="does not list 1 image"):
        EuroSATDataModule(str(root), splits=str(tmp_path / "short.csv"), **FAST).setup()
