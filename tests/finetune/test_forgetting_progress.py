"""The forgetting report says where it is: each section when it starts and how many seconds it took."""

import logging
import re

import lightning as L

from neuroreg.data import PatternDataModule
from neuroreg.finetune import FinetuneModule
from neuroreg.finetune.forgetting import forgetting_report

KW = dict(probe_sets=["kriegeskorte92"], reference="kriegeskorte92", image_size=32, batch_size=46)


def _start_and_tuned(tmp_path):
    dm = PatternDataModule(n_images=36, batch_size=4, image_size=32, num_workers=0, model_name="test_resnet")
    dm.setup("fit")
    L.seed_everything(0, verbose=False)
    module = FinetuneModule("test_resnet", num_classes=6, strategy="full", lr=1e-2)
    L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
              default_root_dir=str(tmp_path)).fit(module, datamodule=dm)
    return dm, module.start_model(), module.backbone


def test_each_section_says_when_it_starts_and_its_seconds_then_the_cache_is_named(tmp_path, caplog):
    dm, start, tuned = _start_and_tuned(tmp_path)
    said: list[str] = []
    forgetting_report(start, tuned, task_data=dm, start_cache=tmp_path / "cache", say=said.append, **KW)
    sections = ["new task: probes and the fine-tuned head", "probe images (kriegeskorte92): drift, cRSA, retention"]
    for section in sections:
        starts = [line for line in said if line.endswith(f"{section} ...")]
        ends = [line for line in said if re.search(re.escape(section) + r" done in \d+\.\d s$", line)]
        assert len(starts) == 1 and len(ends) == 1, said
        assert said.index(starts[0]) < said.index(ends[0])
    assert all(line.startswith("forgetting report (both networks)") for line in said)
    # the second report from the same start says it runs the fine-tuned network only; without ``say`` the
    # lines go to the module's logger
    with caplog.at_level(logging.INFO, logger="neuroreg.finetune.forgetting"):
        forgetting_report(start, tuned, task_data=dm, start_cache=tmp_path / "cache", **KW)
    lines = [r.getMessage() for r in caplog.records if r.name == "neuroreg.finetune.forgetting"]
    assert any("the start's side from the cache" in line and "done in" in line for line in lines), lines
