"""The forgetting report's start cache: same rows as a full report, the start network not run again, safe keys."""

import copy
import logging
import os

import lightning as L
import pytest
import torch

from neuroreg.finetune import FinetuneModule
from neuroreg.data import PatternDataModule
from neuroreg.finetune.forgetting import forgetting_report
from neuroreg.finetune.forgetting_cache import dataset_fingerprint, model_fingerprint

DATA = dict(batch_size=4, image_size=32, num_workers=0, model_name="test_resnet")
KW = dict(probe_sets=["kriegeskorte92"], reference="kriegeskorte92", image_size=32, batch_size=46)


def _tuned(dm, tmp_path, seed: int):
    L.seed_everything(seed, verbose=False)
    module = FinetuneModule("test_resnet", num_classes=6, strategy="full", lr=1e-2)
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=dm)
    return module.start_model(), module.backbone


def _forward_counter(model):
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


def _rows(table):
    df = table.to_pandas().drop(columns=[c for c in ("n_probe_train",) if c not in table.to_pandas()])
    return df.sort_values(list(df.columns[:6].drop("score", errors="ignore"))).reset_index(drop=True)


@pytest.fixture(scope="module")
def patterns():
    dm = PatternDataModule(n_images=60, **DATA)
    dm.setup("fit")
    return dm


def test_warm_report_equals_a_full_one_without_running_the_start(patterns, tmp_path):
    start, first = _tuned(patterns, tmp_path / "a", seed=0)
    _, second = _tuned(patterns, tmp_path / "b", seed=1)        # another run from the same start
    cache = tmp_path / "cache"
    cold = forgetting_report(start, first, task_data=patterns, start_cache=cache, **KW)
    assert len(list(cache.glob("start_*.pt"))) == 1
    calls, handle = _forward_counter(start)
    try:
        warm = forgetting_report(start, second, task_data=patterns, start_cache=cache, **KW)
    finally:
        handle.remove()
    assert calls == []                                          # the start network was not run
    full = forgetting_report(start, second, task_data=patterns, **KW)
    assert set(warm.to_pandas()["metric"]) >= {"task_accuracy", "balanced_accuracy", "cka_to_start", "crsa",
                                               "retention_accuracy"}
    a, b = warm.to_pandas(), full.to_pandas()
    assert a.drop(columns="score").equals(b.drop(columns="score"))
    assert a["score"].tolist() == pytest.approx(b["score"].tolist(), abs=1e-12, nan_ok=True)
    # the cold report is a full report too
    ref = forgetting_report(start, first, task_data=patterns, **KW).to_pandas()
    assert cold.to_pandas()["score"].tolist() == pytest.approx(ref["score"].tolist(), abs=1e-12, nan_ok=True)


def test_other_weights_or_settings_make_a_new_entry(patterns, tmp_path):
    start, tuned = _tuned(patterns, tmp_path, seed=0)
    cache = tmp_path / "cache"
    forgetting_report(start, tuned, start_cache=cache, **KW)
    forgetting_report(start, tuned, start_cache=cache, **{**KW, "seed": 1})
    other = copy.deepcopy(start)
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1e-3
    assert model_fingerprint(other) != model_fingerprint(start)
    forgetting_report(other, tuned, start_cache=cache, **KW)
    forgetting_report(start, tuned, task_data=patterns, start_cache=cache, **KW)
    assert len(list(cache.glob("start_*.pt"))) == 4


def test_unreadable_cache_file_is_recomputed_with_a_warning(patterns, tmp_path, caplog):
    start, tuned = _tuned(patterns, tmp_path, seed=0)
    cache = tmp_path / "cache"
    ref = forgetting_report(start, tuned, start_cache=cache, **KW).to_pandas()["score"].tolist()
    (path,) = cache.glob("start_*.pt")
    path.write_bytes(b"not a torch file")
    with caplog.at_level(logging.WARNING, logger="neuroreg.finetune.forgetting_cache"):
        again = forgetting_report(start, tuned, start_cache=cache, **KW).to_pandas()["score"].tolist()
    assert "unreadable" in caplog.text and path.name in caplog.text
    assert again == pytest.approx(ref, abs=1e-12)
    assert torch.load(path, weights_only=True)["format"] == 1           # rewritten


def test_data_without_an_identity_is_not_cached(tmp_path, caplog):
    start = FinetuneModule("test_resnet", num_classes=6).start_model()
    data = torch.utils.data.TensorDataset(torch.rand(12, 3, 32, 32), torch.arange(12) % 6)
    assert dataset_fingerprint(data) is None
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="neuroreg.finetune.forgetting"):
        forgetting_report(start, copy.deepcopy(start), original_data=data, start_cache=cache,
                          **{**KW, "reference": None})
    assert "cannot be fingerprinted" in caplog.text and not list(cache.glob("start_*.pt"))


def test_fingerprint_follows_the_image_files(tmp_path):
    from torchvision.datasets import ImageFolder
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(2):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / c / f"{i}.png")
    before = dataset_fingerprint(ImageFolder(str(tmp_path)))
    assert before is not None and before == dataset_fingerprint(ImageFolder(str(tmp_path)))
    Image.new("RGB", (8, 8), (0, 200, 0)).save(tmp_path / "a" / "0.png")
    os.utime(tmp_path / "a" / "0.png", ns=(1, 1))
    assert dataset_fingerprint(ImageFolder(str(tmp_path))) != before
    assert dataset_fingerprint(torch.utils.data.Subset(ImageFolder(str(tmp_path)), [0, 1])) != \
        dataset_fingerprint(torch.utils.data.Subset(ImageFolder(str(tmp_path)), [0, 2]))


def test_a_stochastic_front_end_gives_the_same_rows_cold_warm_and_uncached(tmp_path):
    """VOneBlock noise is seeded per pass: the first report on fresh networks, a report reading the stored start
    side and one without a cache draw the same noise, so their rows are equal."""
    import neuroreg as nr

    kw = {"image_size": 64, "simple_channels": 8, "complex_channels": 8, "times": (1, 1, 1)}
    start = nr.create_model("vone_cornet_s", **kw)
    tuned = copy.deepcopy(start)
    with torch.no_grad():
        for p in tuned.backbone.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    report = dict(KW, image_size=64, batch_size=40)
    cold = forgetting_report(start, tuned, start_cache=tmp_path, **report).to_pandas()
    warm = forgetting_report(start, tuned, start_cache=tmp_path, **report).to_pandas()
    full = forgetting_report(start, tuned, **report).to_pandas()
    assert (cold["metric"] == "cka_to_start").sum() == 4
    v1 = cold[(cold["metric"] == "cka_to_start") & (cold["layer"] == "V1")]["score"]
    assert v1.tolist() == [1.0]                                 # the V1 bank is fixed: same noise, same maps
    for other in (warm, full):
        assert other["score"].tolist() == pytest.approx(cold["score"].tolist(), abs=1e-12, nan_ok=True)
