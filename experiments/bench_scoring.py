"""Scoring core against its peers, side by side in one process on the same data.

1. RDM (1 - Pearson r), n = 1,000 stimuli x d = 100,000 features:
   ``neuroreg.scoring.rdm`` vs rsatoolbox ``calc_rdm(method="correlation")`` and
   ``1 - numpy.corrcoef``. Goal: >= 20x rsatoolbox, >= 1.5x numpy.
2. Ridge with leave-one-out alpha per target, n = 900, p = 5,920, v = 5,000,
   alphas ``logspace(-1, 5, 7)``: ``RidgeGCV`` (float64 and float32 products)
   vs scikit-learn ``RidgeCV(alpha_per_target=True)`` and himalaya ``RidgeCV``
   (5-fold CV, its default; it does not offer leave-one-out). Goal: >= 5x the
   faster peer with the same predictions and alphas as scikit-learn. Also timed:
   himalaya ``KernelRidgeCV(kernel="linear")``, which himalaya itself advises
   when samples < features (5-fold CV too, so its alphas differ).

Times are the best of ``--repeats`` runs, peers interleaved; peak memory is the
rise of the peak resident set size during one run (Linux:
the peak is reset through ``/proc/self/clear_refs``, so numpy, BLAS and torch
buffers all count; elsewhere tracemalloc's peak of Python-level allocations).
With a CUDA device, the neuroreg rows are repeated on it.

    python experiments/bench_scoring.py              # full sizes
    python experiments/bench_scoring.py --quick      # small sizes, seconds
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import time
import tracemalloc
import warnings

import numpy as np
import torch


def _timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _proc_status_mb(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def _release_free_heap() -> None:
    """Give memory freed by earlier runs back to the OS (glibc ``malloc_trim``), so this run's peak counts its own."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):                  # not glibc: the peak may then be understated
        pass


def _peak_mb(fn) -> float:
    """Extra peak memory (MB) of one call of ``fn``.

    Linux: the peak resident set size is reset to the current one through ``/proc/self/clear_refs``
    and read back after the call, in this process (a forked child can hang on BLAS/OpenMP
    threads started before the fork), after the heap freed by earlier runs went back to the OS.
    """
    gc.collect()
    if os.path.exists("/proc/self/clear_refs"):
        _release_free_heap()
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")                                  # reset the peak RSS to the current RSS
        base = _proc_status_mb("VmRSS")
        fn()
        return _proc_status_mb("VmHWM") - base
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2 ** 20


def bench_rdm(n: int, d: int, repeats: int) -> None:
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm

    from neuroreg.scoring import rdm

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d))
    print(f"\n== RDM (correlation distance), n = {n}, d = {d:,} (input {x.nbytes / 2**20:.0f} MB float64) ==")
    runs = {
        "neuroreg rdm": lambda: rdm(x),
        "numpy 1 - corrcoef": lambda: 1.0 - np.corrcoef(x),
        "rsatoolbox calc_rdm": lambda: calc_rdm(Dataset(x), method="correlation").get_matrices()[0],
    }
    times, outs = {}, {}
    for _ in range(repeats):                      # interleave peers
        for name, fn in runs.items():
            t, out = _timed(fn, 1)
            times[name] = min(times.get(name, float("inf")), t)
            outs[name] = out
    ours = outs["neuroreg rdm"]
    for name in runs:
        peak = _peak_mb(runs[name])
        err = np.abs(outs[name] - ours).max()
        ratio = times[name] / times["neuroreg rdm"]
        print(f"{name:24s} {times[name]:8.3f} s   peak {peak:8.1f} MB   max |diff| {err:.1e}   "
              f"neuroreg speed-up x{ratio:.2f}")
    if torch.cuda.is_available():
        xt = torch.from_numpy(x).float().cuda()
        rdm(xt)
        torch.cuda.synchronize()

        def gpu():
            out = rdm(xt)
            torch.cuda.synchronize()
            return out
        t, out = _timed(gpu, repeats)
        err = np.abs(out.double().cpu().numpy() - ours).max()
        print(f"{'neuroreg rdm (cuda f32)':24s} {t:8.3f} s   max |diff| {err:.1e}   "
              f"vs numpy x{times['numpy 1 - corrcoef'] / t:.1f}, vs rsatoolbox x{times['rsatoolbox calc_rdm'] / t:.1f}")


