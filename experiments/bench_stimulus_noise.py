"""Per-stimulus VOneBlock noise: the counter-based draw against ``torch.randn`` and the earlier per-image generators.

Three ways to fill a ``(batch, channels, size, size)`` float32 standard-normal draw on one device:

- ``counter``: :func:`neuroreg.models.stimulus_noise.counter_normal` (SplitMix64 words + Box-Muller through the
  half angle, 24 tensor passes per block of 2**17 pairs on the device), one key per image;
- ``randn``: ``torch.randn`` of the same shape on the same device (no per-stimulus keying; the bar, goal <= 1.2x);
- ``generators``: the earlier draw, one CPU ``torch.Generator`` per image seeded by a hash, spread over a thread
  pool, then copied to the device.

Rounds are interleaved (counter, randn, generators, counter, ...) so load on a shared machine hits all alike;
each figure is the median over ``--repeats`` rounds, and the whole measurement is repeated ``--trials`` times
(the median ratio is printed last). On a CPU the process's CPU seconds of each call are reported beside the wall
seconds: on a shared machine the wall clock also counts the time other jobs held the core, the CPU seconds
only the work (the counter draw and ``torch.randn`` both run on one thread).

    python experiments/bench_stimulus_noise.py                       # CPU, 16 x 256 x 56 x 56 (VOneBlock at 224 px)
    python experiments/bench_stimulus_noise.py --threads 1 --trials 5
    python experiments/bench_stimulus_noise.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from neuroreg.models.stimulus_noise import counter_normal, stimulus_key

from _timing import interleaved_times


def generator_draw(seeds: list[int], shape: tuple[int, ...], device: torch.device,
                   pool: ThreadPoolExecutor | None) -> torch.Tensor:
    """The earlier per-stimulus draw: ``torch.randn(shape, generator=Generator(seed))`` per image on the CPU."""
    out = torch.empty((len(seeds), *shape))

    def draw(k: int) -> None:
        torch.randn(shape, generator=torch.Generator().manual_seed(seeds[k]), out=out[k])

    if pool is not None and len(seeds) > 1:
        list(pool.map(draw, range(len(seeds))))
    else:
        for k in range(len(seeds)):
            draw(k)
    return out.to(device)


def time_draws(batch: int, shape: tuple[int, ...], device: str | torch.device = "cpu", repeats: int = 5,
               with_generators: bool = True) -> dict[str, float]:
    """Median seconds per draw of ``batch`` images of ``shape`` (per image) for each method, and their ratios.

    Returns ``{"counter_s", "randn_s", ["generators_s"], "counter_vs_randn", ["counter_vs_generators"]}`` (wall
    seconds) and on a CPU also ``{"counter_cpu_s", "randn_cpu_s", "counter_vs_randn_cpu"}``: the process's CPU
    seconds of each call (median over the rounds).
    """
    device = torch.device(device)
    n = 1
    for s in shape:
        n *= s
    keys = [stimulus_key(0, 0, f"img{i:05d}") for i in range(batch)]
    seeds = [k & (2 ** 63 - 1) for k in keys]
    pool = ThreadPoolExecutor(max_workers=torch.get_num_threads()) if torch.get_num_threads() > 1 else None
    fns: dict[str, Callable[[], object]] = {
        "counter": lambda: counter_normal(keys, n, device=device).view(batch, *shape),
        "randn": lambda: torch.randn((batch, *shape), device=device),
    }
    if with_generators:
        fns["generators"] = lambda: generator_draw(seeds, shape, device, pool)
    cpu: dict[str, list[float]] = {name: [] for name in fns}

    def cpu_timed(name: str, fn: Callable[[], object]) -> Callable[[], object]:
        def call() -> object:
            t0 = time.process_time()
            result = fn()
            cpu[name].append(time.process_time() - t0)
            return result
        return call

    try:
        times = interleaved_times({name: cpu_timed(name, fn) for name, fn in fns.items()}, repeats, device)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    out = {f"{k}_s": statistics.median(v) for k, v in times.items()}
    out["counter_vs_randn"] = out["counter_s"] / out["randn_s"]
    if device.type == "cpu":
        for name in ("counter", "randn"):
            out[f"{name}_cpu_s"] = statistics.median(cpu[name][1:])      # the first call is the warm-up
        out["counter_vs_randn_cpu"] = out["counter_cpu_s"] / out["randn_cpu_s"]
    if with_generators:
        out["counter_vs_generators"] = out["counter_s"] / out["generators_s"]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--batch", type=int, default=16, help="images per draw")
    ap.add_argument("--channels", type=int, default=256, help="VOneBlock output channels")
    ap.add_argument("--size", type=int, default=56, help="VOneBlock output map side (56 for 224 px input)")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved rounds per trial")
    ap.add_argument("--trials", type=int, default=3, help="independent trials; the median ratio is reported")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    shape = (args.channels, args.size, args.size)
    print(f"device {args.device} | {args.batch} x {args.channels} x {args.size} x {args.size} float32 "
          f"({args.batch * args.channels * args.size ** 2 / 1e6:.1f} M numbers) | threads {torch.get_num_threads()} "
          f"| median of {args.repeats} rounds, {args.trials} trials")
    vs_randn, vs_gen, vs_randn_cpu = [], [], []
    for trial in range(args.trials):
        r = time_draws(args.batch, shape, args.device, args.repeats)
        vs_randn.append(r["counter_vs_randn"])
        vs_gen.append(r["counter_vs_generators"])
        cpu = ""
        if "counter_vs_randn_cpu" in r:
            vs_randn_cpu.append(r["counter_vs_randn_cpu"])
            cpu = (f" | CPU s: counter {r['counter_cpu_s'] * 1e3:8.2f} ms, randn {r['randn_cpu_s'] * 1e3:8.2f} ms, "
                   f"{r['counter_vs_randn_cpu']:.2f}x")
        print(f"trial {trial}: counter {r['counter_s'] * 1e3:8.2f} ms | randn {r['randn_s'] * 1e3:8.2f} ms | "
              f"generators {r['generators_s'] * 1e3:8.2f} ms | counter/randn {r['counter_vs_randn']:.2f}x | "
              f"counter/generators {r['counter_vs_generators']:.2f}x{cpu}", flush=True)
    cpu = f", in CPU seconds {statistics.median(vs_randn_cpu):.2f}x" if vs_randn_cpu else ""
    print(f"median over trials: counter/randn {statistics.median(vs_randn):.2f}x{cpu} (goal <= 1.2x), "
          f"counter/generators {statistics.median(vs_gen):.2f}x")


if __name__ == "__main__":
    main()
