"""FactorTopy at scale: fit time and peak memory against voxels, stimuli and layers, and the NSD-size projection.

Three modes:

* ``--grid``: every point of ``--voxels`` x ``--images`` x ``--layers`` is fitted once in its own
  process (so its peak RSS is its own): ``--epochs`` epochs, then the ridge layer choice, the time
  split into feature statistics, position start, training (per epoch) and layer choice. Feature maps
  are shaped like ResNet-18's eight residual blocks at 112 px ((64, 28, 28) ... (512, 4, 4)); 4 layers
  take every other block. From the measured points each phase's cost is fitted as
  ``c * voxels^a * images^b`` (exponents from the points that double one of them; the layer count as
  a measured ratio) and extrapolated to the NSD size (15,000 voxels x 8 layers x 10,000 stimuli),
  printed as EXTRAPOLATED, with the peak memory as measured RSS minus features, linear in the voxels,
  plus the features.
* ``--issue-cell REV``: the recovery matrix's issue cell (ResNet-18, 96 px, point read-out, 600 stimuli,
  240 voxels) fitted by the code of git revision ``REV`` (its ``neuroreg`` package unpacked to a
  temporary folder with ``git archive``) and by the working tree's, alternately ``--rounds`` times in
  fresh processes on one thread: CPU seconds and layer recovery side by side, under the same load.
* ``--point V N L``: one grid point, printed as JSON (what ``--grid`` runs).

    python experiments/bench_factortopy.py --grid --voxels 250 500 --images 500 1000 --layers 4 8
    python experiments/bench_factortopy.py --issue-cell HEAD~3 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESNET18_BLOCKS_112 = [(64, 28, 28), (64, 28, 28), (128, 14, 14), (128, 14, 14),
                       (256, 7, 7), (256, 7, 7), (512, 4, 4), (512, 4, 4)]
NSD = {"voxels": 15_000, "images": 10_000, "layers": 8}


def _peak_rss_gib() -> float:
    scale = 1024 ** 2 if sys.platform != "darwin" else 1024 ** 3  # ru_maxrss: KiB on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _shapes(n_layers: int) -> list[tuple[int, int, int]]:
    return [RESNET18_BLOCKS_112[round(i * (len(RESNET18_BLOCKS_112) - 1) / max(n_layers - 1, 1))]
            for i in range(n_layers)]


def _data(n_images: int, n_voxels: int, n_layers: int, seed: int):
    import torch

    from neuroreg.brain import BrainData

    g = torch.Generator().manual_seed(seed)
    feats = {f"block{i}": torch.randn(n_images, *s, generator=g) for i, s in enumerate(_shapes(n_layers))}
    rng = np.random.default_rng(seed)
    roi = np.array(["V1", "V2V3", "OPA", "EBA"])[np.arange(n_voxels) * 4 // n_voxels]
    brain = BrainData(rng.normal(size=(n_images, n_voxels)).astype(np.float32), np.arange(n_images),
                      {"coords": rng.uniform(-1, 1, size=(n_voxels, 2)), "roi": roi})
    return feats, brain


def point(n_voxels: int, n_images: int, n_layers: int, epochs: int, seed: int = 0) -> dict:
    """One fit on random maps on one thread; CPU seconds of the fit and of each phase, peak RSS."""
    import torch

    import neuroreg.scoring.factortopy.estimator as estimator
    import neuroreg.scoring.factortopy.training as training
    from neuroreg.scoring.factortopy import FactorTopy

    class _CpuClock:  # timings_ read this process's CPU clock: wall seconds on a shared machine are not the fit's
        perf_counter = staticmethod(time.process_time)

    estimator.time = training.time = _CpuClock  # type: ignore[assignment]
    torch.set_num_threads(1)
    feats, brain = _data(n_images, n_voxels, n_layers, seed)
    ft = FactorTopy(list(feats), random_state=seed, max_epochs=epochs, warmup_epochs=0, anneal_epochs=0,
                    progress=False)
    tic, cpu = time.perf_counter(), time.process_time()
    ft.fit(feats, brain)
    wall, cpu = time.perf_counter() - tic, time.process_time() - cpu
    feat_gib = sum(x.numel() for x in feats.values()) * 4 / 1024 ** 3
    return {"voxels": n_voxels, "images": n_images, "layers": n_layers, "fit_wall": wall, "fit_cpu": cpu,
            "epochs": ft.n_epochs_, "epoch": ft.timings_["training"] / ft.n_epochs_, **ft.timings_,
            "peak_rss_gib": _peak_rss_gib(), "features_gib": feat_gib}


def _run_point(v: int, n: int, layers: int, epochs: int) -> dict:
    out = subprocess.run(["nice", "-n", "10", sys.executable, __file__, "--point", str(v), str(n), str(layers),
                          "--epochs", str(epochs)], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


PHASES = ("statistics", "position_init", "epoch", "layer_choice")


def _exponent(rows: list[dict], key: str, phase: str) -> float:
    """Log-log slope of a phase's seconds against ``key`` between points that differ only in ``key``."""
    other = {"voxels": "images", "images": "voxels"}[key]
    slopes = []
    for a in rows:
        for b in rows:
            if a[key] < b[key] and a[other] == b[other] and a["layers"] == b["layers"] and a[phase] > 0:
                slopes.append(np.log(b[phase] / a[phase]) / np.log(b[key] / a[key]))
    return float(np.median(slopes)) if slopes else 1.0


