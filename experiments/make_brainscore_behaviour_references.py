"""Reference behavioural scores from Brain-Score's own code (brain-score/vision).

Runs Brain-Score's ``brainscore_vision.metrics.i1i2`` (``I1``, ``I1n``, ``I2``,
``I2n``, ``O1``, ``O2``: score and split-half ceiling) and ``brainscore_vision.metrics.error_consistency``
(``ErrorConsistency``: score and subject-pair ceiling) on small seeded synthetic data,
and the benchmarks' own ceiling steps (``_DicarloRajalingham2018.ceil_score``:
per split score / sqrt(ceiling), averaged; Geirhos2021: raw / ceiling with
``bound_score``), and writes to ``tests/fixtures/brainscore_behaviour/``:

- ``probabilities.csv`` (``stimulus_id``, ``choice``, ``probability``: a simulated
  model's choice probabilities) and ``trials.csv`` (``stimulus_id``, ``sample_obj``,
  ``dist_obj``, ``choice``, in trial order: a simulated subject): 4 objects x 6 images,
  20 trials per image and distractor;
- ``i1i2_scores.csv``: per metric, ``repetitions`` and ``seed`` (Brain-Score's
  ``RandomState(seed=0)``; other seeds by replacing ``_initialize_random_state``), one
  row per split and one ``split="mean"`` row with ``score``, ``ceiling`` and
  ``ceiled`` (the benchmark's score);
- ``ec_choices.csv`` (``stimulus_id``, ``choice``: a simulated model's answers) and
  ``ec_trials.csv`` (``stimulus_id``, ``subject``, ``condition``, ``choice``, ``truth``:
  4 simulated subjects, 3 conditions x 10 images, 4 labels);
- ``ec_scores.csv``: per (subject, condition) kappa, per (subject pair, condition)
  ceiling kappa, and the aggregated score, ceiling and ceiled score;
- ``readout_features.csv`` (``part`` fit/test, ``stimulus_id``, ``image_label``,
  ``f00``...: seeded synthetic features) and ``readout_probabilities.csv`` (``case``
  4-way/2-way, ``stimulus_id``, ``choice``, ``probability``): the choice probabilities of
  ``model_helpers.brain_transformation.behavior.ProbabilitiesMapping.ProbabilitiesClassifier``
  (its scaler and logistic regression, scikit-learn as named in the header) fitted on the
  fit part and applied to the test part.

Each file starts with a ``#`` line naming the brain-score/vision commit and the
package versions. Run in an environment with ``brainscore-core``, ``numpy<2``,
``pandas<3``, ``scikit-learn<1.6``, ``xarray<2022.6``, ``scipy`` and ``tqdm``
(brainscore_vision itself is not installed: its metric modules are read from the
repository at ``--commit``)::

    python experiments/make_brainscore_behaviour_references.py path/to/vision.git --commit c642dbe4...

The fixtures committed were made from commit c642dbe42aae3ed064bc0b66f70a80b264021164
with brainscore-core 2.5.0, numpy 1.26.4, scipy 1.17.1, xarray 2022.3.0, pandas 2.3.3 and
scikit-learn 1.5.2.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.metadata
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "tests" / "fixtures" / "brainscore_behaviour"
FILES = ["brainscore_vision/utils/__init__.py", "brainscore_vision/metrics/__init__.py",
         "brainscore_vision/metric_helpers/__init__.py", "brainscore_vision/metric_helpers/utils.py",
         "brainscore_vision/metric_helpers/transformations.py",
         "brainscore_vision/metrics/i1i2/metric.py", "brainscore_vision/metrics/error_consistency/metric.py"]
RAJALINGHAM = "brainscore_vision/benchmarks/rajalingham2018/benchmarks/benchmark.py"
BEHAVIOR = "brainscore_vision/model_helpers/brain_transformation/behavior.py"
BENCHMARK_HELPERS = "brainscore_vision/benchmark_helpers/__init__.py"
OBJECTS = ["bear", "car", "dog", "elephant"]
IMAGES_PER_OBJECT = 6
TRIALS_PER_PAIR = 20
#: (metric, repetitions, seed) computed
I_RUNS = [("I2n", 2, 0), ("I1n", 2, 0), ("I2", 2, 0), ("I1", 2, 0), ("I2n", 3, 7), ("I1n", 4, 3), ("O2", 2, 0),
          ("O1", 2, 0)]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def _install(repo: Path, commit: str, root: Path) -> None:
    """Write the needed files of ``commit`` under ``root`` and make them importable without package inits."""
    for f in FILES:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text(_git(repo, "show", f"{commit}:{f}"))
    for pkg, rel in (("brainscore_vision", "brainscore_vision"),
                     ("brainscore_vision.metrics.i1i2", "brainscore_vision/metrics/i1i2"),
                     ("brainscore_vision.metrics.error_consistency", "brainscore_vision/metrics/error_consistency")):
        mod = types.ModuleType(pkg)
        mod.__path__ = [str(root / rel)]
        sys.modules[pkg] = mod
    sys.path.insert(0, str(root))


def _function(source: str, name: str, namespace: dict, cls: str | None = None):
    """Compile one function of ``source`` (top level, or a method of class ``cls``) into ``namespace``."""
    body = ast.parse(source).body
    if cls is not None:
        body = next(n for n in body if isinstance(n, ast.ClassDef) and n.name == cls).body
    node = next(n for n in body if isinstance(n, ast.FunctionDef) and n.name == name)
    exec(compile(ast.Module([node], []), f"<{name}>", "exec"), namespace)
    return namespace[name]


def simulate_objectome(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded model's probabilities and a seeded subject's 2-alternative trials (in trial order)."""
    rng = np.random.default_rng(seed)
    n_obj = len(OBJECTS)
    truth = np.repeat(np.arange(n_obj), IMAGES_PER_OBJECT)
    rng.shuffle(truth)
    ids = [f"im{k:02d}" for k in range(truth.size)]
    # latent confusability of (image, distractor), shared by subject and model
    latent = rng.normal(0.0, 1.0, (truth.size, n_obj))
    difficulty = rng.normal(0.0, 0.7, truth.size)
    logits = 2.0 * np.eye(n_obj)[truth] + 0.8 * latent + 0.6 * rng.normal(0.0, 1.0, (truth.size, n_obj))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    probabilities = pd.DataFrame([dict(stimulus_id=ids[i], choice=OBJECTS[c], probability=float(p[i, c]))
                                  for i in range(truth.size) for c in range(n_obj)])
    rows = []
    for i in range(truth.size):
        for c in range(n_obj):
            if c == truth[i]:
                continue
            p_wrong = 1.0 / (1.0 + np.exp(-(-1.2 + 0.9 * latent[i, c] + difficulty[i])))
            for wrong in rng.random(TRIALS_PER_PAIR) < p_wrong:
                rows.append(dict(stimulus_id=ids[i], sample_obj=OBJECTS[truth[i]], dist_obj=OBJECTS[c],
                                 choice=OBJECTS[c] if wrong else OBJECTS[truth[i]]))
    trials = pd.DataFrame(rows).iloc[rng.permutation(len(rows))].reset_index(drop=True)
    return probabilities, trials


