"""Peak memory of load_nsd on a many-session NSD-format tree, relative to the array it returns.

Writes an NSD tree in the exact on-disk format (tests/fixtures/nsd_format.py):
``--sessions`` sessions of 750 trials, a ``--voxels``-voxel nsdgeneral ROI and the
1,000 shared images shown three times each. Then, each in a fresh process:

- ``load_nsd`` (per-session z-scoring, repeat averaging, trials dropped) and
  ``load_nsd`` keeping the ``(3, 1000, V)`` trials;
- the peer: the common hand-written loop that reads each session's whole
  betas volume, masks it, z-scores it and stacks every selected trial before averaging.

It also times one session read in the public files' chunk geometry (750, 1, 1, 1)
against the former reader (75 trials of the whole ROI box at a time).

Peak memory is the growth of the process's maximum resident set over the
load (``ru_maxrss``, kilobytes on Linux) and, for numpy allocations, tracemalloc's peak. Ratios are
against the size of the float64 ``(1000, V)`` response array (and, for the
trials run, against everything returned).

    python experiments/bench_brain_data.py               # 8 sessions, 15,000 voxels
    python experiments/bench_brain_data.py --sessions 4 --voxels 2000   # quick
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

_CHILD = r"""
import json, resource, sys, time, tracemalloc
import numpy as np
mode, root = sys.argv[1], sys.argv[2]
import h5py, scipy.io, scipy.stats
from neuroreg.brain import load_nsd, read_nsd_design
from neuroreg.brain._volumes import find_volume, read_volume
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:  # current RSS (Linux); elsewhere the peak so far is the baseline
    with open("/proc/self/statm") as f:
        rss_now = int(f.read().split()[1]) * resource.getpagesize() // 1024
except OSError:
    rss_now = base
tracemalloc.start()
t0 = time.perf_counter()
if mode in ("load_nsd", "load_nsd_trials"):
    b = load_nsd(root, 1, images="shared1000", keep_trials=(mode == "load_nsd_trials"), progress=False)
    shape = b.responses.shape
    returned = b.responses.nbytes + (b.trials.nbytes if b.trials is not None else 0)
elif mode in ("session_before", "session_after"):  # one session's ROI betas, all 750 trials
    from pathlib import Path
    from neuroreg.brain import nsd as nsd_module
    r = Path(root)
    vox = nsd_module._roi_voxels(r, 1, "func1pt8mm", ["nsdgeneral"], None)
    path = r / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session01.hdf5"
    if mode == "session_after":
        out, _ = nsd_module._read_session(path, vox, None, 0, 75)
    else:  # the former reader: 75 trials of the whole ROI box at a time, whatever the file's chunking
        zyx = vox["xyz"][:, ::-1]
        lo, hi = zyx.min(0), zyx.max(0) + 1
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        local = tuple((zyx - lo).T)
        out = np.empty((750, len(zyx)), dtype=np.float32)
        with h5py.File(path, "r") as f:
            for start in range(0, 750, 75):
                out[start:start + 75] = f["betas"][(slice(start, start + 75),) + box][(slice(None),) + local]
        out /= 300.0
    shape, returned = out.shape, out.nbytes
else:  # the peer: whole sessions in memory, every trial stacked, then averaged
    from pathlib import Path
    r = Path(root)
    design = read_nsd_design(r, 1)
    mask = read_volume(find_volume(r / "nsddata/ppdata/subj01/func1pt8mm/roi", "nsdgeneral")) > 0
    shared = set(design.shared.tolist())
    rows, ids = [], []
    beta_dir = r / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR"
    for s in sorted(set(design.trial_session.tolist())):
        path = beta_dir / f"betas_session{s:02d}.hdf5"
        if not path.is_file():
            continue
        with h5py.File(path, "r") as f:
            vol = f["betas"][()]
        data = vol.transpose(0, 3, 2, 1)[:, mask].astype(np.float64) / 300.0
        data = scipy.stats.zscore(data, axis=0)
        trial_ids = design.trial_image[(s - 1) * 750:s * 750]
        sel = np.array([int(i) in shared for i in trial_ids])
        rows.append(data[sel]); ids.append(trial_ids[sel])
    allrows, allids = np.concatenate(rows), np.concatenate(ids)
    uniq = np.unique(allids)
    out = np.stack([allrows[allids == u].mean(0) for u in uniq])
    shape = out.shape
    returned = out.nbytes