def project(rows: list[dict], target: dict, epochs: int) -> dict:
    """Each phase extrapolated from the largest measured point to ``target`` (see the module docstring)."""
    base = max((r for r in rows if r["layers"] == min(x["layers"] for x in rows)),
               key=lambda r: r["voxels"] * r["images"])
    out = {}
    for phase in PHASES:
        a, b = _exponent(rows, "voxels", phase), _exponent(rows, "images", phase)
        ratio = [r[phase] / s[phase] for r in rows for s in rows
                 if r["layers"] > s["layers"] and r["voxels"] == s["voxels"] and r["images"] == s["images"]]
        layer_factor = float(np.median(ratio)) if ratio and target["layers"] > base["layers"] else 1.0
        out[phase] = base[phase] * (target["voxels"] / base["voxels"]) ** a * \
            (target["images"] / base["images"]) ** b * layer_factor
        out[f"{phase}_exponents"] = (round(a, 2), round(b, 2), round(layer_factor, 2))
    out["fit"] = out["statistics"] + out["position_init"] + epochs * out["epoch"] + out["layer_choice"]
    # memory: RSS minus the features, linear in voxels at the base's stimuli (the ridge statistics and
    # pooled work space grow with voxels; the pyramid cache is capped by pyramid_cache)
    work = [(r["voxels"], r["peak_rss_gib"] - r["features_gib"]) for r in rows
            if r["images"] == base["images"] and r["layers"] == base["layers"]]
    v, m = np.array(work).T
    slope = float(np.polyfit(v, m, 1)[0]) if len(set(v)) > 1 else 0.0
    feats = target["images"] * sum(c * h * w for c, h, w in _shapes(target["layers"])) * 4 / 1024 ** 3
    out["memory_gib"] = float(m.max() + slope * (target["voxels"] - v.max()) + feats)
    out["features_gib"] = feats
    return out


