"""Cost of running a sweep through the Ray backend, and the speed-up of the feature cache.

1. Overhead: the same cRSA jobs (``--models`` on both bundled sets) run
   (a) ``direct``: one after another in this process, a plain loop over ``run_job`` (the job
       function of every backend; it writes its features to a scratch HDF5 file that is deleted
       after each job, so no job reuses another's features),
   (b) ``local``: ``run_sweep(backend="local")`` (results store, status files, logs, merged
       table and side-by-side report),
   (c) ``ray``: ``run_sweep(backend="ray")`` on a local Ray cluster started here with
       ``ray.init(num_cpus=T)``, one job at a time (each job asks for all T CPUs, T = torch's
       thread count in this process, so the job runs with the same number of threads as
       ``direct``: Ray sets a worker's ``OMP_NUM_THREADS`` to its task's CPU request).
   The variants are repeated ``--repeats`` times in rotated order (direct, local, ray; then
   local, ray, direct; ...) so a change in the load of the machine hits each of them alike.
   Overhead = (variant - direct) / direct, per round, on wall time and on CPU time (user + sys
   of this process and of every process it started: Ray's GCS, raylet, agents and workers;
   read from /proc, so on Linux). Ray's overhead is given without its cluster start and stop
   (the sweep on a running cluster, as with ``--address auto``) and with them. The goal is
   < 10% for jobs of 30 s or more.
   Where Ray's time goes is read from the store's status files (``started``/``finished``
   stamps and each job's own ``seconds``): before the first job (task submission, worker
   process start, imports of torch and neuroreg in the worker), inside the jobs, the store's
   bookkeeping around each job, the gaps between jobs, and after the last (merge, results.csv,
   report).
2. Feature cache: a second scorer (veRSA after cRSA) on the first model at the same image size
   and a user set of the 92 Kriegeskorte stimuli with 50 simulated voxels, with the features
   read from the cache vs extracted again, repeated ``--repeats`` times in alternating order.

    python experiments/bench_sweep.py --quick                     # seconds per job: checks the script
    python experiments/bench_sweep.py --models resnet50 vone_resnet50 --image-size 224 \
        --repeats 2 --variants direct ray --out bench_sweep.json  # jobs of 30 s or more
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

VARIANTS = ("direct", "local", "ray")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _self_cpu() -> float:
    """User + sys seconds of this process."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def _descendants() -> dict[int, tuple[str, float]]:
    """pid -> (name, user + sys seconds with its waited-for children) of every live descendant of this process."""
    parent: dict[int, int] = {}
    cpu: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:  # exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (name) ": state, ppid, ...
        parent[int(entry)] = int(fields[1])
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        cpu[int(entry)] = name, sum(int(v) for v in fields[11:15]) / _TICK  # utime stime cutime cstime
    out: dict[int, tuple[str, float]] = {}
    frontier = [os.getpid()]
    while frontier:
        pid = frontier.pop()
        for child, pp in parent.items():
            if pp == pid:
                out[child] = cpu[child]
                frontier.append(child)
    return out


def _descendant_cpu() -> float:
    return sum(cpu for _, cpu in _descendants().values())


