"""``neuroreg demo``: the whole mission end to end, offline, written as one scorecard.

1. Brain-regularized training: CORnet-Z and its VOne twin (the same back end
   behind a VOneBlock V1 front end) trained on a procedural task (oriented
   gratings) with the CKA IT-alignment term, next to CORnet-Z trained on the
   task alone; held-out IT alignment before and after.
2. Fine-tuning and forgetting: run when ``neuroreg.finetune.finetune`` provides
   ``demo_stage`` (see :func:`_stage_finetune`); otherwise the report says so.
3. The scorecard of every model side by side: task accuracy; robustness (FGSM,
   PGD, and EOT-PGD for the stochastic VOne model, with the sanity checks;
   common corruptions); brain scores: cRSA on the real bundled sets (monkey
   and human IT, 92 images; human EVC/IT, 78 images) over each model's layer
   sweep, and veRSA, encoding predictivity and FactorTopy on SIMULATED voxels
   (made from the ImageNet-trained EfficientNet-Lite0, so the ground truth is
   known; labelled as simulated everywhere). The ImageNet-trained and an
   untrained EfficientNet-Lite0 join the brain sections as references.
   FactorTopy runs at half the brain image size (112 px in the full demo): it
   blurs every layer's full maps in every epoch, so at 224 px it would cost about
   six times as much, more than the rest of the demo together.

The scoring stage prints one line per model and section as it starts and ends
(with the seconds since the demo began), so no stage runs minutes without output.

Everything goes to ``--out`` (default ``results/demo``): report.html first.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Iterator, Literal, TypedDict

import neuroreg as nr

try:
    import resource   # POSIX only; elsewhere the demo's last line gives the wall clock alone
except ImportError:   # pragma: no cover - Windows
    resource = None   # type: ignore[assignment]

__all__ = ["add_arguments", "run", "run_demo"]

# torch, Lightning and the training/scoring stack are imported inside the functions that use them, on purpose:
# this module is the `neuroreg demo` command, imported for `neuroreg demo --help`, which must stay light (no torch).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("results") / "demo", help="output folder")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smaller images, fewer steps (about 3 minutes on 2 cores)")


def run(args: argparse.Namespace) -> int:
    results = run_demo(args.out, device=args.device, seed=args.seed, quick=args.quick)
    print(results["summary"].round(3).to_string(index=False))
    return 0


class _Profile(TypedDict):
    brain_image_size: int
    train_steps: int
    attack_images: int
    pgd_steps: int
    eot_iter: int
    n_draws: int
    square_queries: int
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    n_voxels: int
    ft_epochs: int
    max_layers: int | None
    factortopy_refs_only: bool
    factortopy_image_size: int
    finetune_images: int
    finetune_steps: int


#: The fine-tuning stage: generated pattern classes (the first three: checkerboard, dots, rings), images and steps
#: per profile (below), batch size, learning rates (body, new head), scheduler. The images draw random colours,
#: so the task is learned from the pattern's structure alone: with 72 images and 12 steps the heads stayed near
#: chance; it is the number of distinct images seen (steps x batch, from a set several hundred images large)
#: that gets the heads well above chance, while a higher learning rate (3e-3) made it worse.
_FT_CLASSES, _FT_LR, _FT_HEAD_LR, _FT_BATCH = 3, 1e-3, 1e-2, 64
_FT_SCHEDULER: Literal["cosine", "step", "none"] = "none"
_FT_IMAGES_FULL, _FT_STEPS_FULL = 1200, 300
_FT_IMAGES_QUICK, _FT_STEPS_QUICK = 840, 150

#: Settings of the full demo and of the quick one (used by the tests).
_PROFILES: dict[bool, _Profile] = {
    False: {"brain_image_size": 224, "train_steps": 60, "attack_images": 64, "pgd_steps": 10, "eot_iter": 10,
            "n_draws": 3, "square_queries": 200, "corruptions": ("gaussian_noise", "defocus_blur", "contrast",
                                                                  "jpeg_compression", "fog"),
            "severities": (1, 3, 5), "n_voxels": 400, "ft_epochs": 24, "max_layers": None,
            "factortopy_refs_only": False, "factortopy_image_size": 112, "finetune_images": _FT_IMAGES_FULL,
            "finetune_steps": _FT_STEPS_FULL},
    True: {"brain_image_size": 64, "train_steps": 24, "attack_images": 32, "pgd_steps": 3, "eot_iter": 2,
           "n_draws": 2, "square_queries": 50, "corruptions": ("gaussian_noise", "contrast"),
           "severities": (1, 5), "n_voxels": 80, "ft_epochs": 4, "max_layers": 6, "factortopy_refs_only": True,
           "factortopy_image_size": 64, "finetune_images": _FT_IMAGES_QUICK, "finetune_steps": _FT_STEPS_QUICK},
}
_DEMO_EPS = (2 / 255, 4 / 255, 8 / 255, 16 / 255)
_TRAIN_SIZE = 32
_TARGET = "kriegeskorte92:monkey_IT"


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


@contextlib.contextmanager
def _step_lines(t0: float) -> Iterator[None]:
    """Print :func:`neuroreg.scorecard.evaluation`'s step log (model, section, seconds) as demo lines while scoring."""
    log = logging.getLogger("neuroreg.scorecard.evaluation")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_Elapsed(t0))
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False   # printed once here, not again by a handler the caller put on the root logger
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate


