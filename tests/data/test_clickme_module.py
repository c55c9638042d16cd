"""ClickMe folder layout and ClickMeDataModule: maps from PNG and .npy, tokens, mixed batches, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fixtures.clickme import write_clickme_shard
from neuroreg.data import ClickMeDataModule, ClickMeFolder, clickme_dataset
from neuroreg.data.clickme import prepare_heatmap, resize_bilinear
from neuroreg.errors import DataFormatError, ShapeError

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _folder(path, n=4, maps=("png", "npy", None, "npy3"), labels=None):
    """``path/{images,heatmaps,labels.csv}``: n images (40 x 30), maps of the given kinds (None: no map)."""
    rng = np.random.default_rng(0)
    (path / "images").mkdir(parents=True)
    (path / "heatmaps").mkdir()
    rows = ["image,label"]
    for i in range(n):
        name = f"im{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path / "images" / name)
        kind = maps[i % len(maps)]
        heat = rng.uniform(0, 200, (30, 40)).astype(np.float32)
        if kind == "png":
            Image.fromarray(heat.astype(np.uint8)).save(path / "heatmaps" / f"im{i}.png")
        elif kind == "npy":
            np.save(path / "heatmaps" / f"im{i}.npy", heat)
        elif kind == "npy3":
            np.save(path / "heatmaps" / f"im{i}.npy", heat[..., None])
        rows.append(f"{name},{(labels or list(range(n)))[i]}")
    (path / "labels.csv").write_text("\n".join(rows) + "\n")
    return path


# ----------------------------------------------------------------------------- folder layout
def test_folder_items_and_tokens(tmp_path):
    data = ClickMeFolder(_folder(tmp_path / "f"), image_size=16)
    assert len(data) == 4 and data.tokens.tolist() == [1.0, 1.0, 0.0, 1.0]
    for i in range(4):
        image, heatmap, token, label = data[i]
        assert image.shape == (3, 16, 16) and heatmap.shape == (16, 16) and label == i
        assert 0 <= float(image.min()) and float(image.max()) <= 1
        assert token == data.tokens[i]
    assert torch.count_nonzero(data[2][1]) == 0
    # a PNG map is read in its levels and resized as the release resizes
    png = torch.from_numpy(np.asarray(Image.open(tmp_path / "f" / "heatmaps" / "im0.png"), dtype=np.float32))
    torch.testing.assert_close(data[0][1], resize_bilinear(png, (16, 16)))
    npy = torch.from_numpy(np.load(tmp_path / "f" / "heatmaps" / "im3.npy")[..., 0])
    torch.testing.assert_close(data[3][1], resize_bilinear(npy, (16, 16)))
    prepared = ClickMeFolder(tmp_path / "f", image_size=16, prepare_maps=True)
    torch.testing.assert_close(prepared[3][1], prepare_heatmap(npy, 16))


def test_folder_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"labels\.csv"):
        ClickMeFolder(tmp_path)
    folder = _folder(tmp_path / "a")
    (folder / "images" / "im1.png").unlink()
    with pytest.raises(DataFormatError, match=r"1 image\(s\) listed .* missing .* \['im1.png'\]"):
        ClickMeFolder(folder)
    folder = _folder(tmp_path / "b", labels=[0, 1, -1, 2.5])
    with pytest.raises(DataFormatError, match=r"labels must be integers >= 0; first .*\(4, 'im2.jpg', '-1.0'\)"):
        ClickMeFolder(folder)
    folder = _folder(tmp_path / "c")
    with pytest.raises(DataFormatError, match="below num_classes=3"):
        ClickMeFolder(folder, num_classes=3)
    (folder / "labels.csv").write_text("name,class\nim0.jpg,0\n")
    with pytest.raises(DataFormatError, match=r"missing column\(s\) \['image', 'label'\]"):
        ClickMeFolder(folder)


def test_folder_bad_maps(tmp_path):
    folder = _folder(tmp_path / "f")
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(folder / "heatmaps" / "im0.png")
    with pytest.raises(DataFormatError, match=r"im0\.png: a heatmap PNG must have one channel; it has mode 'RGB'"):
        ClickMeFolder(folder)[0]
    np.save(folder / "heatmaps" / "im1.npy", np.zeros((30, 40, 3), np.float32))
    with pytest.raises(ShapeError, match=r"im1\.npy: a heatmap must be a numeric \(H, W\) .* got shape \(30, 40, 3\)"):
        ClickMeFolder(folder)[1]
    np.save(folder / "heatmaps" / "im3.npy", np.full((30, 40), np.nan, np.float32))
    with pytest.raises(DataFormatError, match=r"im3\.npy: the heatmap holds NaN"):
        ClickMeFolder(folder)[3]


def test_root_without_split(tmp_path):
    _folder(tmp_path / "val")
    assert isinstance(clickme_dataset(tmp_path, "val", image_size=8), ClickMeFolder)
    with pytest.raises(FileNotFoundError, match=r"has no train data: expected train-<i>\.tfrecords"):
        clickme_dataset(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="ClickMe root .* does not exist"):
        clickme_dataset(tmp_path / "absent", "val")


# ----------------------------------------------------------------------------- the data module
def _plain(path, classes=("a", "b", "c"), per_class=3):
    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        for c in classes:
            (path / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path / split / c / f"{i}.png")
    return path


@pytest.fixture
def roots(tmp_path):
    root = tmp_path / "clickme"
    root.mkdir()
    write_clickme_shard(root / "train-0.tfrecords", [0, 1, 2, 0, 1, 2], seed=3)
    write_clickme_shard(root / "val-0.tfrecords", [2, 1], seed=4)
    return root, _plain(tmp_path / "plain")


def _module(root, images=None, seed=0, **kwargs):
    dm = ClickMeDataModule(str(root), images=None if images is None else str(images), batch_size=5, image_size=16,
                           num_workers=0, seed=seed, num_classes=3, **kwargs)
    dm.use_model(_Contract())
    return dm


class _Contract(torch.nn.Module):
    pretrained_cfg = {"input_size": (3, 16, 16), "mean": MEAN, "std": STD}


def test_mixed_batches_tokens_and_format(roots):
    root, plain = roots
    dm = _module(root, plain)
    batches = list(dm.train_dataloader())
    assert len(batches) == (6 + 9) // 5                               # the last incomplete batch dropped
    images, heatmaps, tokens, labels = batches[0]
    assert images.shape == (5, 3, 16, 16) and images.dtype == torch.float32
    assert heatmaps.shape == (5, 16, 16) and tokens.shape == (5,) and tokens.dtype == torch.float32
    assert labels.dtype == torch.long
    tokens = torch.cat([b[2] for b in batches])
    heatmaps = torch.cat([b[1] for b in batches])
    assert tokens.sum() == 6 and set(tokens.tolist()) == {0.0, 1.0}
    assert torch.all(heatmaps[tokens == 0] == 0) and torch.all(heatmaps[tokens == 1].flatten(1).amax(1) > 0)
    assert any(0 < float(b[2].sum()) < 5 for b in batches)           # ClickMe and plain images share batches
    # normalised with the model's mean/std: [0, 1] pixels map into [-2, 2]
    assert float(images.min()) >= -2 - 1e-6 and float(images.max()) <= 2 + 1e-6 and float(images.min()) < 0
    val = list(dm.val_dataloader())
    assert sum(len(b[3]) for b in val) == 2 + 9
    assert torch.cat([b[2] for b in val]).tolist() == [1.0] * 2 + [0.0] * 9


def test_seeded_order(roots):
    root, plain = roots

    def order(seed, epochs=1):
        dm = _module(root, plain, seed=seed)
        loader = dm.train_dataloader()
        return [torch.cat([b[3] for b in loader]).tolist() + torch.cat([b[2] for b in loader]).tolist()
                for _ in range(epochs)]

    first = order(0, epochs=2)
    assert first == order(0, epochs=2)
    assert first[0] != first[1]                      # a new permutation each epoch
    assert first[0] != order(1)[0]
    a = list(_module(root, plain, seed=5).train_dataloader())[0][0]
    b = list(_module(root, plain, seed=5).train_dataloader())[0][0]
    torch.testing.assert_close(a, b)                 # the same random crops


def test_clickme_only_and_unnormalised(roots):
    root, _ = roots
    dm = ClickMeDataModule(str(root), batch_size=3, image_size=16, num_workers=0, normalize=False, num_classes=3)
    images, heatmaps, tokens, labels = next(iter(dm.train_dataloader()))
    assert torch.all(tokens == 1) and 0 <= float(images.min()) and float(images.max()) <= 1
    assert dm.num_classes == 3
    triples = list(dm.iter_val(batch_size=1))
    assert [t[2].tolist() for t in triples] == [[2], [1]]
    assert triples[0][0].shape == (1, 3, 16, 16) and triples[0][1].shape == (1, 16, 16)


def test_module_bad_inputs(roots, tmp_path):
    root, plain = roots
    with pytest.raises(DataFormatError, match=r"has 3 class folders but ClickMe labels index num_classes=4"):
        ClickMeDataModule(str(root), images=str(plain), num_classes=4, image_size=16, num_workers=0,
                          normalize=False).train_dataloader()
    with pytest.raises(FileNotFoundError, match=r"plain image folder .*nowhere.*train"):
        _module(root, tmp_path / "nowhere").train_dataloader()
    with pytest.raises(ValueError, match="fewer than batch_size=64"):
        ClickMeDataModule(str(root), image_size=16, num_workers=0, num_classes=3).train_dataloader()
    with pytest.raises(DataFormatError, match=r"record 2: label 2 is outside \[0, 2\)"):
        list(ClickMeDataModule(str(root), image_size=16, batch_size=3, num_workers=0, normalize=False,
                               num_classes=2).train_dataloader())
    with pytest.raises(ValueError, match="batch_size must be >= 1; got 0"):
        ClickMeDataModule(str(root), batch_size=0)
    with pytest.raises(FileNotFoundError, match="ClickMe root"):
        ClickMeDataModule(str(tmp_path / "none")).setup("fit")


class _Tiny(__import__("lightning").LightningModule):
    """A linear classifier whose step reads the (images, heatmaps, tokens, labels) batch."""

    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
        self.backbone.pretrained_cfg = {"input_size": (3, 16, 16), "mean": MEAN, "std": STD}
        self.seen = []

    def training_step(self, batch, _):
        images, heatmaps, tokens, labels = batch
        self.seen.append(tokens.clone())
        return torch.nn.functional.cross_entropy(self.backbone(images), labels) + 0 * heatmaps.sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_fit_takes_the_backbone_contract(roots):
    import lightning as L
    root, plain = roots
    dm = ClickMeDataModule(str(root), images=str(plain), batch_size=5, image_size=16, num_workers=0, num_classes=3)
    model = _Tiny()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    assert len(model.seen) == 3 and float(torch.cat(model.seen).sum()) == 6     # every ClickMe image once
    assert dm.preprocessing.mean == MEAN and dm.preprocessing.std == STD
