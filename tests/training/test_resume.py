import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from conftest import make_tiny_net
from neuroreg.alignment import CKALoss
from neuroreg.training import BrainRegularizedModule
from neuroreg.data import GratingsDataModule

TOTAL, KILL_AT = 11, 3  # 8 batches per epoch: the kill is mid-epoch and the run crosses an epoch boundary


class _Killed(RuntimeError):
    pass


class _KillAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise _Killed(f"killed before step {self.step + 1}")


def _run(root, brain, ckpt_path=None, extra=(), noise=0.0):
    L.seed_everything(0)
    module = BrainRegularizedModule(make_tiny_net(seed=1, noise=noise), [CKALoss("IT", brain, weight=0.5)], lr=0.05,
                                    warmup_steps=2)
    dm = GratingsDataModule(n_train=64, n_val=16, neural=brain, neural_batch_size=8, batch_size=8,
                            image_size=16, seed=3)
    ckpt = ModelCheckpoint(dirpath=str(root / "checkpoints"), every_n_train_steps=KILL_AT, save_last=True,
                           save_top_k=-1, filename="step{step}", auto_insert_metric_name=False)
    trainer = L.Trainer(max_steps=TOTAL, accelerator="cpu", devices=1, default_root_dir=str(root), logger=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        deterministic=True, callbacks=[ckpt, *extra])
    trainer.fit(module, dm, ckpt_path=ckpt_path)
    return trainer, module


@pytest.mark.parametrize("noise", [0.0, 0.3], ids=["deterministic", "stochastic"])
def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path, brain, noise):
    full_trainer, full = _run(tmp_path / "full", brain, noise=noise)
    with pytest.raises(_Killed):
        _run(tmp_path / "killed", brain, extra=[_KillAt(KILL_AT)], noise=noise)
    ckpts = sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and f"step{KILL_AT}.ckpt" in ckpts, ckpts
    resumed_trainer, resumed = _run(tmp_path / "killed", brain, ckpt_path="last", noise=noise)
    assert resumed_trainer.global_step == full_trainer.global_step == TOTAL
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for key in ("val/acc1", "val/loss", "val/cka_IT"):
        assert float(full_trainer.callback_metrics[key]) == float(resumed_trainer.callback_metrics[key]), key
    opt_a = full_trainer.optimizers[0].state_dict()["state"]
    opt_b = resumed_trainer.optimizers[0].state_dict()["state"]
    assert all(torch.equal(opt_a[i]["momentum_buffer"], opt_b[i]["momentum_buffer"]) for i in opt_a)
