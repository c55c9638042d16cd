"""``neuroreg demo``: the main job end to end, offline, on the bundled real neural data.

1. Brain scores: a genuinely ImageNet-trained network (EfficientNet-Lite0, weights
   from its pip package) against the same architecture untrained, and an untrained
   VOne-CORnet-S, scored layer by layer with cRSA against monkey and human IT
   (92 images) and human EVC/IT (78 images, 15 subjects), with noise ceilings.
2. Brain-regularized training: a small VOne model trained on a procedural task
   with and without the CKA IT-alignment term; CKA to the neural target before
   and after.
3. Robustness: the trained models under PGD (EOT for the stochastic VOne front
   end) with the suite's sanity checks.
4. Fine-tuning and forgetting: both trained models fine-tuned on a generated
   second domain (the setup of ``configs/finetune_tiny.yaml``); the forgetting
   report says what each lost (CKA drift per area, cRSA change, retention).

Tables, figures and ``report.html`` go to ``--out`` (default ``results/demo``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["add_arguments", "run", "run_demo"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("results") / "demo", help="output folder")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smaller images and fewer steps (for tests)")


def run(args: argparse.Namespace) -> int:
    run_demo(args.out, device=args.device, seed=args.seed, quick=args.quick)
    return 0


#: Settings of the full demo and of the quick one (used by the tests).
_PROFILES = {
    False: {"image_size": 224, "train_steps": 60, "attack_images": 64, "pgd_steps": 10, "square_queries": 200},
    True: {"image_size": 96, "train_steps": 24, "attack_images": 32, "pgd_steps": 3, "square_queries": 50},
}
_DEMO_EPS = (2 / 255, 4 / 255, 8 / 255, 16 / 255)


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def run_demo(out: str | Path = Path("results") / "demo", *, device: str | None = None, seed: int = 0,
             quick: bool = False) -> dict:
    """Run every stage; returns a dict of headline numbers and written paths."""
    import torch

    from neuroreg.report import Report

    out = Path(out)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    report = Report("neuroreg demo", out)
    results: dict = {}
    t0 = time.perf_counter()
    results["brain"] = _stage_brain(report, out, device=device, seed=seed, quick=quick)
    _say(f"brain scores done ({time.perf_counter() - t0:.0f} s)")
    models, results["training"] = _stage_training(report, out, seed=seed, quick=quick)
    _say(f"brain-regularized training done ({time.perf_counter() - t0:.0f} s)")
    results["robustness"] = _stage_robustness(report, out, models, seed=seed, quick=quick)
    _say(f"robustness done ({time.perf_counter() - t0:.0f} s)")
    results["forgetting"] = _stage_finetune(report, out, models, seed=seed, quick=quick)
    _say(f"fine-tuning and forgetting done ({time.perf_counter() - t0:.0f} s)")
    paths = report.write()
    results["paths"] = paths
    _say(f"report: {paths['html']}")
    return results


def _stage_brain(report, out: Path, *, device: str, seed: int, quick: bool) -> dict:
    import torch

    import neuroreg as nr
    from neuroreg.brain import load_algonauts2019_78, load_kriegeskorte92
    from neuroreg.evaluate import brain_scores, summarize_brain
    from neuroreg.report import plot_layer_profile, save_figure, write_table
    from neuroreg.scoring.results import ScoreTable

    sets = [load_kriegeskorte92(), load_algonauts2019_78()]
    image_size = _PROFILES[quick]["image_size"]
    models = {}
    try:
        models["efficientnet_lite0 (ImageNet-trained)"] = nr.create_model("efficientnet_lite0_imagenet", pretrained=True)
    except Exception as exc:  # the optional weights package is missing
        _say(f"trained EfficientNet-Lite0 unavailable ({exc}); scoring untrained models only")
    torch.manual_seed(seed)
    models["efficientnet_lite0 (untrained)"] = nr.create_model("efficientnet_lite0_imagenet", pretrained=False)
    table = ScoreTable()
    for name, model in models.items():
        _say(f"scoring {name} on {', '.join(s.name for s in sets)}")
        table.extend(brain_scores(model.eval(), sets, image_size=image_size, device=device, model_name=name,
                                  seed=seed, batch_size=16))
    write_table(table, out, "brain_scores")
    summary = summarize_brain(table)
    write_table(summary, out, "brain_scores_summary")
    figs = []
    for s in sets:
        sub = table.filter(dataset=s.name)
        figs.append(save_figure(plot_layer_profile(sub, title=f"cRSA layer profile, {s.name} (test half)"),
                                out / f"layer_profile_{s.name}.png"))
    report.add("Brain scores (cRSA)",
               "Pearson correlation between the upper triangles of model and brain RDMs (1 - Pearson r). For every "
               "brain RDM (subject, or session of a subject) the best layer is chosen on the even-index stimuli and "
               "its score reported on the odd-index stimuli (Conwell et al.), then averaged over the RDMs. The "
               "ceiling_r column is the Nili et al. (2014) upper noise ceiling where several subjects were measured.",
               tables=[("best layer per region (test half, mean over subjects)", summary)], figures=figs)
    return [dict(r) for r in summary]


def _stage_training(report, out: Path, *, seed: int, quick: bool):
    """CORnet-Z on procedural gratings, with the CKA IT-alignment term switched off (weight 0) and on."""
    import logging

    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    from neuroreg.alignment import CKALoss
    from neuroreg.scoring.results import ScoreTable
    from neuroreg.training import BrainRegularizedModule, GratingsDataModule, build_model

    steps = _PROFILES[quick]["train_steps"]
    target = "kriegeskorte92:monkey_IT"
    table = ScoreTable()
    trained = {}
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)  # keep the demo's output to its own progress lines
    for label, weight in (("task only", 0.0), ("task + IT CKA", 2.0)):
        _say(f"training CORnet-Z on gratings, {label} ({steps} steps)")
        L.seed_everything(seed, verbose=False)
        backbone = build_model("cornet_z", num_classes=4)
        module = BrainRegularizedModule(backbone, [CKALoss("IT", target, debiased=True, weight=weight)],
                                        optimizer="adamw", lr=3e-3, weight_decay=0.0, scheduler="none")
        data = GratingsDataModule(n_classes=4, n_train=256, n_val=64, neural="kriegeskorte92",
                                  neural_batch_size=32, neural_holdout=0.25, batch_size=32, image_size=32,
                                  normalize=True, model_name="cornet_z", seed=seed)
        trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, deterministic=True,
                            logger=TensorBoardLogger(str(out / "tensorboard"), name=label.replace(" ", "_")),
                            enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
                            num_sanity_val_steps=0, log_every_n_steps=4)
        before = trainer.validate(module, data, verbose=False)[0]
        trainer.fit(module, data)
        after = trainer.validate(module, data, verbose=False)[0]
        for metric in ("val/acc1", "val/cka_IT"):
            table.append(model=f"cornet_z ({label})", layer="IT", region="IT", subject="monkey", metric=metric,
                         split="heldout", score=float(after[metric]), before_training=float(before[metric]),
                         steps=steps, alignment_weight=weight)
        trained[label] = backbone.eval()
    lightning_log.setLevel(level)
    report.add("Brain-regularized training",
               f"CORnet-Z trained {steps} steps on 4-way oriented gratings (32 px); the alignment term pulls its "
               f"IT area toward the monkey IT RDM ({target}, debiased CKA, L = CE + w log(1 - CKA)). "
               "val/cka_IT is measured on the 25% of the 92 neural stimuli never used for training.",
               tables=[("held-out accuracy and IT alignment", table)])
    return trained, [dict(r) for r in table]


def _stage_robustness(report, out: Path, models: dict, *, seed: int, quick: bool) -> list:
    """PGD/FGSM on the gratings validation set for each trained model, with the suite's sanity checks."""
    from neuroreg.report import save_figure
    from neuroreg.robustness import attack_suite, plot_accuracy_vs_eps
    from neuroreg.scoring.results import ScoreTable
    from neuroreg.training import GratingsDataset

    import torch

    profile = _PROFILES[quick]
    val = GratingsDataset(profile["attack_images"], n_classes=4, image_size=32, seed=2 * seed + 1)
    images = torch.stack([val[i][0] for i in range(len(val))])
    labels = torch.tensor([val[i][1] for i in range(len(val))])
    table = ScoreTable()
    for label, model in models.items():
        _say(f"attacking CORnet-Z ({label})")
        table.extend(attack_suite(model, (images, labels), attacks=["fgsm", "pgd"], eps=list(_DEMO_EPS),
                                  mean=model.pretrained_cfg["mean"], std=model.pretrained_cfg["std"],
                                  pgd_steps=profile["pgd_steps"], square_queries=profile["square_queries"],
                                  model_name=f"cornet_z ({label})", seed=seed, progress=False))
    figs = [save_figure(plot_accuracy_vs_eps(table), out / "accuracy_vs_eps.png")]
    sanity = table.to_pandas()
    sanity = sanity[sanity["metric"].astype(str).str.startswith("sanity:")]
    report.add("Adversarial robustness",
               "L-inf FGSM and PGD (step 2.5 eps/steps) at eps 2, 4, 8 and 16 /255 on the gratings validation set; sanity checks run with "
               "every suite (eps 0 = clean, monotone in eps, large eps reaches chance, more steps never help, "
               "black-box Square not far below white-box).",
               tables=[("accuracy", table.filter(metric="accuracy")),
                       ("sanity checks", sanity[[c for c in ("model", "metric", "attack", "passed", "detail")
                                                 if c in sanity.columns]])],
               figures=figs)
    return [dict(r) for r in table]