def simulate_error_consistency(seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded model's answers and four seeded subjects' answers, one per image, in 3 conditions."""
    rng = np.random.default_rng(seed)
    conditions = ["c0", "c1", "c2"]
    rows_img = []
    for k, condition in enumerate(conditions):
        for j in range(10):
            rows_img.append(dict(stimulus_id=f"{condition}_im{j}", condition=condition,
                                 truth=OBJECTS[int(rng.integers(len(OBJECTS)))],
                                 ease=rng.normal(1.2 - 0.8 * k, 1.0)))
    images = pd.DataFrame(rows_img)

    def answers(bias: float) -> list[str]:
        out = []
        for _, im in images.iterrows():
            right = rng.random() < 1.0 / (1.0 + np.exp(-(im["ease"] + bias + rng.normal(0, 0.8))))
            wrong = [o for o in OBJECTS if o != im["truth"]]
            out.append(im["truth"] if right else wrong[int(rng.integers(len(wrong)))])
        return out

    choices = pd.DataFrame(dict(stimulus_id=images["stimulus_id"], choice=answers(0.3)))
    trials = pd.concat([pd.DataFrame(dict(stimulus_id=images["stimulus_id"], subject=f"subject-{s}",
                                          condition=images["condition"], choice=answers(0.0),
                                          truth=images["truth"])) for s in range(4)], ignore_index=True)
    return choices, trials.iloc[rng.permutation(len(trials))].reset_index(drop=True)


def simulate_readout(seed: int = 2) -> pd.DataFrame:
    """Seeded features of a fitting set (4 objects x 12 images) and a test set (4 x 5), object-dependent means."""
    rng = np.random.default_rng(seed)
    n_features = 12
    centres = rng.normal(0.0, 1.0, (len(OBJECTS), n_features))
    rows = []
    for part, per_object in (("fit", 12), ("test", 5)):
        labels = np.repeat(np.arange(len(OBJECTS)), per_object)
        rng.shuffle(labels)   # first-appearance order of the labels differs from their sorted order
        x = 0.9 * centres[labels] + rng.normal(0.0, 1.0, (labels.size, n_features)) * rng.uniform(0.5, 3.0, n_features)
        for k, (label, feats) in enumerate(zip(labels, x)):
            rows.append(dict(part=part, stimulus_id=f"{part}{k:02d}", image_label=OBJECTS[label],
                             **{f"f{j:02d}": float(v) for j, v in enumerate(feats)}))
    return pd.DataFrame(rows)


def _readout_rows(classifier_cls, features: pd.DataFrame) -> list[dict]:
    from brainscore_core.supported_data_standards.brainio.assemblies import NeuroidAssembly

    columns = [c for c in features.columns if c.startswith("f")]

    def assembly(part: pd.DataFrame):
        return NeuroidAssembly(part[columns].to_numpy(), coords={
            "stimulus_id": ("presentation", part["stimulus_id"].to_numpy()),
            "image_label": ("presentation", part["image_label"].to_numpy()),
            "neuroid_id": ("neuroid", columns)}, dims=["presentation", "neuroid"])

    rows = []
    for case, objects in (("4-way", OBJECTS), ("2-way", OBJECTS[1:3])):
        fit = features[(features["part"] == "fit") & features["image_label"].isin(objects)]
        test = features[features["part"] == "test"]
        x_fit = assembly(fit)
        proba = classifier_cls().fit(x_fit, x_fit["image_label"]).predict_proba(assembly(test))
        for i, sid in enumerate(proba["stimulus_id"].values):
            for j, choice in enumerate(proba["choice"].values):
                rows.append(dict(case=case, stimulus_id=sid, choice=choice, probability=float(proba.values[i, j])))
    return rows


def _probabilities_classifier(source: str):
    """``ProbabilitiesMapping.ProbabilitiesClassifier`` of ``behavior.py``, its class compiled alone."""
    import collections
    import sklearn.linear_model
    import sklearn.preprocessing
    from brainscore_core.supported_data_standards.brainio.assemblies import (BehavioralAssembly, array_is_element,
                                                                              walk_coords)

    node = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "ProbabilitiesMapping")
    namespace = {"np": np, "sklearn": sklearn, "OrderedDict": collections.OrderedDict, "walk_coords": walk_coords,
                 "array_is_element": array_is_element, "BehavioralAssembly": BehavioralAssembly,
                 "BrainModel": object}
    exec(compile(ast.Module([node], []), "<ProbabilitiesMapping>", "exec"), namespace)
    return namespace["ProbabilitiesMapping"].ProbabilitiesClassifier


def _i1i2_rows(metric_mod, ceil_score, probabilities: pd.DataFrame, trials: pd.DataFrame) -> list[dict]:
    from numpy.random import RandomState
    from brainscore_core.supported_data_standards.brainio.assemblies import BehavioralAssembly

    ids = sorted(probabilities["stimulus_id"].unique())
    wide = probabilities.pivot(index="stimulus_id", columns="choice", values="probability").loc[ids, OBJECTS]
    # look_at's output carries the stimulus set's columns; a second one keeps brainio's presentation index
    # a MultiIndex whose levels the metric reads by name
    image_label = trials.drop_duplicates("stimulus_id").set_index("stimulus_id").loc[ids, "sample_obj"].to_numpy()
    rows = []
    for name, repetitions, seed in I_RUNS:
        def source():
            return BehavioralAssembly(wide.to_numpy(), coords={"stimulus_id": ("presentation", ids),
                                                               "image_label": ("presentation", image_label),
                                                               "choice": ("choice", OBJECTS)},
                                      dims=["presentation", "choice"])
        target = BehavioralAssembly(trials["choice"].to_numpy(), coords={
            "stimulus_id": ("presentation", trials["stimulus_id"].to_numpy()),
            "sample_obj": ("presentation", trials["sample_obj"].to_numpy()),
            "dist_obj": ("presentation", trials["dist_obj"].to_numpy()),
            "truth": ("presentation", trials["sample_obj"].to_numpy())}, dims=["presentation"])
        metric = getattr(metric_mod, name)(repetitions=repetitions)
        metric._initialize_random_state = lambda seed=seed: RandomState(seed=seed)
        score = metric(source(), target)
        ceiling = metric.ceiling(target)
        ceiled = ceil_score(SimpleNamespace(_metric=metric), score, ceiling)
        raw_s, raw_c, raw_x = score.raw, ceiling.raw, ceiled.values
        for split in range(repetitions):
            s, c = float(raw_s.sel(split=split)), float(raw_c.sel(split=split))
            rows.append(dict(metric=name, repetitions=repetitions, seed=seed, split=str(split), score=s,
                             ceiling=c, ceiled=s / np.sqrt(c)))
        rows.append(dict(metric=name, repetitions=repetitions, seed=seed, split="mean", score=float(score.values),
                         ceiling=float(ceiling.values), ceiled=float(raw_x)))
    return rows


def _ec_rows(ec_mod, bound_score, choices: pd.DataFrame, trials: pd.DataFrame) -> list[dict]:
    from brainscore_core.supported_data_standards.brainio.assemblies import BehavioralAssembly

    image = trials.drop_duplicates("stimulus_id").set_index("stimulus_id")
    ids = choices["stimulus_id"].to_numpy()
    source = BehavioralAssembly([choices["choice"].to_numpy()], coords={
        "stimulus_id": ("presentation", ids), "truth": ("presentation", image.loc[ids, "truth"].to_numpy()),
        "condition": ("presentation", image.loc[ids, "condition"].to_numpy())}, dims=["choice", "presentation"])
    target = BehavioralAssembly(trials["choice"].to_numpy(), coords={
        c: ("presentation", trials[c].to_numpy()) for c in ("stimulus_id", "subject", "condition", "truth")},
        dims=["presentation"])
    metric = ec_mod.ErrorConsistency()
    score = metric(source, target)
    ceiling = metric.ceiling(target)
    rows = []
    raw = score.raw
    for subject in raw["subject"].values:
        for condition in raw["condition"].values:
            rows.append(dict(kind="score", subject=subject, subject_right="", condition=condition,
                             value=float(raw.sel(subject=subject, condition=condition))))
    craw = ceiling.raw
    lefts, rights = craw["subject_left"].values, craw["subject_right"].values
    for k, (left, right) in enumerate(zip(lefts, rights)):
        for condition in craw["condition"].values:
            rows.append(dict(kind="ceiling", subject=left, subject_right=right, condition=condition,
                             value=float(craw.sel(condition=condition).values[k])))
    ceiled = score / ceiling
    bound_score(ceiled)
    for kind, value in (("score", score), ("ceiling", ceiling), ("ceiled", ceiled)):
        rows.append(dict(kind=kind, subject="mean", subject_right="", condition="mean", value=float(value.values)))
    return rows


def _write(df: pd.DataFrame, path: Path, header: str) -> None:
    with open(path, "w") as fh:
        fh.write(f"# {header}\n")
        df.to_csv(fh, index=False, float_format="%.12g")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("vision", type=Path, help="git repository of brain-score/vision (a clone or bare mirror)")
    ap.add_argument("--commit", default="HEAD", help="commit whose metric code is run")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    commit = _git(args.vision, "rev-parse", args.commit).strip()
    from brainscore_core import Score

    versions = ", ".join(f"{p} {importlib.metadata.version(p)}"
                         for p in ("brainscore-core", "numpy", "scipy", "xarray", "pandas", "scikit-learn"))
    header = f"brain-score/vision {commit}; {versions}"
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        _install(args.vision, commit, Path(tmp))
        i1i2 = importlib.import_module("brainscore_vision.metrics.i1i2.metric")
        ec = importlib.import_module("brainscore_vision.metrics.error_consistency.metric")
        from brainscore_vision.metric_helpers.transformations import apply_aggregate
        ceil_score = _function(_git(args.vision, "show", f"{commit}:{RAJALINGHAM}"), "ceil_score",
                               {"np": np, "Score": Score, "apply_aggregate": apply_aggregate},
                               cls="_DicarloRajalingham2018")
        bound_score = _function(_git(args.vision, "show", f"{commit}:{BENCHMARK_HELPERS}"), "bound_score",
                                {"Score": Score})
        probabilities, trials = simulate_objectome()
        ec_choices, ec_trials = simulate_error_consistency()
        i_rows = pd.DataFrame(_i1i2_rows(i1i2, ceil_score, probabilities, trials))
        ec_rows = pd.DataFrame(_ec_rows(ec, bound_score, ec_choices, ec_trials))
        features = simulate_readout()
        readout = pd.DataFrame(_readout_rows(
            _probabilities_classifier(_git(args.vision, "show", f"{commit}:{BEHAVIOR}")), features))
    _write(probabilities, args.out / "probabilities.csv", f"{header}; simulated model, seed 0")
    _write(trials, args.out / "trials.csv", f"{header}; simulated subject, seed 0, trial order as run")
    _write(i_rows, args.out / "i1i2_scores.csv", f"{header}; metrics.i1i2 score + ceiling, "
           "benchmarks.rajalingham2018 ceil_score (split 'mean': the benchmark's aggregate)")
    _write(ec_choices, args.out / "ec_choices.csv", f"{header}; simulated model, seed 1")
    _write(ec_trials, args.out / "ec_trials.csv", f"{header}; simulated subjects, seed 1")
    _write(ec_rows, args.out / "ec_scores.csv", f"{header}; metrics.error_consistency score + ceiling, "
           "ceiled = raw / ceiling with benchmark_helpers.bound_score")
    _write(features, args.out / "readout_features.csv", f"{header}; synthetic features, seed 2")
    _write(readout, args.out / "readout_probabilities.csv", f"{header}; behavior.ProbabilitiesMapping."
           "ProbabilitiesClassifier fitted on part 'fit' (2-way: labels car and dog only), applied to part 'test'")
    print(f"wrote {len(readout)} read-out rows, {len(i_rows)} i1i2 rows and {len(ec_rows)} error-consistency rows "
          f"to {args.out}")


if __name__ == "__main__":
    main()
