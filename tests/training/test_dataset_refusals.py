"""Fine-tuning data sets read what the docs promise (encodings, any class-folder names, odd file names) and
refuse what cannot train a classifier faithfully, naming the file."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from finetune.finetune_layouts import make_eurosat, make_isic
from PIL import Image
from torchvision.datasets import ImageFolder

from neuroreg._utils.checks import check_class_weights
from neuroreg.brain import read_image
from neuroreg.errors import DataFormatError, NonFiniteError
from neuroreg.data import EuroSATDataModule, ImageFolderDataModule, ISIC2019DataModule
from neuroreg.finetune import FinetuneModule

FAST = dict(batch_size=4, image_size=32, num_workers=0, model_name="cornet_z")
GT = "ISIC_2019_Training_GroundTruth.csv"
META = "ISIC_2019_Training_Metadata.csv"


@pytest.fixture
def isic(tmp_path):
    return make_isic(tmp_path / "isic")["root"]


def _frame(root) -> pd.DataFrame:
    return ISIC2019DataModule(str(root), **FAST).splits_frame()


def test_isic_metadata_in_latin1_is_read_with_a_warning(isic):
    text = (isic / META).read_text().replace("anterior torso", "tête et cou")
    (isic / META).write_text(text, encoding="utf-8")
    expected = _frame(isic)
    (isic / META).write_bytes(text.encode("latin-1"))
    # Before: UnicodeDecodeError from pandas, naming no file.
    with pytest.warns(UserWarning, match=rf"{META} is not UTF-8 .*read it as Latin-1"):
        frame = _frame(isic)
    pd.testing.assert_frame_equal(frame, expected)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-32"])
def test_isic_ground_truth_with_a_byte_order_mark_is_read(isic, encoding):
    expected = _frame(isic)
    (isic / GT).write_bytes((isic / GT).read_text().encode(encoding))   # Python writes the mark first
    pd.testing.assert_frame_equal(_frame(isic), expected)


def test_isic_latin1_ground_truth_is_read_with_a_warning(isic):
    expected = _frame(isic)
    (isic / GT).write_bytes((isic / GT).read_text().replace("ISIC_0000000", "ISIC_000000é").encode("latin-1"))
    (isic / "ISIC_2019_Training_Input" / "ISIC_0000000.jpg").rename(
        isic / "ISIC_2019_Training_Input" / "ISIC_000000é.jpg")
    with pytest.warns(UserWarning, match=rf"{GT} is not UTF-8"):
        frame = _frame(isic)
    assert "ISIC_000000é" in set(frame.image) and len(frame) == len(expected)


def test_header_only_or_empty_ground_truth_is_a_clear_error(isic):
    path = isic / GT
    path.write_text(path.read_text().splitlines()[0] + "\n")
    # Before: numpy's _UFuncNoLoopError traceback.
    with pytest.raises(DataFormatError, match=rf"^{path}: lists no image \(only the header line\)"):
        _frame(isic)
    path.write_bytes(b"")
    with pytest.raises(DataFormatError, match=rf"^{path}: the file is empty"):
        _frame(isic)


def test_single_class_isic_is_refused(isic):
    path = isic / GT
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0]] + [line for line in lines[1:] if line.split(",")[1] == "1.0"]) + "\n")
    # Before: a 1-output classifier was trained.
    with pytest.raises(DataFormatError, match=r"ISIC2019DataModule \(.*isic\): a classifier needs at least 2 "
                                              r"classes; found 1 \(\['MEL'\]\)"):
        _frame(isic)


def test_single_class_eurosat_folder_is_refused(tmp_path):
    root = make_eurosat(tmp_path / "e", per_class=10, classes=("Forest",))
    with pytest.raises(DataFormatError, match=r"at least 2 classes; found 1 \(\['Forest'\]\)"):
        EuroSATDataModule(str(root), classes="folders", **FAST).setup()


@pytest.mark.parametrize("layout", ["", "2750"])
def test_classes_folders_takes_folders_of_any_name(tmp_path, layout):
    root = make_eurosat(tmp_path / "e", layout=layout, per_class=10, classes=("cats", "dogs", "newts"))
    # Before: "no EuroSAT class folders" although classes='folders' promises any folders.
    dm = EuroSATDataModule(str(root), classes="folders", **FAST)
    assert dm.num_classes == 3 and dm.classes == ["cats", "dogs", "newts"]
    with pytest.raises(DataFormatError, match=r"no EuroSAT class folders .*classes='folders'"):
        EuroSATDataModule(str(root), **FAST).setup()
    with pytest.raises(DataFormatError, match="no class folders with images"):
        EuroSATDataModule(str(tmp_path / "e" / "cats" if not layout else tmp_path / "e" / "2750" / "cats"),
                          classes="folders", **FAST).setup()


def test_a_eurosat_file_name_that_is_not_utf8_is_read_and_recorded(tmp_path):
    root = make_eurosat(tmp_path / "e", per_class=10)
    forest = os.fsencode(root / "2750" / "Forest")
    os.rename(forest + b"/Forest_3.jpg", forest + b"/Forest_\xff3.jpg")
    # Before: UnicodeEncodeError "surrogates not allowed" from pandas.
    dm = EuroSATDataModule(str(root), **FAST)
    frame = dm.splits_frame()
    assert "Forest/Forest_\\xff3.jpg" in set(frame.image) and len(frame) == 100
    row = int(np.flatnonzero(dm.table["image"].to_numpy() == "Forest/Forest_\\xff3.jpg")[0])
    assert dm._load_fn(row).size == (64, 64)
    path = dm.write_splits(tmp_path / "splits.csv")
    again = EuroSATDataModule(str(root), splits=str(path), seed=5, **FAST)
    pd.testing.assert_frame_equal(again.splits_frame(), frame)


def test_negative_or_non_finite_class_weights_are_refused():
    # Before: a negative weight was accepted (the loss then rewards that class's errors).
    with pytest.raises(ValueError, match=r"class_weights must be >= 0 .*class_weights\[1\] is -0.5"):
        FinetuneModule("test_resnet", num_classes=3, class_weights=[1.0, -0.5, 2.0])
    with pytest.raises(ValueError, match="at least one weight > 0"):
        FinetuneModule("test_resnet", num_classes=2, class_weights=[0.0, 0.0])
    with pytest.raises(NonFiniteError, match="class_weights contains non-finite"):
        check_class_weights("class_weights", [1.0, float("nan")])
    with pytest.raises(ValueError, match="class_weights must be 'auto', None or a list"):
        FinetuneModule("test_resnet", num_classes=2, class_weights="balanced")
    assert torch.equal(check_class_weights("w", [0.0, 2.0]), torch.tensor([0.0, 2.0]))


def _folder(root: Path, classes=("cat", "dog"), n: int = 4) -> Path:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((12, 12, 3), 30 * c + i, np.uint8)).save(root / name / f"{i}.jpg")
    return root


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_corrupt_jpeg_in_an_image_folder_names_the_file(tmp_path, damage):
    root = _folder(tmp_path / "task")
    bad = root / "dog" / "2.jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[:len(data) // 2] if damage == "truncated" else b"\x00not a jpeg\x00" * 9)
    with pytest.raises(DataFormatError, match=rf"^{bad}: cannot read the image: it is corrupt, truncated"):
        read_image(bad)
    # The labelled-folder reader of `evaluate --task-data` and of ImageFolderDataModule.
    folder = ImageFolder(str(root), loader=read_image)
    with pytest.raises(DataFormatError, match=rf"^{bad}: cannot read the image"):
        folder[folder.samples.index((str(bad), 1))]
    dm = ImageFolderDataModule(root=str(root), val_fraction=0.25, batch_size=2, image_size=16, num_workers=0,
                               model_name="cornet_z")
    dm.setup("fit")
    with pytest.raises(DataFormatError, match=rf"^{bad}: cannot read the image"):
        for _ in dm.val_dataloader():
            pass
        for _ in dm.train_dataloader():
            pass


def test_a_single_class_image_folder_is_refused(tmp_path):
    root = _folder(tmp_path / "one", classes=("cat",), n=6)
    with pytest.raises(DataFormatError, match=r"ImageFolderDataModule \(.*one\): a classifier needs at least 2 "
                                              r"classes; found 1 \(\['cat'\]\)"):
        ImageFolderDataModule(root=str(root), batch_size=2, image_size=16, num_workers=0).setup("fit")


def test_a_splits_file_saved_by_a_spreadsheet_is_read(tmp_path):
    root = make_eurosat(tmp_path / "e", per_class=10)
    frame = EuroSATDataModule(str(root), **FAST).splits_frame()
    path = tmp_path / "splits.csv"
    path.write_bytes(frame.to_csv(index=False).encode("utf-16"))   # "Unicode text": UTF-16 with a byte-order mark
    # Before: UnicodeDecodeError naming no file.
    pd.testing.assert_frame_equal(EuroSATDataModule(str(root), splits=str(path), seed=9, **FAST).splits_frame(), frame)
    path.write_bytes(b"")
    with pytest.raises(DataFormatError, match=rf"^{path}: the file is empty"):
        EuroSATDataModule(str(root), splits=str(path), **FAST).setup()
