"""Reference cRSA / veRSA / encoding-r numbers from Conwell et al.'s released code (ColinConwell/DeepNSD).

Runs the released ``run_benchmarking`` and ``get_results_max`` of
``source_code/pressures/main_analysis.py`` (with its ``RidgeCVMod`` and
``NSDBenchmark`` of ``brain_data/__init__.py``) on the synthetic NSD-sized problem of
``tests/fixtures/protocol_problems.py::nsd_like`` and writes
``tests/fixtures/conwell_reference.csv`` (metric, split, region, subject, layer, score).

The released code needs the scikit-learn of its time (its ridge calls private
scikit-learn functions whose signatures changed in 1.2+), so run this with an
environment of its own, e.g.::

    python3.11 -m venv env && env/bin/pip install scikit-learn==1.1.3 numpy==1.23.5 \\
        scipy==1.9.3 pandas==1.5.3 tqdm
    git clone <DeepNSD> deepnsd && git -C deepnsd checkout fc461d021785c341fa1b0ce9a3dd794d5df02d12
    env/bin/python experiments/make_conwell_references.py deepnsd --commit fc461d02...

Shims (nothing of the released computation is replaced): the modules that load
deep-net models and images (``model_opts.model_options``, ``feature_extraction``, torch, PIL)
are stand-ins, because the features are given; ``NSDBenchmark`` reads CSV files
written here in its on-disk layout (``voxel_sets/<name>/voxel_betas.csv`` ...),
next to a copy of the released ``brain_data/__init__.py`` in a temporary folder.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
PROBLEMS = HERE.parent / "tests" / "fixtures" / "protocol_problems.py"
ALPHAS = np.logspace(-1, 5, 7).tolist()   # main_analysis.py's alpha_values


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _stub_torch() -> None:
    torch = types.ModuleType("torch")
    torch.Tensor = type("Tensor", (), {})
    torch.cuda = types.SimpleNamespace(is_available=lambda: False)
    utils = types.ModuleType("torch.utils")
    data = types.ModuleType("torch.utils.data")
    data.DataLoader = type("DataLoader", (), {})
    utils.data = data
    torch.utils = utils
    sys.modules.update({"torch": torch, "torch.utils": utils, "torch.utils.data": data})
    pil = types.ModuleType("PIL")       # NSDBenchmark imports PIL.Image only to show sample images
    pil.Image = types.ModuleType("PIL.Image")
    sys.modules.update({"PIL": pil, "PIL.Image": pil.Image})


def _released_modules(pressures: Path):
    """(main_analysis, feature_reduction, NSDBenchmark class) of the released code."""
    _stub_torch()
    pkg = types.ModuleType("model_opts")
    pkg.__path__ = [str(pressures / "model_opts")]
    sys.modules["model_opts"] = pkg
    extraction = types.ModuleType("model_opts.feature_extraction")
    for fn in ("prep_model_for_extraction", "get_all_feature_maps", "check_model", "get_prepped_model"):
        setattr(extraction, fn, None)
    sys.modules["model_opts.feature_extraction"] = extraction
    mapping = _load("model_opts.mapping_methods", pressures / "model_opts" / "mapping_methods.py")
    reduction = _load("model_opts.feature_reduction", pressures / "model_opts" / "feature_reduction.py")
    for mod in (mapping, reduction):
        for k, v in vars(mod).items():
            if not k.startswith("__"):
                setattr(pkg, k, v)
    pkg.pd = pd
    sys.modules["brain_data"] = types.ModuleType("brain_data")   # main_analysis only needs NSDBenchmark in __main__
    sys.path.insert(0, str(pressures))
    main = _load("main_analysis", pressures / "main_analysis.py")
    return main, reduction


def _benchmark(pressures: Path, tmp: Path, responses, ids, roi, subj):
    """The released NSDBenchmark, reading the synthetic voxels from its on-disk layout."""
    root = tmp / "brain_data"
    (root / "voxel_sets" / "shared1000_OTC-only").mkdir(parents=True)
    (root / "image_sets").mkdir()
    shutil.copy(pressures / "brain_data" / "__init__.py", root / "benchmark.py")
    n_vox = responses.shape[1]
    betas = pd.DataFrame(responses.T, columns=list(ids))
    betas.insert(0, "voxel_id", np.arange(n_vox))
    betas.to_csv(root / "voxel_sets" / "shared1000_OTC-only" / "voxel_betas.csv", index=False, float_format="%.17g")
    meta = pd.DataFrame({"voxel_id": np.arange(n_vox), "subj_id": subj})
    for region in dict.fromkeys(roi):
        meta[region] = (roi == region).astype(int)
    meta.to_csv(root / "voxel_sets" / "shared1000_OTC-only" / "voxel_metadata.csv", index=False)
    pd.DataFrame({"image_name": [f"{i}.png" for i in ids]}).to_csv(root / "image_sets" / "shared1000.csv",
                                                                    index=False)
    bench = _load("released_benchmark", root / "benchmark.py")
    return bench.NSDBenchmark("shared1000", "OTC-only")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("deepnsd", type=Path, help="checkout of ColinConwell/DeepNSD")
    ap.add_argument("--commit", help="the checkout's commit (read with git when omitted)")
    ap.add_argument("--out", type=Path, default=HERE.parent / "tests" / "fixtures" / "conwell_reference.csv")
    args = ap.parse_args()
    commit = args.commit or subprocess.run(["git", "-C", str(args.deepnsd), "rev-parse", "HEAD"],
                                           capture_output=True, text=True, check=True).stdout.strip()
    import sklearn
    pressures = args.deepnsd / "source_code" / "pressures"
    problems = _load("protocol_problems", PROBLEMS)
    feats, responses, ids, roi, subj = problems.nsd_like()
    main_analysis, reduction = _released_modules(pressures)
    with tempfile.TemporaryDirectory() as tmp:
        benchmark = _benchmark(pressures, Path(tmp), responses, ids, roi, subj)
    # srp_extraction(..., eps=0.1, seed=0) as run_benchmarking calls it, without its temporary files
    redux = reduction.get_feature_map_srps(feats, eps=0.1, seed=0, upsampling=True)
    results = main_analysis.run_benchmarking(
        benchmark, {"model_name": "synthetic", "train_type": "none"},
        precomputed_feature_maps={"original": feats, "redux": redux}, alpha_values=ALPHAS)
    names = {"crsa": "crsa", "wrsa": "versa", "srpr": "encoding_r"}
    rows = []
    for metric, df in results.items():
        for r in df.itertuples():
            rows.append(dict(metric=names[metric], split=r.score_set, region=r.region, subject=int(r.subj_id),
                             layer=r.model_layer, score=float(r.score)))
        if metric in ("crsa", "wrsa"):
            best = main_analysis.get_results_max(df.drop(columns=[c for c in ("distance_1", "distance_2")
                                                                  if c in df.columns]))
            for r in best.itertuples():
                rows.append(dict(metric=names[metric], split="best_test", region=r.region,
                                 subject=int(r.subj_id), layer=r.model_layer, score=float(r.score)))
    out = pd.DataFrame(rows).sort_values(["metric", "split", "region", "subject", "layer"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write(f"# ColinConwell/DeepNSD {commit}: main_analysis.run_benchmarking + get_results_max on "
                 f"protocol_problems.nsd_like(); scikit-learn {sklearn.__version__}, numpy {np.__version__}\n")
        out.to_csv(fh, index=False, float_format="%.10g")
    print(f"wrote {len(out)} rows to {args.out}")


if __name__ == "__main__":
    main()