def _stage_finetune(report, out: Path, models: dict, *, seed: int, quick: bool) -> list:
    """Fine-tune each trained CORnet-Z on the generated pattern domain; forgetting report per model."""
    import logging

    import lightning as L
    import torch

    from neuroreg.scoring.results import ScoreTable
    from neuroreg.training import FinetuneModule, PatternDataModule
    from neuroreg.training.forgetting import forgetting_report
    from neuroreg.training.forgetting_output import write_forgetting

    steps = _PROFILES[quick]["train_steps"] // (2 if quick else 1)
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)
    table = ScoreTable()
    for label, backbone in models.items():
        _say(f"fine-tuning CORnet-Z ({label}) on generated patterns ({steps} steps)")
        weights = out / "finetune" / f"start_{label.replace(' ', '_').replace('+', 'plus')}.pth"
        weights.parent.mkdir(parents=True, exist_ok=True)
        torch.save(backbone.state_dict(), weights)
        L.seed_everything(seed, verbose=False)
        data = PatternDataModule(n_images=72 if quick else 240, batch_size=16, image_size=32, normalize=True,
                                 model_name="cornet_z", seed=seed)
        module = FinetuneModule("cornet_z", num_classes=data.num_classes, weights=str(weights),
                                model_kwargs={"num_classes": 4}, strategy="full", lr=1e-3, scheduler="none")
        run_dir = out / "finetune" / label.replace(" ", "_").replace("+", "plus")
        L.Trainer(max_steps=steps, accelerator="cpu", devices=1, deterministic=True, logger=False,
                  default_root_dir=str(run_dir),
                  enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
                  num_sanity_val_steps=0, limit_val_batches=0).fit(module, data)
        rows = forgetting_report(module.start_model(), module.backbone, task_data=data, image_size=32,
                                 probe_sets=["kriegeskorte92"], model=f"cornet_z ({label})", dataset="patterns",
                                 seed=seed)
        write_forgetting(rows, run_dir)
        table.extend(rows)
    lightning_log.setLevel(level)
    shown = table.filter(metric=["task_accuracy", "cka_to_start", "crsa", "retention_accuracy"])
    report.add("Fine-tuning and forgetting",
               f"Each trained CORnet-Z fine-tuned {steps} steps (all layers, AdamW) on six classes of generated "
               "patterns; before = the trained network (task accuracy: a linear probe on its frozen features), "
               "after = fine-tuned, change = after - before. cka_to_start: CKA between the two networks' features "
               "on the 92 images (1 = unchanged). Full reports in finetune/<model>/forgetting.md.",
               tables=[("forgetting", shown)])
    return [dict(r) for r in table]