def _by_process(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds between two snapshots per kind of process: Ray's workers (``ray::IDLE`` or the task's
    name), its agents (``ray::...Agent``, ``ray::RuntimeEnv...``), ``gcs_server``, ``raylet``, and
    ``python`` (Ray's log and event monitors)."""
    out: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        kind = name
        if name.startswith("ray::") and not any(w in name for w in ("Agent", "Dashboard", "RuntimeEnv")):
            kind = "workers"
        out[kind] = out.get(kind, 0.0) + cpu - before.get(pid, ("", 0.0))[1]
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _cpu() -> float:
    return _self_cpu() + _descendant_cpu()


def _timeline(store_root: Path, t_begin: float, t_end: float) -> dict[str, Any]:
    """Where a sweep's wall time went, from the status files of its jobs (one job at a time)."""
    from neuroreg.sweep import SweepStore
    st = SweepStore(store_root)
    status = [st.status(k) for k in st.keys()]
    if not status or any(s["state"] != "done" for s in status):
        raise RuntimeError(f"sweep in {store_root} did not finish every job: {[s['state'] for s in status]}")
    starts = [float(s["started"]) for s in status]
    ends = [float(s["finished"]) for s in status]
    inside = sum(float(s["seconds"]) for s in status)
    held = sum(e - s for s, e in zip(starts, ends))
    return {"before_first_job": min(starts) - t_begin, "inside_jobs": inside, "bookkeeping": held - inside,
            "between_jobs": (max(ends) - min(starts)) - held, "after_last_job": t_end - max(ends),
            "job_seconds": [float(s["seconds"]) for s in status]}


def _direct(cfg: dict[str, Any]) -> dict[str, Any]:
    from neuroreg.sweep import SweepStore, expand_jobs, load_sweep_config
    from neuroreg.sweep.jobs import run_job
    jobs = expand_jobs(load_sweep_config(cfg))
    with tempfile.TemporaryDirectory() as tmp:
        store = SweepStore(tmp)
        c0, t0 = _self_cpu(), time.perf_counter()
        seconds = []
        for job in jobs:
            t = time.perf_counter()
            run_job(job, store)
            seconds.append(time.perf_counter() - t)
            for f in store.feature_dir.glob("*.h5"):  # no cache between jobs: as a plain loop would do
                f.unlink()
        return {"wall": time.perf_counter() - t0, "cpu": _self_cpu() - c0, "job_seconds": seconds}


def _local(cfg: dict[str, Any]) -> dict[str, Any]:
    from neuroreg.sweep import run_sweep
    with tempfile.TemporaryDirectory() as tmp:
        c0, t0, w0 = _self_cpu(), time.perf_counter(), time.time()
        run_sweep(cfg, tmp, backend="local", progress=False)
        wall, cpu, w1 = time.perf_counter() - t0, _self_cpu() - c0, time.time()
        return {"wall": wall, "cpu": cpu, **_timeline(Path(tmp), w0, w1)}


def _ray(cfg: dict[str, Any], cpus: int) -> dict[str, Any]:
    """The sweep on a local Ray cluster started here; CPU includes Ray's processes (read while they live)."""
    import ray
    from neuroreg.sweep import run_sweep
    with tempfile.TemporaryDirectory() as tmp:
        c0, t0 = _cpu(), time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        c1, t1, w1 = _cpu(), time.perf_counter(), time.time()
        p1 = _descendants()
        try:
            run_sweep(cfg, tmp, backend="ray", progress=False)  # uses the session started above
            c2, t2, w2 = _cpu(), time.perf_counter(), time.time()
            p2 = _descendants()
        finally:
            ray.shutdown()
        t3 = time.perf_counter()
        return {"wall": t2 - t1, "cpu": c2 - c1, "start_wall": t1 - t0, "start_cpu": c1 - c0, "stop_wall": t3 - t2,
                "processes_cpu": _by_process(p1, p2), **_timeline(Path(tmp), w1, w2)}


def _import_seconds() -> dict[str, float]:
    """Wall and CPU time of a fresh Python process that imports what a sweep worker imports."""
    import subprocess
    import sys
    code = "import neuroreg.sweep.jobs, neuroreg.scoring"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall, "cpu": after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime}