class _Elapsed(logging.Formatter):
    def __init__(self, t0: float) -> None:
        super().__init__()
        self.t0 = t0

    def format(self, record: logging.LogRecord) -> str:
        return f"[demo {time.perf_counter() - self.t0:4.0f} s] {record.getMessage()}"


def run_demo(out: str | Path = Path("results") / "demo", *, device: str | None = None, seed: int = 0,
             quick: bool = False) -> dict:
    """Run every stage; returns ``{"card": Scorecard, "summary": DataFrame, "training": rows, "paths": ...}``."""
    import torch

    out = Path(out)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    profile = _PROFILES[bool(quick)]
    t0 = time.perf_counter()
    trained, training = _stage_training(out, seed=seed, quick=quick)
    _say(f"brain-regularized training done ({time.perf_counter() - t0:.0f} s)")
    references = _reference_models(seed)
    simulated = _simulated_voxels(references, profile, seed=seed, device=device)
    _say(f"simulated voxels ready ({time.perf_counter() - t0:.0f} s)")
    with _step_lines(t0):
        card = _stage_scorecard(trained, references, simulated, profile, seed=seed, device=device)
    _say(f"scorecard done ({time.perf_counter() - t0:.0f} s)")
    card.add("training", training, ran_on={m: (
        f"{profile['train_steps']} steps on 4-way oriented gratings ({_TRAIN_SIZE} px); alignment target "
        f"{_TARGET} (debiased CKA, L = CE + w log(1 - CKA)); val/cka_IT measured on the 25% of the 92 neural "
        "stimuli never used in training") for m in trained})
    finetune = _stage_finetune(trained, out, quick=quick, seed=seed)
    if finetune is not None:
        table, ran_on, figures = finetune
        card.add("forgetting", table, ran_on=ran_on, figures=figures)
    card.title = "neuroreg demo: one scorecard for every model"
    paths = card.save(out)
    _say(f"report: {paths['html']} ({_cost(t0)})")
    return {"card": card, "summary": card.summary(), "training": [dict(r) for r in training], "paths": paths,
            "finetune": finetune is not None}


def _cost(t0: float) -> str:
    """Wall clock since ``t0``, CPU time (user + system, all threads) and peak resident memory of this process."""
    wall = f"{time.perf_counter() - t0:.0f} s wall"
    if resource is None:
        return wall
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_gb = usage.ru_maxrss / (2 ** 30 if sys.platform == "darwin" else 2 ** 20)   # bytes on macOS, KiB on Linux
    return f"{wall}, {usage.ru_utime + usage.ru_stime:.0f} s CPU, peak memory {peak_gb:.1f} GB"


