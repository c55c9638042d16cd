import lightning as L
import pytest
import torch

from conftest import make_tiny_net
from fixtures.neural import make_brain
from neuroreg.alignment import CKALoss
from neuroreg.training import BrainRegularizedModule
from neuroreg.data import GratingsDataModule, JointSampler
from neuroreg.data import sampling


def test_sampler_gives_each_rank_its_own_batches(monkeypatch):
    pool = torch.arange(20)
    per_rank = []
    for rank in range(2):
        monkeypatch.setattr(sampling, "_world", lambda rank=rank: (2, rank))
        s = JointSampler(50, 8, pool, 4, seed=1)
        assert len(s) == 24  # 3 full batches per rank; the 2 leftover images are dropped
        per_rank.append(list(s))
    task = [k[0] for keys in per_rank for k in keys]
    assert len(task) == len(set(task)) == 48
    neural0 = [k[1] for k in per_rank[0][:4]]
    neural1 = [k[1] for k in per_rank[1][:4]]
    assert neural0 != neural1 and all(n >= 0 for n in neural0 + neural1)


@pytest.mark.slow
def test_ddp_gloo_two_processes(tmp_path):
    brain = make_brain()
    module = BrainRegularizedModule(make_tiny_net(), [CKALoss("IT", brain, weight=1.0)], lr=0.02)
    dm = GratingsDataModule(n_train=64, n_val=16, neural=brain, neural_batch_size=6, batch_size=8,
                            image_size=16, seed=0)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = L.Trainer(max_steps=4, accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, val_check_interval=4)
    trainer.fit(module, dm)
    # ddp_spawn hands the trained weights and the logged metrics back to this process
    assert not torch.equal(before["backbone.IT.0.weight"], module.state_dict()["backbone.IT.0.weight"])
    assert 0 <= float(trainer.callback_metrics["val/acc1"]) <= 1
    assert torch.isfinite(trainer.callback_metrics["val/cka_IT"])