elapsed = time.perf_counter() - t0
_, traced_peak = tracemalloc.get_traced_memory()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"mode": mode, "shape": list(shape), "seconds": elapsed, "returned_bytes": returned,
                  "rss_growth_bytes": (peak - max(base, rss_now)) * 1024, "traced_peak_bytes": traced_peak}))
"""


def _fixture_module():
    path = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "nsd_format.py"
    spec = importlib.util.spec_from_file_location("nsd_format", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(mode: str, root: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode, str(root)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--voxels", type=int, default=15000)
    parser.add_argument("--no-peer", action="store_true", help="skip the whole-session peer loop")
    args = parser.parse_args(argv)
    if args.sessions * 750 < 3000:
        parser.error("the 1,000 shared images x 3 repeats need at least 4 sessions")

    # A box about 5% larger than the ROI (NSD's nsdgeneral box is similarly well filled).
    y, z = 25, 20
    x = max(2, int(np.ceil((args.voxels + z + 1) * 1.05 / (y * z))))
    with tempfile.TemporaryDirectory(prefix="nsd_bench_") as tmp:
        t0 = time.perf_counter()
        _fixture_module().write_nsd(tmp, n_sessions=args.sessions, shape_xyz=(x, y, z), n_roi=args.voxels,
                                    n_shared_full=1000, n_shared_partial=0, image_size=8, keep_betas=False)
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
        print(f"fixture: {args.sessions} sessions x 750 trials, volume {(x, y, z)}, ROI {args.voxels} voxels, "
              f"{size / 2**20:.0f} MiB on disk, written in {time.perf_counter() - t0:.1f} s")
        with h5py.File(next(Path(tmp).rglob("betas_session01.hdf5")), "r") as f:
            chunks = f["betas"].chunks
        session = {m: _run(m, Path(tmp)) for m in ("session_before", "session_after")}
        print(f"one session, all 750 trials of the ROI, file chunks {chunks} (as NSD's public files): "
              f"former 75-trial reads {session['session_before']['seconds']:.2f} s, "
              f"reads in the file's chunk geometry {session['session_after']['seconds']:.2f} s "
              f"(x{session['session_before']['seconds'] / session['session_after']['seconds']:.1f}); "
              f"x{args.sessions} sessions: {args.sessions * session['session_before']['seconds']:.0f} s -> "
              f"{args.sessions * session['session_after']['seconds']:.0f} s")
        modes = ["load_nsd", "load_nsd_trials"] + ([] if args.no_peer else ["peer_whole_sessions"])
        results = {m: _run(m, Path(tmp)) for m in modes}

    requested = 1000 * args.voxels * 8
    print(f"requested array: (1000, {args.voxels}) float64 = {requested / 2**20:.1f} MiB")
    print(f"{'loader':<22}{'shape':>16}{'seconds':>10}{'peak RSS / requested':>24}{'numpy peak / requested':>25}"
          f"{'peak RSS / returned':>22}")
    for mode, r in results.items():
        print(f"{mode:<22}{str(tuple(r['shape'])):>16}{r['seconds']:>10.2f}"
              f"{r['rss_growth_bytes'] / requested:>24.2f}{r['traced_peak_bytes'] / requested:>25.2f}"
              f"{r['rss_growth_bytes'] / r['returned_bytes']:>22.2f}")
    if "peer_whole_sessions" in results:
        ours, peer = results["load_nsd"], results["peer_whole_sessions"]
        print(f"peer / load_nsd: peak RSS {peer['rss_growth_bytes'] / ours['rss_growth_bytes']:.2f}x, "
              f"time {peer['seconds'] / ours['seconds']:.2f}x")
    goal = results["load_nsd"]["rss_growth_bytes"] / requested
    print(f"goal peak <= 2x requested: {'met' if goal <= 2 else 'NOT met'} ({goal:.2f}x)")


if __name__ == "__main__":
    main()