def _gratings(n: int, seed: int):
    import torch

    from neuroreg.data import GratingsDataset
    ds = GratingsDataset(n, num_classes=4, image_size=_TRAIN_SIZE, seed=seed)
    return torch.stack([ds[i][0] for i in range(n)]), torch.tensor([ds[i][1] for i in range(n)])


def _vone_cornet_z(seed: int):
    import torch

    from neuroreg.models import VOneNet
    torch.manual_seed(seed)
    backbone = nr.create_model("cornet_z", num_classes=4)
    # 32-px images covering 2 degrees: 16 px per degree, so the Gabor bank's frequencies stay below Nyquist
    return VOneNet(backbone, image_size=_TRAIN_SIZE, visual_degrees=2, simple_channels=64, complex_channels=64,
                   ksize=15, stride=4, seed=seed)


def _stage_training(out: Path, *, seed: int, quick: bool):
    """CORnet-Z (task only, task + IT CKA) and its VOne twin (task + IT CKA) on gratings."""
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    from neuroreg.alignment import CKALoss
    from neuroreg.results.table import ScoreTable
    from neuroreg.training import BrainRegularizedModule
    from neuroreg.data import GratingsDataModule
    from neuroreg.finetune import build_model

    steps = _PROFILES[bool(quick)]["train_steps"]
    table = ScoreTable()
    trained = {}
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)  # keep the demo's output to its own progress lines
    runs = (("CORnet-Z (task)", "plain", 0.0), ("CORnet-Z (task + IT CKA)", "plain", 2.0),
            ("VOne-CORnet-Z (task + IT CKA)", "vone", 2.0))
    try:
        for label, kind, weight in runs:
            _say(f"training {label} ({steps} steps)")
            L.seed_everything(seed, verbose=False)
            backbone = build_model("cornet_z", num_classes=4) if kind == "plain" else _vone_cornet_z(seed)
            module = BrainRegularizedModule(backbone, [CKALoss("IT", _TARGET, debiased=True, weight=weight)],
                                            optimizer="adamw", lr=3e-3, weight_decay=0.0, scheduler="none")
            # no model_name: the data module reads the backbone's preprocessing contract at setup
            data = GratingsDataModule(num_classes=4, n_train=256, n_val=64, neural="kriegeskorte92",
                                      neural_batch_size=32, neural_holdout=0.25, batch_size=32,
                                      image_size=_TRAIN_SIZE, seed=seed)
            trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, deterministic=True,
                                logger=TensorBoardLogger(str(out / "tensorboard"), name="training_" + kind +
                                                         ("_cka" if weight else "")),
                                enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
                                num_sanity_val_steps=0, log_every_n_steps=4)
            before = trainer.validate(module, data, verbose=False)[0]
            trainer.fit(module, data)
            after = trainer.validate(module, data, verbose=False)[0]
            for metric in ("val/acc1", "val/cka_IT"):
                table.append(model=label, layer="IT", region="IT", subject="monkey", metric=metric,
                             split="heldout", score=float(after[metric]), before_training=float(before[metric]),
                             steps=steps, alignment_weight=weight, headline=metric == "val/cka_IT")
            trained[label] = backbone.eval()
    finally:
        lightning_log.setLevel(level)
    return trained, table


def _reference_models(seed: int) -> dict:
    import torch

    models = {}
    try:
        models["EfficientNet-Lite0 (ImageNet)"] = nr.create_model("efficientnet_lite0_imagenet",
                                                                  pretrained=True).eval()
    except Exception as exc:  # the optional weights package is missing
        _say(f"trained EfficientNet-Lite0 unavailable ({exc}); using untrained references only")
    torch.manual_seed(seed)
    models["EfficientNet-Lite0 (untrained)"] = nr.create_model("efficientnet_lite0_imagenet").eval()
    return models