def _user_set(folder: Path, size: int) -> dict[str, str]:
    """The 92 Kriegeskorte stimuli as a user set (PNG files) with 50 simulated voxels (seeded)."""
    from PIL import Image

    from neuroreg.brain import load_kriegeskorte92
    data = load_kriegeskorte92()
    rng = np.random.default_rng(0)
    x = data.images_tensor(size=32).flatten(1).numpy()
    resp = x @ rng.normal(size=(x.shape[1], 50)) + rng.normal(size=(len(x), 50))
    (folder / "images").mkdir(parents=True)
    imgs = data.images_tensor(size=size)
    ids = [f"s{i:03d}" for i in range(len(x))]
    for i, sid in enumerate(ids):
        Image.fromarray((imgs[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(
            folder / "images" / f"{sid}.png")
    np.savez(folder / "r.npz", responses=resp, stimulus_ids=np.array(ids))
    return {"responses": str(folder / "r.npz"), "stimuli": str(folder / "images"), "label": "user"}


def _second_scorer(base: dict[str, Any], store: Path) -> dict[str, Any]:
    """veRSA on ``store`` (after cRSA there when the cache is warm): wall, CPU, the job's own seconds."""
    from neuroreg.sweep import SweepStore, run_sweep
    c0, t0 = _self_cpu(), time.perf_counter()
    run_sweep({**base, "scorers": ["versa"]}, store, progress=False)
    wall, cpu = time.perf_counter() - t0, _self_cpu() - c0
    st = SweepStore(store)
    (key,) = [k for k in st.keys() if "-versa-" in k]
    return {"wall": wall, "cpu": cpu, "job": float(st.status(key)["seconds"])}


def _cache(model: str, options: dict[str, Any], size: int, repeats: int) -> list[dict[str, Any]]:
    from neuroreg.sweep import run_sweep
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        base = {"models": [model], "brain": [_user_set(Path(tmp) / "user", size)], "options": options}
        for r in range(repeats):
            warm, fresh = Path(tmp) / f"warm{r}", Path(tmp) / f"fresh{r}"
            c0, t0 = _self_cpu(), time.perf_counter()
            run_sweep({**base, "scorers": ["crsa"]}, warm, progress=False)  # extracts and caches
            first = {"wall": time.perf_counter() - t0, "cpu": _self_cpu() - c0}
            out: dict[str, Any] = {"first_scorer": first}
            for name in (("cached", "extracting") if r % 2 == 0 else ("extracting", "cached")):
                out[name] = _second_scorer(base, warm if name == "cached" else fresh)
            rounds.append(out)
    return rounds


def _ratio(x: float, ref: float) -> float:
    return (x - ref) / ref


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "vone_resnet50"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--layers", default="areas", help="layers option of the jobs (areas, all, or a name)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of every variant, in rotated order")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--no-cache-bench", action="store_true", help="skip the feature-cache measurement")
    parser.add_argument("--quick", action="store_true", help="cornet_z at 64 px, one round: seconds, not the "
                        "< 10%% regime")
    parser.add_argument("--out", type=Path, help="also write every measurement to this JSON file")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1; got {args.repeats}")
    if "direct" not in args.variants:
        parser.error(f"--variants must include direct (the reference); got {args.variants}")
    models = ["cornet_z"] if args.quick else args.models
    size = 64 if args.quick else args.image_size
    repeats = 1 if args.quick else args.repeats

    import torch

    import neuroreg.scoring  # noqa: F401  imported here once, so no variant pays this process's imports
    import neuroreg.sweep.jobs  # noqa: F401
    threads = torch.get_num_threads()
    options = {"layers": args.layers, "batch_size": 32, "seed": 0, "image_size": size, "cpus_per_job": threads}
    cfg = {"models": models, "brain": ["kriegeskorte92", "algonauts2019_78"], "scorers": ["crsa"],
           "options": options}
    n_jobs = 2 * len(models)
    rounds: list[dict[str, dict[str, Any]]] = []
    for r in range(repeats):
        order = [args.variants[(r + i) % len(args.variants)] for i in range(len(args.variants))]
        res: dict[str, dict[str, Any]] = {}
        for variant in order:
            res[variant] = (_direct(cfg) if variant == "direct" else _local(cfg) if variant == "local"
                            else _ray(cfg, threads))
        rounds.append(res)
    imports = _import_seconds()

    direct = [rd["direct"] for rd in rounds]
    per_job = float(np.mean([s for d in direct for s in d["job_seconds"]]))
    print(f"{n_jobs} cRSA jobs ({', '.join(models)} x kriegeskorte92, algonauts2019_78; {size} px, layers "
          f"{args.layers}), torch threads {threads}, {repeats} round(s); {per_job:.1f} s per job directly")
    print(f"{'round':<6}{'variant':<38}{'wall s':>9}{'overhead':>10}{'CPU s':>9}{'overhead':>10}")
    summary: dict[str, list[float]] = {}
    for r, rd in enumerate(rounds):
        d = rd["direct"]
        print(f"{r:<6}{'direct loop (run_job, no store)':<38}{d['wall']:>9.1f}{'':>10}{d['cpu']:>9.1f}")
        lines = []
        if "local" in rd:
            lines.append(("local backend", rd["local"]["wall"], rd["local"]["cpu"]))
        if "ray" in rd:
            ray_ = rd["ray"]
            lines.append(("ray backend, running cluster", ray_["wall"], ray_["cpu"]))
            lines.append(("ray backend, with cluster start+stop", ray_["wall"] + ray_["start_wall"]
                          + ray_["stop_wall"], ray_["cpu"] + ray_["start_cpu"]))
        for name, wall, cpu in lines:
            summary.setdefault(name + " wall", []).append(_ratio(wall, d["wall"]))
            summary.setdefault(name + " cpu", []).append(_ratio(cpu, d["cpu"]))
            print(f"{'':<6}{name:<38}{wall:>9.1f}{_ratio(wall, d['wall']):>10.1%}{cpu:>9.1f}"
                  f"{_ratio(cpu, d['cpu']):>10.1%}")
    print("mean overhead over rounds: " + "; ".join(f"{k} {np.mean(v):+.1%}" for k, v in summary.items()))
    if "ray" in args.variants:
        print("where the ray sweep's wall time went (s, per round):")
        for r, rd in enumerate(rounds):
            ray_, d = rd["ray"], rd["direct"]
            print(f"  round {r}: cluster start {ray_['start_wall']:.1f} (CPU {ray_['start_cpu']:.1f}), "
                  f"before first job {ray_['before_first_job']:.1f}, inside jobs {ray_['inside_jobs']:.1f} "
                  f"(direct {sum(d['job_seconds']):.1f}), store bookkeeping {ray_['bookkeeping']:.2f}, "
                  f"between jobs {ray_['between_jobs']:.2f}, after last job {ray_['after_last_job']:.1f}, "
                  f"cluster stop {ray_['stop_wall']:.1f}")
            procs = ", ".join(f"{k} {v:.1f}" for k, v in ray_["processes_cpu"].items() if v >= 0.05)
            print(f"    CPU s of Ray's processes during the sweep: {procs}; this process "
                  f"{ray_['cpu'] - sum(ray_['processes_cpu'].values()):.1f}")
        print(f"  a fresh process importing neuroreg.sweep.jobs and neuroreg.scoring: {imports['wall']:.1f} s "
              f"wall, {imports['cpu']:.1f} s CPU")
    verdict = float(np.mean(summary.get("ray backend, running cluster wall", [float("nan")])))
    regime = "jobs >= 30 s" if per_job >= 30 else f"jobs of {per_job:.0f} s: below the 30 s regime of the goal"
    print(f"goal: ray overhead < 10% for jobs >= 30 s: {verdict:+.1%} on a running cluster ({regime})")

    cache: list[dict[str, Any]] = []
    if not args.no_cache_bench:
        cache = _cache(models[0], options, size, repeats)
        for r, c in enumerate(cache):
            e, h = c["extracting"], c["cached"]
            print(f"second scorer (veRSA) on {models[0]}, round {r}: job {e['job']:.1f} s extracting again, "
                  f"{h['job']:.1f} s from the feature cache (x{e['job'] / h['job']:.2f}); sweep wall "
                  f"{e['wall']:.1f} vs {h['wall']:.1f} s, CPU {e['cpu']:.1f} vs {h['cpu']:.1f} s "
                  f"(x{e['cpu'] / h['cpu']:.2f}); first scorer (cRSA, extracts) {c['first_scorer']['wall']:.1f} s")
    if args.out:
        from neuroreg._utils.io import atomic_write_text
        record = {"models": models, "image_size": size, "layers": args.layers, "threads": threads,
                  "jobs": n_jobs, "rounds": rounds, "imports": imports, "cache": cache,
                  "cpu_count": os.cpu_count(), "load_average_at_end": os.getloadavg()}
        atomic_write_text(args.out, json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
