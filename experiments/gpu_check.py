"""One device check: what the project measures on the device it is given, written to one JSON (and a Markdown table).

Sections (each a flat mapping of figure -> finite positive number):

- ``training``: training-step throughput (task images/s; forward, loss, backward, SGD step) of CORnet-Z and
  VOne-CORnet-S, fp32 and, on CUDA, under bf16 and fp16 autocast (steps from ``bench_training``);
- ``extraction``: ``neuroreg.extract`` images/s of VOne-CORnet-S with per-stimulus noise on;
- ``scoring``: seconds of ``rdm`` (on the device) against numpy and rsatoolbox (CPU), of ``crsa`` on the device,
  and of ``RidgeGCV`` (on the device) against scikit-learn ``RidgeCV(alpha_per_target=True)``, at a few sizes;
  the peers where installed;
- ``noise``: the counter-based per-stimulus draw against ``torch.randn`` and the earlier per-image generators
  (``bench_stimulus_noise.time_draws``);
- ``attacks``: images/s of PGD on a ResNet-18 and of EOT-PGD and APGD-CE on a VOne-ResNet-18 (models from
  ``bench_robustness``), AutoAttack too outside ``--tiny``.

    python experiments/gpu_check.py --device cuda --out gpu_check.json       # minutes on one GPU
    python experiments/gpu_check.py --device cpu --tiny --out cpu_tiny.json  # seconds on a CPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import timed  # noqa: E402
import bench_robustness  # noqa: E402  (sibling scripts: their measuring functions are reused, not copied)
import bench_scoring  # noqa: E402
import bench_stimulus_noise  # noqa: E402
import bench_training  # noqa: E402

import neuroreg as nr  # noqa: E402
from neuroreg._utils.io import atomic_write_text  # noqa: E402
from neuroreg.brain import BrainData  # noqa: E402
from neuroreg.finetune import build_model  # noqa: E402

# per mode: sizes chosen so that --tiny takes seconds on one CPU core and the full check minutes on one GPU
SIZES = {
    "tiny": {"train_models": ("cornet_z", "vone_cornet_s"), "train_size": 32, "train_batch": 4, "train_steps": 2,
             "train_kwargs": {"vone_cornet_s": {"simple_channels": 16, "complex_channels": 16, "times": (1, 1, 1)}},
             "extract_n": 16, "extract_size": 32, "rdm": ((100, 500),), "ridge": ((120, 200, 50),),
             "noise": (4, (16, 8, 8)), "attack_size": 32, "attack_batch": 2, "attack_steps": 2, "eot_iter": 2,
             "autoattack": False},
    "full": {"train_models": ("cornet_z", "cornet_s", "vone_cornet_s"), "train_size": 224, "train_batch": 128,
             "train_steps": 10, "train_kwargs": {}, "extract_n": 1024, "extract_size": 224,
             "rdm": ((1000, 100_000), (10_000, 4096)),
             "ridge": ((900, 5920, 5000), (9000, 5920, 15_000)), "noise": (64, (256, 56, 56)),
             "attack_size": 224, "attack_batch": 64, "attack_steps": 10, "eot_iter": 4, "autoattack": True},
}
PEER_MAX_N = 2000          # rsatoolbox and scikit-learn are run up to this many stimuli (minutes beyond)
CRSA_MAX_N = 5000          # crsa's brain side (RDMs, ceiling) is float64 on the CPU: minutes beyond


def _to(obj, device: torch.device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(v, device) for v in obj)
    return obj


def _median_time(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = [timed(fn, device) for _ in range(repeats)]
    return statistics.median(times)


@contextlib.contextmanager
def _model_kwargs(kwargs: dict[str, dict]) -> Iterator[None]:
    """While active, ``bench_training`` builds each named model with these extra keywords (smaller networks)."""
    def build(name: str, num_classes: int, pretrained: bool = False, areas: dict[str, str] | None = None,
              **kw) -> torch.nn.Module:
        return build_model(name, num_classes, pretrained, areas, **{**kwargs.get(name, {}), **kw})
    saved, bench_training.build_model = bench_training.build_model, build
    try:
        yield
    finally:
        bench_training.build_model = saved


def check_training(device: torch.device, sz: dict) -> dict[str, float]:
    """Task images/s of a training step per model and precision."""
    precisions: list[tuple[str, torch.dtype | None]] = [("fp32", None)]
    if device.type == "cuda":
        precisions += [("bf16", torch.bfloat16), ("fp16", torch.float16)]
    out = {}
    for name in sz["train_models"]:
        with _model_kwargs(sz["train_kwargs"]):
            # no alignment term: the neural data and target are not used (None)
            module, opt, batches = bench_training._setup(name, False, None, None,  # type: ignore[arg-type]
                                                         size=sz["train_size"],
                                                         batch=sz["train_batch"], neural_batch=0, n_batches=2)
        module.to(device)
        batches = [_to(b, device) for b in batches]
        for label, dtype in precisions:
            def step(i: list[int] = [0]) -> None:
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    bench_training._step(module, opt, batches[i[0] % len(batches)])
                i[0] += 1
            t = _median_time(step, device, sz["train_steps"])
            out[f"{name}_{label}_images_per_s"] = sz["train_batch"] / t
    return out


def check_extraction(device: torch.device, sz: dict) -> dict[str, float]:
    """``extract`` images/s of VOne-CORnet-S (V1 and IT) with per-stimulus noise."""
    kw = {"image_size": sz["extract_size"]}
    if sz["extract_size"] < 224:
        kw.update(simple_channels=8, complex_channels=8, times=(1, 1, 1))
    torch.manual_seed(0)
    model = nr.create_model("vone_cornet_s", **kw).eval()
    n = sz["extract_n"]
    images = torch.rand(n, 3, sz["extract_size"], sz["extract_size"], generator=torch.Generator().manual_seed(0))
    ids = [f"img{i:05d}" for i in range(n)]

    def run() -> None:
        nr.extract(model, images, ["V1", "IT"], stimulus_ids=ids, batch_size=min(n, 64), device=device,
                   progress=False)
    t = _median_time(run, device, 3)
    return {"vone_cornet_s_noise_images_per_s": n / t}


def _brain(n: int, rng: np.random.Generator) -> BrainData:
    units = 20
    return BrainData(rng.normal(size=(n, 2 * units)), [f"s{i:05d}" for i in range(n)],
                        {"roi": np.array(["IT"] * (2 * units)), "subject": np.repeat(["a", "b"], units)})


def check_scoring(device: torch.device, sz: dict) -> dict[str, float]:
    """Seconds of the scoring core on ``device`` and of its peers on the CPU."""
    from neuroreg.scoring import RidgeGCV, crsa, rdm
    rng = np.random.default_rng(0)
    out: dict[str, float] = {}
    for n, d in sz["rdm"]:
        x = rng.normal(size=(n, d)).astype(np.float32)
        xt = torch.from_numpy(x).to(device)
        out[f"rdm_n{n}_d{d}_s"] = _median_time(lambda: rdm(xt), device, 3)
        if n <= CRSA_MAX_N:
            brain = _brain(n, rng)
            out[f"crsa_n{n}_d{d}_s"] = _median_time(
                lambda: crsa({"layer": xt}, brain, device=device, progress=False), device, 1)
        if n <= PEER_MAX_N:
            out[f"numpy_rdm_n{n}_d{d}_s"] = bench_scoring._timed(lambda: 1.0 - np.corrcoef(x), 2)[0]
            try:
                from rsatoolbox.data import Dataset
                from rsatoolbox.rdm import calc_rdm
            except ImportError:
                pass
            else:
                out[f"rsatoolbox_rdm_n{n}_d{d}_s"] = bench_scoring._timed(
                    lambda: calc_rdm(Dataset(x.astype(np.float64)), method="correlation"), 2)[0]
    alphas = np.logspace(-1, 5, 7)
    for n, p, v in sz["ridge"]:
        X, Y = rng.normal(size=(n, p)).astype(np.float32), rng.normal(size=(n, v)).astype(np.float32)
        Xt, Yt = torch.from_numpy(X).to(device), torch.from_numpy(Y).to(device)
        out[f"ridge_gcv_n{n}_p{p}_v{v}_s"] = _median_time(
            lambda: RidgeGCV(alphas, device=device, dtype=torch.float32).fit(Xt, Yt), device, 2)
        if n <= PEER_MAX_N:
            from sklearn.linear_model import RidgeCV
            out[f"sklearn_ridgecv_n{n}_p{p}_v{v}_s"] = bench_scoring._timed(
                lambda: RidgeCV(alphas=alphas, alpha_per_target=True).fit(X, Y), 1)[0]
    return out


def check_noise(device: torch.device, sz: dict) -> dict[str, float]:
    """The counter-based draw against ``torch.randn`` and the per-image generators, seconds and ratios."""
    batch, shape = sz["noise"]
    return bench_stimulus_noise.time_draws(batch, shape, device, repeats=5)


def check_attacks(device: torch.device, sz: dict) -> dict[str, float]:
    """Attacked images/s (labels: the model's own predictions, so every image is attacked)."""
    from neuroreg.robustness import RobustClassifier, make_attack
    size, batch, steps = sz["attack_size"], sz["attack_batch"], sz["attack_steps"]
    torch.manual_seed(0)
    plain = RobustClassifier(bench_robustness.resnet18(10), num_classes=10).to(device).eval()
    vone = RobustClassifier(bench_robustness.vone_resnet18(size, 10), (0.5,) * 3, (0.5,) * 3,
                            num_classes=10).to(device).eval()
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    cases = [("pgd", plain, 1), ("eotpgd", vone, sz["eot_iter"]), ("apgd-ce", vone, sz["eot_iter"])]
    if sz["autoattack"]:
        cases.append(("autoattack", vone, sz["eot_iter"]))
    out = {}
    for name, model, draws in cases:
        with torch.no_grad():
            y = model(x).argmax(1)
        attack = make_attack(name, model, 4 / 255, steps=steps, eot_iter=draws)
        t = _median_time(lambda: attack(x, y), device, 1 if name == "autoattack" else 2,
                         warmup=0 if name == "autoattack" else 1)
        out[f"{name}_{'resnet18' if model is plain else 'vone_resnet18'}_images_per_s"] = batch / t
    return out


SECTIONS: dict[str, Callable[[torch.device, dict], dict[str, float]]] = {
    "training": check_training, "extraction": check_extraction, "scoring": check_scoring,
    "noise": check_noise, "attacks": check_attacks,
}


def markdown(report: dict) -> str:
    """The report as a Markdown table: section, figure, value."""
    lines = [f"Device: {report['device']} | torch {report['torch']} | {'tiny' if report['tiny'] else 'full'} "
             f"sizes | {report['seconds']:.0f} s", "", "| section | figure | value |", "|---|---|---|"]
    for section, figures in report["sections"].items():
        for name, value in figures.items():
            lines.append(f"| {section} | {name} | {value:.4g} |")
    return "\n".join(lines) + "\n"


def run(device: torch.device, tiny: bool, only: list[str] | None = None) -> dict:
    """Every section (or those in ``only``) on ``device``; the report as a JSON-ready dict."""
    sz = SIZES["tiny" if tiny else "full"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    report: dict = {"device": f"{device.type}: {name}", "torch": torch.__version__, "cuda": torch.version.cuda,
                    "threads": torch.get_num_threads(), "tiny": tiny, "sections": {}}
    t0 = time.perf_counter()
    for section, fn in SECTIONS.items():
        if only and section not in only:
            continue
        ts = time.perf_counter()
        figures = fn(device, sz)
        bad = {k: v for k, v in figures.items() if not (math.isfinite(v) and v > 0)}
        if bad:
            raise RuntimeError(f"section {section!r} measured non-finite or non-positive figures: {bad}")
        report["sections"][section] = figures
        print(f"{section}: {time.perf_counter() - ts:.1f} s  " + ", ".join(f"{k} {v:.4g}" for k, v in figures.items()),
              flush=True)
    report["seconds"] = time.perf_counter() - t0
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--tiny", action="store_true", help="small sizes: seconds on a CPU (the slow test lane)")
    ap.add_argument("--out", type=Path, default=None, help="JSON report (a Markdown table is written beside it)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads (default: 1 with --tiny on the CPU, which runs beside other work; else torch's)")
    ap.add_argument("--only", nargs="*", choices=list(SECTIONS), default=None, help="run only these sections")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device")
    threads = args.threads if args.threads is not None else (1 if args.tiny and args.device == "cpu" else None)
    if threads is not None:
        torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    report = run(torch.device(args.device), args.tiny, args.only)
    table = markdown(report)
    print(table)
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
        atomic_write_text(args.out.with_suffix(".md"), table)


if __name__ == "__main__":
    main()