def _simulated_voxels(references: dict, profile: _Profile, *, seed: int, device: str):
    """Voxels read from the first reference network's area layers on the 170 bundled images: SIMULATED data
    with a known layer per ROI (V1 -> blocks.1, V2V3 -> blocks.2, OPA -> blocks.4, EBA -> blocks.6)."""
    import torch

    from neuroreg.brain import load_algonauts2019_78, load_kriegeskorte92
    from neuroreg.features import simulate_voxels
    from neuroreg.data.preprocessing import preprocessing_of

    name, source = next(iter(references.items()))
    size = profile["brain_image_size"]
    images = torch.cat([s.images_tensor(size=size) for s in (load_kriegeskorte92(), load_algonauts2019_78())])
    prep = preprocessing_of(source, size)
    brain, _ = simulate_voxels(source, prep.normalize(images), rois=("V1", "V2V3", "OPA", "EBA"),
                               n_voxels=profile["n_voxels"], snr=(0.5, 4.0), seed=seed, batch_size=32,
                               device=device, name="simulated")
    brain.stimuli = images  # scored models see the raw images through their own preprocessing
    return brain


def _stage_scorecard(trained: dict, references: dict, simulated, profile: _Profile, *, seed: int, device: str):
    from neuroreg.scorecard.card import Scorecard

    task = _gratings(profile["attack_images"], seed=2 * seed + 1)   # the validation seed of the training data
    brain_sets = ["kriegeskorte92", "algonauts2019_78", simulated]
    ft_kwargs = {"max_epochs": profile["ft_epochs"], "warmup_epochs": 1, "anneal_epochs": 2, "patience": 3,
                 "d": 32, "hidden": 32, "batch_size": 32}
    _say(f"scoring {', '.join(trained)}: accuracy, attacks (EOT for stochastic models), corruptions, brain")
    # quick: FactorTopy only for the reference networks (the simulated voxels' own network and its untrained
    # twin), where its hierarchy slope has a known answer
    sections = ["accuracy", "attacks", "corruptions", "brain"] + ([] if profile["factortopy_refs_only"]
                                                                  else ["factortopy"])
    card = nr.evaluate(trained, task, brain_sets, sections=sections, attacks=["fgsm", "pgd"], eps=list(_DEMO_EPS),
                       corruptions=list(profile["corruptions"]), severities=profile["severities"],
                       image_size=profile["brain_image_size"], max_layers=profile["max_layers"], device=device,
                       batch_size=32, seed=seed, factortopy_kwargs=ft_kwargs,
                       attack_kwargs={"pgd_steps": profile["pgd_steps"], "eot_iter": profile["eot_iter"],
                                      "n_draws": profile["n_draws"], "square_queries": profile["square_queries"],
                                      "progress": False},
                       corruption_kwargs={"n_draws": 1}, factortopy_image_size=profile["factortopy_image_size"],
                       progress=False)
    _say(f"scoring references {', '.join(references)}: brain scores and FactorTopy")
    ref = nr.evaluate(references, None, brain_sets, sections=["brain", "factortopy"],
                      image_size=profile["brain_image_size"], max_layers=profile["max_layers"], device=device,
                      batch_size=32, seed=seed, factortopy_kwargs=ft_kwargs,
                      factortopy_image_size=profile["factortopy_image_size"], progress=False)
    card = Scorecard.combine([card, ref])
    for section in ("brain", "factortopy"):
        for model, text in card.ran_on.get(section, {}).items():
            card.ran_on[section][model] = text.replace(
                f"on {simulated.name}:", f"on {simulated.name} (SIMULATED voxels read from {next(iter(references))}'s "
                "area layers, a known ground truth; not brain data):")
    return card