def bench_ridge(n: int, p: int, v: int, repeats: int) -> None:
    from himalaya.backend import set_backend
    from himalaya.kernel_ridge import KernelRidgeCV
    from himalaya.ridge import RidgeCV as HimalayaRidgeCV
    from sklearn.linear_model import RidgeCV

    from neuroreg.scoring import RidgeGCV

    alphas = np.logspace(-1, 5, 7)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, p))
    w = rng.normal(size=(p, v)) * rng.uniform(0, 1, size=v)
    y = x @ w / np.sqrt(p) + rng.normal(size=(n, v)) * rng.uniform(0.3, 5, size=v)
    x_test = rng.normal(size=(100, p))
    set_backend("numpy", on_error="warn")
    print(f"\n== RidgeCV, n = {n}, p = {p:,}, v = {v:,}, alphas = logspace(-1, 5, 7) ==")
    runs = {
        "neuroreg RidgeGCV f64": lambda: RidgeGCV(alphas).fit(x, y),
        "neuroreg RidgeGCV f32": lambda: RidgeGCV(alphas, dtype=torch.float32).fit(x, y),
        "sklearn RidgeCV (LOO)": lambda: RidgeCV(alphas=alphas, alpha_per_target=True).fit(x, y),
        "himalaya RidgeCV (5-fold)": lambda: HimalayaRidgeCV(alphas=alphas, fit_intercept=True).fit(x, y),
        "himalaya KernelRidgeCV": lambda: KernelRidgeCV(alphas=alphas, kernel="linear").fit(x, y),
    }
    times, models = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(repeats):
            for name, fn in runs.items():
                t, m = _timed(fn, 1)
                times[name] = min(times.get(name, float("inf")), t)
                models[name] = m
    sk = models["sklearn RidgeCV (LOO)"]
    ref_pred = sk.predict(x_test)
    faster_peer = min(times["sklearn RidgeCV (LOO)"], times["himalaya RidgeCV (5-fold)"])
    for name, m in models.items():
        pred = np.asarray(m.predict(x_test))
        rel = np.abs(pred - ref_pred).max() / np.abs(ref_pred).max()
        alpha = np.asarray(getattr(m, "best_alphas_", getattr(m, "alpha_", np.nan)))
        same_alpha = float(np.mean(alpha == np.asarray(sk.alpha_)))
        line = (f"{name:26s} {times[name]:8.2f} s   pred rel diff vs sklearn {rel:.1e}   "
                f"alphas equal to sklearn {100 * same_alpha:5.1f}%")
        if name.startswith("neuroreg"):
            line += (f"   speed-up vs faster peer x{faster_peer / times[name]:.2f}"
                     f", vs KernelRidgeCV x{times['himalaya KernelRidgeCV'] / times[name]:.2f}")
        print(line)
    print(f"  (X is {x.nbytes / 2**20:.0f} MB, Y {y.nbytes / 2**20:.0f} MB)")
    for name in runs:
        print(f"  peak memory {name:26s} {_peak_mb(runs[name]):8.1f} MB")
    if torch.cuda.is_available():
        xt, yt = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
        for dt in (torch.float64, torch.float32):
            RidgeGCV(alphas, dtype=dt).fit(xt, yt)
            torch.cuda.synchronize()

            def gpu():
                m = RidgeGCV(alphas, dtype=dt).fit(xt, yt)
                torch.cuda.synchronize()
                return m
            t, m = _timed(gpu, repeats)
            pred = m.predict(x_test)
            rel = np.abs(pred - ref_pred).max() / np.abs(ref_pred).max()
            same = float(np.mean(m.alpha_ == sk.alpha_))
            print(f"{'neuroreg cuda ' + str(dt).split('.')[-1]:26s} {t:8.2f} s   pred rel diff {rel:.1e}   "
                  f"alphas equal {100 * same:5.1f}%   speed-up vs faster peer x{faster_peer / t:.1f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (n = 300, d = 20,000; v = 500)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", choices=["rdm", "ridge"], default=None)
    ap.add_argument("--threads", type=int, default=None,
                    help="limit BLAS/OpenMP threads of every library alike (torch and numpy/scipy)")
    args = ap.parse_args(argv)
    if args.threads is not None:
        from threadpoolctl import threadpool_info, threadpool_limits

        # Load every library's BLAS/OpenMP first (scipy and numpy ship separate OpenBLAS
        # builds): threadpool_limits only reaches the pools already loaded.
        import himalaya.kernel_ridge  # noqa: F401
        import rsatoolbox.rdm  # noqa: F401
        import scipy.linalg  # noqa: F401
        import sklearn.linear_model  # noqa: F401

        import neuroreg.scoring  # noqa: F401
        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)
        pools = {f"{d['internal_api']} ({d['filepath'].rsplit('/', 1)[-1]})": d["num_threads"]
                 for d in threadpool_info()}
        print("thread pools:", ", ".join(f"{k}: {v}" for k, v in pools.items()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cuda: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    if args.only in (None, "rdm"):
        bench_rdm(300 if args.quick else 1000, 20_000 if args.quick else 100_000, args.repeats)
    if args.only in (None, "ridge"):
        bench_ridge(300 if args.quick else 900, 2000 if args.quick else 5920, 500 if args.quick else 5000,
                    args.repeats)


if __name__ == "__main__":
    main()
