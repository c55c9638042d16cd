"""The end-of-run scorecard scales with the run (``final_budget``): a short run gets the reduced card, a run long
enough for the full card's estimate gets the full one; the estimate counts the attack suite's own runs."""

import lightning as L
import pytest
import torch
from torch import nn

from neuroreg.robustness.attacks import _specs
from neuroreg.training import BrainRegularizedModule, ScorecardCallback
from neuroreg.training.callbacks.scorecard_cost import final_attack_passes, final_evaluation_cost
from neuroreg.data import GratingsDataModule



class _Net(nn.Module):
    """Two areas and a linear read-out, 16 px inputs (a network small enough for the whole card in seconds)."""

    areas = {"V1": "V1", "IT": "IT"}

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.num_classes = 4
        self.V1 = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.IT = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(16, 4))

    def forward(self, x):
        return self.head(self.IT(self.V1(x)))


def _passes_of(spec, square_queries: int = 1000) -> int:
    """Forward-pass equivalents per image of one run of the suite: 3 per gradient step and EOT draw, the
    scoring pass; Square: its query bound and the scoring pass."""
    if spec.attack == "square":
        return square_queries + 1
    return 3 * spec.steps * spec.eot_iter + 1


@pytest.mark.parametrize("attacks,n_eps,steps,sanity", [(["pgd"], 3, 10, True), (["pgd"], 1, 5, False),
                                                        (["pgd", "fgsm"], 2, 7, True), (["pgd"], 1, 10, True)])
def test_final_attack_passes_count_the_suites_own_runs(attacks, n_eps, steps, sanity):
    eps = [(i + 1) / 255 for i in range(n_eps)]
    specs = _specs(attacks, eps, "Linf", False, pgd_steps=steps, apgd_steps=100, eot_iter=10, sanity=sanity)
    expected = 1 + sum(_passes_of(s) if s.attack != "fgsm" else 4 for s in specs)
    assert final_attack_passes(attacks, n_eps=n_eps, steps=steps, eot_iter=10, stochastic=False,
                               sanity=sanity) == expected


def test_final_evaluation_cost_adds_brain_accuracy_attacks_and_corruptions():
    cost = final_evaluation_cost(brain_stimuli=[(92, 224 * 224)], n_images=10, image_pixels=100,
                                 attack_passes_per_image=17, corruption_passes_per_image=5)
    assert cost == 92 * 224 * 224 + 10 * 100 * (1 + 17 + 5)
    with pytest.raises(ValueError, match="n_images"):
        final_evaluation_cost(brain_stimuli=[], n_images=-1, image_pixels=1, attack_passes_per_image=0)
    with pytest.raises(ValueError, match="final_budget"):
        ScorecardCallback(final_budget=0.0)


def _run(tmp_path, max_steps: int, final_budget):
    L.seed_everything(0, verbose=False)
    net = _Net()
    dm = GratingsDataModule(num_classes=4, n_train=32, n_val=8, batch_size=16, image_size=16, normalize=True,
                            model_name=None, seed=0)
    dm.use_model(net)
    cb = ScorecardCallback(every_n_epochs=0, brain_sets=[], attacks=["pgd"], eps=[4 / 255], max_images=8,
                           batch_size=8, model_name="tiny", final_budget=final_budget, periodic_steps=2,
                           final_attack_kwargs={"pgd_steps": 2, "square_queries": 20})
    L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
              default_root_dir=str(tmp_path), callbacks=[cb]).fit(BrainRegularizedModule(net, lr=0.05,
                                                                                         scheduler="none"),
                                                                  datamodule=dm)
    return cb


def test_a_short_run_gets_the_reduced_card_a_long_one_the_full_card(tmp_path):
    from neuroreg.scorecard.card import Scorecard

    short = _run(tmp_path / "short", max_steps=1, final_budget=1.0)
    assert short.reduced_
    card = Scorecard.load(tmp_path / "short" / "scorecard")
    attacks = card.sections["attacks"]
    assert not any(str(r["metric"]).startswith("sanity:") for r in attacks)
    assert {r.get("steps") for r in attacks if r.get("attack") == "pgd"} == {2}      # periodic_steps
    assert "reduced end-of-run card" in card.title
    # a budget the run's training covers: the full card, with the suite's sanity rows
    long = _run(tmp_path / "long", max_steps=2, final_budget=1e6)
    assert not long.reduced_
    card = Scorecard.load(tmp_path / "long" / "scorecard")
    assert any(str(r["metric"]).startswith("sanity:") for r in card.sections["attacks"])
    assert "reduced" not in card.title