def _stage_finetune(trained: dict, out: Path, *, quick: bool, seed: int):
    """Fine-tune each trained CORnet-Z (all layers, AdamW) on a generated second domain (three classes of
    procedural patterns) and measure what it gained on that task and what it forgot
    (:func:`neuroreg.finetune.forgetting.forgetting_report`).

    Returns ``(ScoreTable, {model: what it ran on}, [(figure path, caption), ...])``.
    """
    import lightning as L
    import torch

    from neuroreg.results.table import ScoreTable
    from neuroreg.finetune import FinetuneModule
    from neuroreg.data import PatternDataModule
    from neuroreg.finetune.forgetting import forgetting_report
    from neuroreg.finetune.forgetting_output import write_forgetting

    profile = _PROFILES[bool(quick)]
    steps, n_images = profile["finetune_steps"], profile["finetune_images"]
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)
    table, ran_on, figures = ScoreTable(), {}, []
    try:
        for label, backbone in trained.items():
            if not label.startswith("CORnet-Z"):
                continue  # the plain CORnet-Zs: their start is rebuilt from a registered name + weights
            slug = "".join(c if c.isalnum() else "_" for c in label).strip("_")
            _say(f"fine-tuning {label} on generated patterns ({steps} steps)")
            weights = out / "finetune" / f"start_{slug}.pth"
            weights.parent.mkdir(parents=True, exist_ok=True)
            torch.save(backbone.state_dict(), weights)
            L.seed_everything(seed, verbose=False)
            data = PatternDataModule(n_images=n_images, num_classes=_FT_CLASSES, batch_size=_FT_BATCH,
                                     image_size=_TRAIN_SIZE, model_name="cornet_z", seed=seed)
            module = FinetuneModule("cornet_z", num_classes=data.num_classes, weights=str(weights),
                                    model_kwargs={"num_classes": 4}, strategy="full", lr=_FT_LR,
                                    head_lr=_FT_HEAD_LR, scheduler=_FT_SCHEDULER)
            run_dir = out / "finetune" / slug
            L.Trainer(max_steps=steps, accelerator="cpu", devices=1, deterministic=True, logger=False,
                      default_root_dir=str(run_dir), enable_checkpointing=False, enable_model_summary=False,
                      enable_progress_bar=False, num_sanity_val_steps=0, limit_val_batches=0).fit(module, data)
            rows = forgetting_report(module.start_model(), module.backbone, task_data=data, image_size=_TRAIN_SIZE,
                                     probe_sets=["kriegeskorte92"], model=label, dataset="patterns", seed=seed)
            paths = write_forgetting(rows, run_dir)
            table.extend(rows)
            head = next(r for r in rows if r["metric"] == "finetuned_head_accuracy")
            probe = {r["stage"]: r["score"] for r in rows if r["metric"] == "task_accuracy"}
            ran_on[label] = (
                f"fine-tuned {steps} steps of {_FT_BATCH} images (all layers, AdamW lr {_FT_LR:g}, new head lr "
                f"{_FT_HEAD_LR:g}, scheduler {_FT_SCHEDULER}) on "
                f"{_FT_CLASSES} classes of generated patterns ({n_images} images, {_TRAIN_SIZE} px). New task "
                f"(kind new_task, transfer, not forgetting): the fine-tuned head {head['score']:.3f} (chance "
                f"{head['chance']:.3f}); the same linear probe on the start's and the fine-tuned features "
                f"{probe['before']:.3f} -> {probe['after']:.3f}. Old tasks (kind old_task: retention probes on the 92 "
                "images) are the forgetting; CKA drift and cRSA on the 92 images"
                + (f". WARNING: {head['warning']}" if head.get("warning") else ""))
            if "cka_drift" in paths:
                figures.append((paths["cka_drift"], f"{label}: CKA between the start's and the fine-tuned "
                                                     "network's features per area (1 = unchanged)."))
    finally:
        lightning_log.setLevel(level)
    return table, ran_on, figures