def grid(args) -> None:
    rows = []
    for layers in args.layers:
        for v in args.voxels:
            for n in args.images:
                if layers != min(args.layers) and (v, n) != (min(args.voxels), min(args.images)):
                    continue  # the layer count is measured at the smallest point only
                rows.append(_run_point(v, n, layers, args.epochs))
                print(json.dumps(rows[-1]), flush=True)
    print("\nvoxels | images | layers | fit CPU s | statistics s | position start s | per epoch s | "
          "layer choice s | peak RSS GiB (features)")
    for r in rows:
        print(f"{r['voxels']} | {r['images']} | {r['layers']} | {r['fit_cpu']:.1f} | {r['statistics']:.1f} | "
              f"{r['position_init']:.1f} | {r['epoch']:.2f} | {r['layer_choice']:.1f} | "
              f"{r['peak_rss_gib']:.2f} ({r['features_gib']:.2f})")
    proj = project(rows, NSD, args.nsd_epochs)
    print(f"\nEXTRAPOLATED (not measured) to {NSD['voxels']:,} voxels x {NSD['layers']} layers x "
          f"{NSD['images']:,} stimuli, one CPU core, {args.nsd_epochs} epochs: fit about {proj['fit'] / 3600:.1f} h "
          f"(statistics {proj['statistics'] / 60:.0f} min, position start {proj['position_init'] / 60:.0f} min, "
          f"{proj['epoch'] / 60:.0f} min per epoch, layer choice {proj['layer_choice'] / 60:.0f} min); peak memory "
          f"about {proj['memory_gib']:.0f} GiB of which {proj['features_gib']:.1f} GiB features held in memory")
    print("exponents (voxels, stimuli, layer ratio):",
          {p: proj[f"{p}_exponents"] for p in PHASES})
    if args.out:
        args.out.write_text(json.dumps({"points": rows, "nsd": proj, "nsd_epochs": args.nsd_epochs}, indent=1))


_CELL = """
import sys, time, json
sys.path.insert(0, {exp!r})
import torch
torch.set_num_threads(1)
import factortopy_recovery_matrix as M
from neuroreg.scoring import FactorTopy
import neuroreg
layers, feats, brain, truth = M._simulation("resnet18", 96, "point", 600, 240, 0)
cpu = time.process_time()
ft = FactorTopy(layers, random_state=0, progress=False).fit(feats, brain)
cpu = time.process_time() - cpu
acc, per = M._recovered(ft.best_layer_, truth, 4)
print(json.dumps({{"package": neuroreg.__file__, "cpu": cpu, "epochs": int(ft.n_epochs_), "accuracy": acc,
                  "per_layer": per}}))
"""


def issue_cell(rev: str, rounds: int) -> None:
    """The issue cell by the code of ``rev`` and by the working tree, alternately, in fresh processes."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "old.tar"
        subprocess.run(["git", "archive", "-o", str(archive), rev, "neuroreg"], cwd=ROOT, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(Path(tmp) / "old", filter="data")
        code = _CELL.format(exp=str(ROOT / "experiments"))
        results: dict[str, list] = {rev: [], "working tree": []}
        for _ in range(rounds):
            for name, path in ((rev, str(Path(tmp) / "old")), ("working tree", str(ROOT))):
                env = {**os.environ, "PYTHONPATH": path}
                out = subprocess.run(["nice", "-n", "10", sys.executable, "-c", code], capture_output=True,
                                     text=True, check=True, env=env, cwd=tmp)
                results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(name, json.dumps(results[name][-1]), flush=True)
    print("\ncode | fit CPU s (each round) | epochs | accuracy | per layer")
    for name, rs in results.items():
        cpus = ", ".join(f"{r['cpu']:.0f}" for r in rs)
        epochs = ", ".join(str(r["epochs"]) for r in rs)
        per = " ".join(f"{a:.2f}" for a in rs[-1]["per_layer"])
        print(f"{name} | {cpus} | {epochs} | {rs[-1]['accuracy']:.2f} | {per}")
    old = np.mean([r["cpu"] for r in results[rev]])
    new = np.mean([r["cpu"] for r in results["working tree"]])
    print(f"speed-up (mean CPU s): {old / new:.2f}x")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", action="store_true")
    parser.add_argument("--point", type=int, nargs=3, metavar=("VOXELS", "IMAGES", "LAYERS"))
    parser.add_argument("--issue-cell", metavar="REV", default=None)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--voxels", type=int, nargs="+", default=[1_000, 2_000])
    parser.add_argument("--images", type=int, nargs="+", default=[1_000, 2_000])
    parser.add_argument("--layers", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--nsd-epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="write the points and the projection as JSON")
    args = parser.parse_args(argv)
    if args.point:
        print(json.dumps(point(*args.point, epochs=args.epochs)))
    elif args.issue_cell:
        issue_cell(args.issue_cell, args.rounds)
    elif args.grid:
        grid(args)
    else:
        parser.error("give --grid, --issue-cell REV or --point V N L")


if __name__ == "__main__":
    main()
