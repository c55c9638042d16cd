"""FactorTopy recovery on a matrix of simulations it was not tuned on, with the ridge oracle next to it.

Every cell: a randomly initialised network (torchvision ResNet-18, or timm's ConvNeXt-atto with
layer scale 1), an input size, 4 layers, and voxels generated here (not by
:func:`neuroreg.features.simulate_voxels`): a voxel reads one layer, chosen by its ROI band on a
2-D cortical sheet, at a location drawn uniformly in [-0.85, 0.85]^2 independently of its
cortical coordinates, through N(0, 1) channel weights, with one of three read-outs

* ``point``: the bilinear sample at the location (``grid_sample``),
* ``small``: a normalised Gaussian window of SD 0.05 of the map side,
* ``large``: a normalised Gaussian window of SD 0.2 of the map side;

the signal is standardised and Gaussian noise of variance 1 / SNR added (SNR log-uniform in
[0.5, 4] per voxel). FactorTopy is fitted with its defaults. The oracle is a ridge read-out
(:func:`neuroreg.scoring.ridge_cv_r`, 5 folds, feature variances floored at 1e-2 of their mean) of
every layer at the voxel's TRUE position and scale, the layer with the best cross-validated r
chosen: what the data allow at best.

Reported per cell, for voxels with SNR >= 1: layer accuracy overall and per true layer,
median position error at the true layer (grid units, [-1, 1] = map width), hierarchy slope,
the oracle's accuracy, fit seconds.

    python experiments/factortopy_recovery_matrix.py --quick            # 4 representative cells
    python experiments/factortopy_recovery_matrix.py                    # the full matrix
    python experiments/factortopy_recovery_matrix.py --docs docs/factortopy.md

Results are appended to a JSON file (``experiments/factortopy_recovery.json``: the records behind
the table in ``docs/factortopy.md``; one record per cell, written atomically), so an
interrupted run resumes where it stopped; ``--docs`` rewrites the table in the docs page;
``--refresh-oracle`` recomputes the oracle of records made with another oracle setting.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ARCHS = ("resnet18", "convnext_atto")
#: VGG-like cells: VGG-11-BN at 112 px, its four pooling stages (strides 4-32, maps 28/14/7/3), Gaussian
#: windows of SD log-uniform in [0.05, 0.2] of the map per voxel ("windows"), SNR 2 for every voxel
VGG_CELLS = [("vgg11_bn", 112, "windows", 800)]
VGG_SNR = 2.0
SIZES = (64, 96)
READOUTS = {"point": None, "small": 0.05, "large": 0.2, "windows": (0.05, 0.2)}
N_STIMULI = (600, 2000)
SNR_RANGE = (0.5, 4.0)
ROIS = ("V1", "V2V3", "OPA", "EBA")
#: a representative subset (both networks, both sizes, all read-outs, both stimulus counts)
QUICK = [("resnet18", 96, "point", 600), ("convnext_atto", 64, "large", 2000),
         ("resnet18", 64, "small", 2000), ("convnext_atto", 96, "point", 2000)]


def make_model(arch: str) -> tuple[torch.nn.Module, list[str]]:
    """A seeded, randomly initialised network and its 4 stage names (shallow -> deep)."""
    torch.manual_seed(0)
    if arch == "resnet18":
        import torchvision
        return torchvision.models.resnet18(weights=None).eval(), ["layer1", "layer2", "layer3", "layer4"]
    if arch == "convnext_atto":
        import timm
        # layer scale 1: timm's 1e-6 default would make every random block an identity
        model = timm.create_model("convnext_atto", pretrained=False, ls_init_value=1.0).eval()
        return model, [f"stages.{i}" for i in range(4)]
    if arch == "vgg11_bn":
        import torchvision
        # the max-pools after the 2nd to 5th conv stages: strides 4, 8, 16, 32
        return torchvision.models.vgg11_bn(weights=None).eval(), [f"features.{i}" for i in (7, 14, 21, 28)]
    raise ValueError(f"arch must be one of {ARCHS + ('vgg11_bn',)}; got {arch!r}")


def make_stimuli(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``(n, 3, size, size)`` seeded random crops (half to full side) and flips of the bundled 92 images."""
    from neuroreg.brain import load_kriegeskorte92

    images = torch.from_numpy(load_kriegeskorte92().images).permute(0, 3, 1, 2).float() / 255.0
    rng = np.random.default_rng(seed)
    side_max = images.shape[-1]
    out = []
    for _ in range(n):
        img = images[rng.integers(len(images))]
        side = int(rng.integers(side_max // 2, side_max + 1))
        y0, x0 = rng.integers(0, side_max - side + 1, size=2)
        crop = img[:, y0:y0 + side, x0:x0 + side]
        if rng.random() < 0.5:
            crop = crop.flip(-1)
        out.append(F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True,
                                 align_corners=False)[0])
    return torch.stack(out)


def _windows(position: np.ndarray, sd, h: int, w: int) -> torch.Tensor:
    """``(n, h * w)`` normalised Gaussian windows, SD ``sd`` of the map side (grid SD ``2 sd``)."""
    xs = (2 * torch.arange(w, dtype=torch.float64) + 1) / w - 1
    ys = (2 * torch.arange(h, dtype=torch.float64) + 1) / h - 1
    pos = torch.as_tensor(position, dtype=torch.float64)
    d2 = (ys[None, :, None] - pos[:, 1, None, None]) ** 2 + (xs[None, None, :] - pos[:, 0, None, None]) ** 2
    sd = torch.as_tensor(np.broadcast_to(np.asarray(sd, dtype=np.float64), (len(pos),)).copy())
    return torch.softmax((-d2 / (2 * (2 * sd[:, None, None]) ** 2)).reshape(len(pos), -1), dim=1)


def read_out(fmap: torch.Tensor, position: np.ndarray, sd) -> torch.Tensor:
    """``(b, C, H, W)`` maps -> ``(b, n, C)`` features at ``position`` ``(n, 2)``: bilinear (``sd`` None) or
    Gaussian (``sd`` a number or one per voxel, ``(n,)``)."""
    if sd is None:
        grid = torch.as_tensor(position, dtype=fmap.dtype)[None, :, None, :].expand(fmap.shape[0], -1, -1, -1)
        return F.grid_sample(fmap, grid, mode="bilinear", padding_mode="border", align_corners=False)[..., 0] \
            .transpose(1, 2)
    win = _windows(position, sd, *fmap.shape[2:]).to(fmap.dtype)
    return torch.einsum("bcp,np->bnc", fmap.flatten(2), win)


def simulate(feats: dict, layers: list[str], readout: str, n_voxels: int = 240, seed: int = 0):
    """Voxels of known layer, position and read-out (see the module docstring); returns (BrainData, truth)."""
    from neuroreg.brain import BrainData

    rng = np.random.default_rng(seed)
    n = next(iter(feats.values())).shape[0]
    band = np.arange(n_voxels) * len(ROIS) // n_voxels           # ROI k reads layer k
    coords = np.stack([(band + rng.uniform(0, 1, n_voxels)) * 2 / len(ROIS) - 1, rng.uniform(-1, 1, n_voxels)], 1)
    position = rng.uniform(-0.85, 0.85, size=(n_voxels, 2))
    snr = np.exp(rng.uniform(*np.log(SNR_RANGE), size=n_voxels))
    sd = READOUTS[readout]
    if isinstance(sd, tuple):  # a window SD per voxel, log-uniform in the range; one SNR for all
        sd = np.exp(rng.uniform(*np.log(sd), size=n_voxels))
        snr = np.full(n_voxels, VGG_SNR)
    signal = np.zeros((n, n_voxels))
    for k, name in enumerate(layers):
        vox = np.flatnonzero(band == k)
        x = read_out(feats[name].double(), position[vox], None if sd is None else np.broadcast_to(sd, (n_voxels,))[vox])
        w = torch.as_tensor(rng.normal(size=(len(vox), x.shape[2])))
        signal[:, vox] = torch.einsum("bnc,nc->bn", x, w).numpy()
    signal = (signal - signal.mean(0)) / signal.std(0)
    y = signal + rng.normal(size=signal.shape) / np.sqrt(snr)
    brain = BrainData(y, np.arange(n), {"coords": coords, "roi": np.asarray(ROIS)[band]})
    return brain, {"layer": band, "position": position, "snr": snr, "sd": sd}


def _choice_defaults() -> tuple[tuple[float, ...], float]:
    """(penalty grid, variance floor) of FactorTopy's default ridge layer choice, which the oracle uses too.

    The floor matters: without it a ReLU channel that is nearly constant at a narrow window gets scaled
    up by orders of magnitude and wrecks the held-out prediction (ResNet-18, 64 px, small window, 2,000
    stimuli: oracle 0.56 of voxels without, 1.00 with any floor from 1e-3 to 1e-1 or a layer-wide scale).
    """
    import inspect

    from neuroreg.scoring import FactorTopy

    params = inspect.signature(FactorTopy).parameters
    return (tuple(float(a) for a in np.atleast_1d(params["ridge_alpha"].default)),
            float(params["ridge_var_floor"].default))


def oracle_layer(feats: dict, layers: list[str], brain, truth, folds: int = 5) -> np.ndarray:
    """Most probable layer of a ridge read-out at every voxel's true position and scale.

    Each voxel and layer keeps its best cross-validated r over the penalty grid (per training
    stimulus, on standardised features with variances floored at a fraction of their mean) of
    FactorTopy's default layer choice (:func:`_choice_defaults`).
    """
    from neuroreg.scoring.factortopy.ridge import _RidgeStats

    alphas, var_floor = _choice_defaults()
    y = torch.as_tensor(brain.responses, dtype=torch.float64)
    fold = np.random.default_rng(1).permutation(len(y)) % folds
    scores = []
    for name in layers:
        r = []
        for start in range(0, y.shape[1], 30):  # voxel blocks keep the (n, v, C) features small
            sl = slice(start, start + 30)
            sd = truth["sd"] if truth["sd"] is None or np.isscalar(truth["sd"]) else truth["sd"][sl]
            x = read_out(feats[name].float(), truth["position"][sl], sd).double()
            # float64 sufficient statistics: the same r as ridge_cv_r, with X'X formed once for all penalties
            stats = _RidgeStats(x.shape[1], x.shape[2], folds, "cpu", dtype=torch.float64)
            for f in range(folds):
                idx = torch.as_tensor(np.flatnonzero(fold == f))
                stats.add(f, x[idx], y[idx, sl])
            r.append(stats.cv_r(list(alphas), var_floor=var_floor).amax(0))
        scores.append(torch.cat(r).numpy())
    return np.stack(scores, 1).argmax(1)


def _simulation(arch: str, size: int, readout: str, n_stimuli: int, n_voxels: int, seed: int):
    """(layers, features, BrainData, truth) of one cell: the network's maps and the voxels read from them."""
    from neuroreg.features.extraction import extract

    model, layers = make_model(arch)
    images = make_stimuli(n_stimuli, size, seed)
    feats = {k: v.float() for k, v in extract(model, images, layers, progress=False).items()}
    brain, truth = simulate(feats, layers, readout, n_voxels, seed)
    return layers, feats, brain, truth


def _recovered(best: np.ndarray, truth: dict, n_layers: int) -> tuple[float, list[float]]:
    """Fraction of voxels with SNR >= 1 whose ``best`` layer is the true one: overall and per true layer."""
    good, true_layer = truth["snr"] >= 1.0, truth["layer"]
    hit = best == true_layer
    return float(hit[good].mean()), [float(hit[good & (true_layer == k)].mean()) for k in range(n_layers)]


def run_cell(arch: str, size: int, readout: str, n_stimuli: int, n_voxels: int = 240, seed: int = 0,
             oracle: bool = True, **fit_kw) -> dict:
    from neuroreg.scoring import FactorTopy

    layers, feats, brain, truth = _simulation(arch, size, readout, n_stimuli, n_voxels, seed)
    tic, cpu = time.perf_counter(), time.process_time()
    ft = FactorTopy(layers, random_state=seed, progress=False, **fit_kw).fit(feats, brain)
    seconds, cpu = time.perf_counter() - tic, time.process_time() - cpu
    good = truth["snr"] >= 1.0
    true_layer = truth["layer"]
    if hasattr(ft, "choice_space_layers_"):  # the windows the layer choice judged
        space = ft.choice_space_layers_[np.arange(len(true_layer)), true_layer]
    elif hasattr(ft, "space_layers_"):
        space = ft.space_layers_[np.arange(len(true_layer)), true_layer]
    else:
        space = ft.space_
    pos_err = np.linalg.norm(space - truth["position"], axis=1)
    accuracy, per_layer = _recovered(ft.best_layer_, truth, len(layers))
    out = {"arch": arch, "size": size, "readout": readout, "n_stimuli": n_stimuli, "n_voxels": n_voxels,
           "seed": seed, "accuracy": accuracy, "per_layer": per_layer,
           "position_error": float(np.median(pos_err[good])),
           "slope": float(ft.hierarchy_slope()), "fit_seconds": seconds, "fit_cpu_seconds": cpu,
           "n_epochs": int(ft.n_epochs_), "ridge_var_floor": float(ft.ridge_var_floor),
           "weak_layers": [w["layer"] for w in getattr(ft, "weak_layers_", [])],
           "map_sizes": [int(feats[k].shape[-1]) for k in layers]}
    if oracle:
        out.update(_oracle_fields(feats, layers, brain, truth))
    return out


def _oracle_fields(feats: dict, layers: list[str], brain, truth) -> dict:
    accuracy, per_layer = _recovered(oracle_layer(feats, layers, brain, truth), truth, len(layers))
    return {"oracle_accuracy": accuracy, "oracle_per_layer": per_layer, "oracle_var_floor": _choice_defaults()[1]}


def refresh_oracle(record: dict) -> dict:
    """``record`` with its oracle recomputed on the same simulation (FactorTopy is not refitted)."""
    layers, feats, brain, truth = _simulation(record["arch"], record["size"], record["readout"],
                                              record["n_stimuli"], record["n_voxels"], record["seed"])
    return {**record, **_oracle_fields(feats, layers, brain, truth)}


def cells(quick: bool):
    if quick:
        return list(QUICK)
    grid = itertools.product(ARCHS, SIZES, [r for r in READOUTS if r != "windows"], N_STIMULI)
    return list(grid) + list(VGG_CELLS)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def table(records: list[dict]) -> str:
    """Markdown table of the records (voxels with SNR >= 1)."""
    head = ("| network | px | read-out | stimuli | maps (px) | accuracy | per layer (1-4) | oracle (per layer) | "
            "position error | slope | fit CPU s |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for r in sorted(records, key=lambda r: (r["arch"], r["size"], list(READOUTS).index(r["readout"]), r["n_stimuli"])):
        oracle = f"{r['oracle_accuracy']:.2f}" if "oracle_accuracy" in r else "-"
        if "oracle_per_layer" in r:
            oracle += f" ({' '.join(f'{a:.2f}' for a in r['oracle_per_layer'])})"
        rows.append(f"| {r['arch']} | {r['size']} | {r['readout']} | {r['n_stimuli']} | "
                    f"{'/'.join(map(str, r['map_sizes']))} | {r['accuracy']:.2f} | "
                    f"{' '.join(f'{a:.2f}' for a in r['per_layer'])} | {oracle} | {r['position_error']:.3f} | "
                    f"{r['slope']:.2f} | {r.get('fit_cpu_seconds', r['fit_seconds']):.0f} |")
    return head + "\n".join(rows) + "\n"


BEGIN, END = "<!-- recovery-table:begin -->", "<!-- recovery-table:end -->"


def update_docs(path: Path, records: list[dict]) -> None:
    text = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{table(records)}{END}"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text + ("\n" if text else "") + block + "\n"
    _write_atomic(path, text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the representative cells")
    parser.add_argument("--voxels", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", type=Path, default=Path("experiments/factortopy_recovery.json"))
    parser.add_argument("--docs", type=Path, default=None, help="rewrite the recovery table in this page")
    parser.add_argument("--only", default=None, help="comma-separated filter, e.g. resnet18,96,point,600")
    parser.add_argument("--refresh-oracle", action="store_true",
                        help="recompute the oracle of stored records made with another oracle setting")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    records = json.loads(args.results.read_text()) if args.results.exists() else []
    if args.refresh_oracle:
        for i, rec in enumerate(records):
            if rec.get("oracle_var_floor") != _choice_defaults()[1]:
                records[i] = refresh_oracle(rec)
                print(json.dumps({k: records[i][k] for k in ("arch", "size", "readout", "n_stimuli",
                                                              "oracle_accuracy")}), flush=True)
                _write_atomic(args.results, json.dumps(records, indent=1))
    done = {(r["arch"], r["size"], r["readout"], r["n_stimuli"], r["n_voxels"], r["seed"]) for r in records}
    wanted = set(args.only.split(",")) if args.only else None
    for arch, size, readout, n_stim in cells(args.quick):
        key = (arch, size, readout, n_stim, args.voxels, args.seed)
        if key in done or (wanted and not {arch, str(size), readout, str(n_stim)} >= wanted):
            continue
        rec = run_cell(arch, size, readout, n_stim, args.voxels, args.seed)
        print(json.dumps(rec), flush=True)
        records.append(rec)
        _write_atomic(args.results, json.dumps(records, indent=1))
    print(table([r for r in records if r["n_voxels"] == args.voxels and r["seed"] == args.seed]))
    if args.docs:
        update_docs(args.docs, records)


if __name__ == "__main__":
    main()
