"""Reference neural-predictivity numbers from Brain-Score's own code (brain-score/vision).

Runs Brain-Score's ``CrossRegressedCorrelation(regression=pls_regression(),
correlation=pearsonr_correlation())`` (the ``"pls"`` metric: PLS with 25
components, ``StratifiedShuffleSplit`` on ``object_name``, 10 splits of 90/10,
random_state 1, Pearson r per neuroid, median over neuroids, mean over splits)
and its ``InternalConsistency`` ceiling on the object-labelled synthetic set of
``tests/fixtures/protocol_problems.py::object_set`` (both parts, per region, per
layer), and applies each version's normalisation, read from the repository's
history:

- ``"2018"``: ``ceil_score``, r / c (before commit
  6506436697c8e206de24d0e6b7aeaf08fefe1d92, 2019-07-25, "ceil by explained variance
  instead of pure division"; evaluated here as the division it performs);
- ``"2019"``: ``explained_variance`` as of c3d1df2ecfc3f18270b8947007b90e7a78a5c3f7
  (Brain-Score 2.0, same formula since 6506436), (r / c)^2;
- ``"2026"``: ``explained_variance`` as of e376e306791cbf1e0f7f0fab7104f499e346415f
  (2026-01-13, "Corrected model-to-ceiling mapping under explained variance"), r^2 / c.

Writes ``tests/fixtures/brainscore_reference.csv``. Run in an environment with
``brainscore-core``, ``numpy<2``, ``pandas<3``, ``scikit-learn<1.6``, ``xarray``,
``scipy`` and ``tqdm`` (brainscore_vision itself is not installed: its metric
modules are read from the repository at ``--commit``)::

    python experiments/make_brainscore_references.py path/to/vision.git --commit c642dbe4...

Shims: ``brainscore_vision`` is a namespace over the files read from the
repository, so its ``__init__`` (model and benchmark registries) is not run;
``metric_helpers.temporal`` (time-bin helpers, which import the benchmark
machinery) is a stand-in, as no time bins are used; the repetition-averaged
target is the numpy mean over repetitions (Brain-Score's ``average_repetition``).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
PROBLEMS = HERE.parent / "tests" / "fixtures" / "protocol_problems.py"
FILES = ["brainscore_vision/utils/__init__.py", "brainscore_vision/metrics/__init__.py",
         "brainscore_vision/metric_helpers/__init__.py", "brainscore_vision/metric_helpers/utils.py",
         "brainscore_vision/metric_helpers/transformations.py", "brainscore_vision/metric_helpers/xarray_utils.py",
         "brainscore_vision/metrics/regression_correlation/metric.py",
         "brainscore_vision/metrics/internal_consistency/ceiling.py"]
NORMALISATION = {"2019": ("c3d1df2ecfc3f18270b8947007b90e7a78a5c3f7", "brainscore_vision/benchmark_helpers/neural_common.py"),
                 "2026": ("e376e306791cbf1e0f7f0fab7104f499e346415f", "brainscore_vision/benchmark_helpers/neural_common.py")}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def _git_show(repo: Path, commit: str, path: str) -> str:
    return _git(repo, "show", f"{commit}:{path}")


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _install(repo: Path, commit: str, root: Path) -> None:
    """Write the needed files of ``commit`` under ``root`` and make them importable without package inits."""
    for f in FILES:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text(_git_show(repo, commit, f))
    for pkg, rel in (("brainscore_vision", "brainscore_vision"),
                     ("brainscore_vision.metrics.regression_correlation", "brainscore_vision/metrics/regression_correlation"),
                     ("brainscore_vision.metrics.internal_consistency", "brainscore_vision/metrics/internal_consistency")):
        mod = types.ModuleType(pkg)
        mod.__path__ = [str(root / rel)]
        sys.modules[pkg] = mod
    temporal = types.ModuleType("brainscore_vision.metric_helpers.temporal")
    temporal.SpanTimeRegression = temporal.PerTime = None
    sys.modules["brainscore_vision.metric_helpers.temporal"] = temporal
    sys.path.insert(0, str(root))


def _function(source: str, name: str, namespace: dict):
    """Compile one top-level function of ``source`` (a file of the repository) into ``namespace``."""
    tree = ast.parse(source)
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    exec(compile(ast.Module([node], []), f"<{name}>", "exec"), namespace)
    return namespace[name]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("vision", type=Path, help="git repository of brain-score/vision (a clone or bare mirror)")
    ap.add_argument("--commit", default="HEAD", help="commit whose metric code is run")
    ap.add_argument("--out", type=Path, default=HERE.parent / "tests" / "fixtures" / "brainscore_reference.csv")
    args = ap.parse_args()
    commit = _git(args.vision, "rev-parse", args.commit).strip()
    import sklearn
    from brainscore_core import Score
    from brainscore_core.supported_data_standards.brainio.assemblies import NeuroidAssembly

    with tempfile.TemporaryDirectory() as tmp:
        _install(args.vision, commit, Path(tmp))
        metric_mod = importlib.import_module("brainscore_vision.metrics.regression_correlation.metric")
        ceiling_mod = importlib.import_module("brainscore_vision.metrics.internal_consistency.ceiling")
        normalise = {v: _function(_git_show(args.vision, c, p), "explained_variance", {"np": np, "Score": Score})
                     for v, (c, p) in NORMALISATION.items()}
        problems = _load("protocol_problems", PROBLEMS)
        rows = []
        for part in ("public", "private"):
            feats, trials, ids, labels, roi = problems.object_set(part)
            n_rep = trials.shape[0]
            for region in dict.fromkeys(roi):
                units = np.flatnonzero(roi == region)
                nid = [f"{region}.{i:03d}" for i in range(units.size)]
                target = NeuroidAssembly(trials[:, :, units].mean(0), dims=["presentation", "neuroid"], coords={
                    "stimulus_id": ("presentation", ids), "object_name": ("presentation", labels),
                    "neuroid_id": ("neuroid", nid), "region": ("neuroid", [region] * units.size)})
                rep = NeuroidAssembly(trials[:, :, units].reshape(-1, units.size), dims=["presentation", "neuroid"],
                                      coords={"stimulus_id": ("presentation", np.tile(ids, n_rep)),
                                              "object_name": ("presentation", np.tile(labels, n_rep)),
                                              "repetition": ("presentation", np.repeat(np.arange(n_rep), ids.size)),
                                              "neuroid_id": ("neuroid", nid),
                                              "region": ("neuroid", [region] * units.size)})
                ceiling = ceiling_mod.InternalConsistency()(rep)
                for layer, x in feats.items():
                    source = NeuroidAssembly(x, dims=["presentation", "neuroid"], coords={
                        "stimulus_id": ("presentation", ids), "object_name": ("presentation", labels),
                        "neuroid_id": ("neuroid", [f"{layer}.{j}" for j in range(x.shape[1])]),
                        "layer": ("neuroid", [layer] * x.shape[1])})
                    metric = metric_mod.CrossRegressedCorrelation(
                        regression=metric_mod.pls_regression(), correlation=metric_mod.pearsonr_correlation())
                    raw = metric(source, target)
                    r, c = float(raw.values), float(ceiling.values)
                    rows.append(dict(part=part, region=region, layer=layer, score=r, ceiling=c, ceiled_2018=r / c,
                                     ceiled_2019=float(normalise["2019"](raw, ceiling).values),
                                     ceiled_2026=float(normalise["2026"](raw, ceiling).values)))
    out = pd.DataFrame(rows)
    with open(args.out, "w") as fh:
        fh.write(f"# brain-score/vision {commit}: regression_correlation CrossRegressedCorrelation(pls) + "
                 f"internal_consistency InternalConsistency on protocol_problems.object_set(part); "
                 f"normalisations: 2018 r/c (before 6506436), 2019 explained_variance@c3d1df2, "
                 f"2026 explained_variance@e376e30; scikit-learn {sklearn.__version__}, numpy {np.__version__}\n")
        out.to_csv(fh, index=False, float_format="%.10g")
    print(f"wrote {len(out)} rows to {args.out}")


if __name__ == "__main__":
    main()
