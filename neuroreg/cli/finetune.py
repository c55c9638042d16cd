"""``neuroreg finetune``: fine-tune a trained network on a new domain, then measure what it forgot.

    neuroreg finetune --config configs/finetune_tiny.yaml                        # offline, generated domain
    neuroreg finetune --config configs/finetune_eurosat.yaml --data.root /data/EuroSAT
    neuroreg finetune --config configs/finetune_isic.yaml --data.root /data/isic2019 --trainer.max_steps 3000
    neuroreg finetune --config ... --model.start_from runs/train_x/checkpoints/last.ckpt   # from `neuroreg train`
    neuroreg finetune --config ... --model.strategy linear_probe   # or full, last_k, lp_ft, l2_sp
    neuroreg finetune --config ... --ckpt_path last                             # resume an interrupted run
    neuroreg finetune --config ... --forgetting.original_data /data/imagenet/val   # + original-task accuracy
    neuroreg finetune --config ... --forgetting.start_cache runs/start_cache    # runs from one start share its side
    neuroreg finetune --config configs/finetune_isic.yaml --model.start_from runs/eurosat/checkpoints/last.ckpt
                                        # a chain: the report adds EuroSAT's accuracy before/after and backward transfer

The workflow: (1) ``--model.start_from`` picks the starting network (a model
name such as ``efficientnet_lite0_imagenet``, a name with ``--model.weights
FILE``, or a ``.ckpt`` from ``neuroreg train``/``neuroreg finetune``); (2) the
data module splits the new domain (seeded, stratified; ISIC grouped by lesion)
and the run writes ``splits.csv`` to ``--trainer.default_root_dir`` (re-use it
with ``--data.splits PATH``); (3) Lightning fine-tunes with the chosen strategy
(AdamW, lr 3e-5, weight decay 0.01 by default), checkpoints to
``<root>/checkpoints`` and logs to TensorBoard; (4) the forgetting report
compares the start and the fine-tuned network and writes
``forgetting.csv/.json/.md`` and figures to the same folder and to TensorBoard.
A run that starts from another fine-tuning run's checkpoint continues a chain:
its report also revisits every earlier task's test split (``--forgetting.chain``).
``--forgetting.enabled false`` skips step 4; ``--print_config`` shows every option.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from lightning.pytorch.cli import LightningArgumentParser
from lightning.pytorch.utilities import rank_zero_info
from timm.data import create_transform, resolve_data_config
from torch import nn
from torchvision.datasets import ImageFolder

from neuroreg.cli._exit import run_guarded
from neuroreg._utils.io import atomic_write_text, check_output_target
from neuroreg.brain import bundled_sets, load_responses
from neuroreg.brain.data import BrainData
from neuroreg.errors import DataFormatError, ShapeError, UnknownNameError
from neuroreg.results.figures import save_figure
from neuroreg.cli.train import lightning_subcommand
from neuroreg.training.lightning_cli import NeuroregCLI, run_cli
from neuroreg.data.folders import load_neural_stimuli
from neuroreg.data.eurosat import find_eurosat_folder
from neuroreg.finetune.finetune import FinetuneModule
from neuroreg.finetune.forgetting import PreviousTask, forgetting_report
from neuroreg.finetune.forgetting_output import log_forgetting, plot_accuracy_matrix, write_forgetting
from neuroreg.data.split_data import SplitImageDataModule, check_readable
from neuroreg.finetune.chain import (ChainRun, accuracy_matrix, chain_root, data_set_name, previous_tasks,
                                         task_chain, task_name)

__all__ = ["ForgettingOptions", "ForgettingInputs", "FinetuneCLI", "cli_main", "add_arguments", "run",
           "prepare_forgetting", "run_forgetting"]


class ForgettingOptions:
    """Options of the forgetting report that follows fine-tuning (``--forgetting.*``).

    Parameters
    ----------
    enabled: run the report after training.
    probe_sets: image sets for drift and cRSA (bundled names or ``.npz`` stimulus files).
    reference: bundled set with category labels for the retention probe (None: skip).
    original_data: folder of the original task, one sub-folder per class in the order of the
        outputs of the network it belongs to (ImageNet ``val/<wnid>/``): the start network, or
        in a chain of runs the chain's first network; gives original-task accuracy and backward
        transfer. Scored under that network's own evaluation preprocessing (timm's data config).
    chain: when the start is the checkpoint of an earlier ``neuroreg finetune`` run, follow the
        chain back through the run folders (``config.yaml``, ``splits.csv``) and report the
        accuracy on every earlier task's test split, as it was at the end of that task and now,
        and the chain's backward transfer (original -> EuroSAT -> ISIC).
    brain: voxel responses (``.npz``/``.h5``/``.csv``, see ``neuroreg.brain.load_responses``) with
        ``brain_stimuli`` (folder of their images), or ``simulate``: veRSA and FactorTopy rows.
    brain_stimuli: image folder matching ``brain``'s stimulus ids.
    layers: module names or areas to compare (default: V1, V2, V4, IT).
    max_eval_images, max_probe_train: caps on test images and probe-training images.
    batch_size: of the report's forward passes.
    factortopy: fit FactorTopy when the voxel data have ROIs and coordinates.
    start_cache: folder shared by runs from the same start network: the first report stores the start's
        side (its probe, Gram matrices, cRSA and retention before fine-tuning), later ones re-use it
        instead of running the start again (same numbers). None: no cache.
    """

    def __init__(self, enabled: bool = True, probe_sets: Sequence[str] = ("kriegeskorte92", "algonauts2019_78"),
                 reference: Optional[str] = "kriegeskorte92", original_data: Optional[str] = None,
                 brain: Optional[str] = None, brain_stimuli: Optional[str] = None,
                 layers: Optional[list[str]] = None, max_eval_images: Optional[int] = 2000,
                 max_probe_train: Optional[int] = 1000, batch_size: int = 32, factortopy: bool = True,
                 start_cache: Optional[str] = None, chain: bool = True) -> None:
        self.enabled, self.probe_sets, self.reference = enabled, list(probe_sets), reference
        self.chain = chain
        self.original_data, self.brain, self.brain_stimuli, self.layers = original_data, brain, brain_stimuli, layers
        self.max_eval_images, self.max_probe_train = max_eval_images, max_probe_train
        self.batch_size, self.factortopy, self.start_cache = batch_size, factortopy, start_cache


class FinetuneCLI(NeuroregCLI):
    """LightningCLI of ``neuroreg finetune``: model, data, trainer, checkpoint and forgetting options.

    Run by :func:`~neuroreg.training.lightning_cli.fit_cli` like ``neuroreg train`` (run-folder lock, resume rules); the
    forgetting report's outside inputs are resolved before the first step and the report is written after fit.
    """

    command = "finetune"

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.add_class_arguments(ForgettingOptions, "forgetting")
        parser.set_defaults({"checkpoint.monitor": "val/balanced_acc"})

    def _forgetting_options(self) -> ForgettingOptions | None:
        options = self.config_init.get("forgetting")
        return options if options is not None and options.enabled else None

    def before_fit(self) -> None:
        # on every process (ranks are known only once fit has started): bad inputs stop all of them, before training
        options = self._forgetting_options()
        self.forgetting_inputs = prepare_forgetting(self.model, options) if options is not None else None

    def after_fit(self) -> None:
        options = self._forgetting_options()
        trainer = self.trainer
        if options is None or not trainer.is_global_zero:
            return
        writer = getattr(trainer.logger, "experiment", None) if trainer.logger is not None else None
        writer = writer if hasattr(writer, "add_scalar") else None
        table, paths = run_forgetting(self.model, self.datamodule, options, Path(trainer.default_root_dir), writer,
                                      seed=int(self.config.get("seed_everything") or 0),
                                      inputs=self.forgetting_inputs)
        print(f"forgetting report: {len(table)} rows -> {paths['md']}")


def _original_dataset(folder: str, model: nn.Module) -> ImageFolder:
    """The original task's images under ``model``'s own evaluation preprocessing (timm's data config: input size,
    resize and centre crop, interpolation, mean and std), the protocol of its published accuracy."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"--forgetting.original_data folder {str(path)!r} does not exist")
    try:
        path = find_eurosat_folder(path)
    except DataFormatError:
        pass
    tf = create_transform(**resolve_data_config({}, model=model))
    try:
        data = ImageFolder(str(path), transform=tf)
    except FileNotFoundError as exc:
        raise DataFormatError(f"--forgetting.original_data {path} must hold one folder per class: {exc}") from exc
    n_out = int(getattr(model, "num_classes", 0) or 0)
    if n_out and len(data.classes) > n_out:
        raise DataFormatError(f"--forgetting.original_data has {len(data.classes)} classes but the network of the "
                              f"original task has {n_out} outputs")
    return data


@dataclass
class ForgettingInputs:
    """What the report needs from outside the run, resolved before training so that bad inputs stop the run
    before its first step: the start network, the chain of earlier runs and their tasks, the original task's
    network and images, the voxel data."""

    before: nn.Module
    chain: list[ChainRun]
    earlier: list[PreviousTask]
    original_network: nn.Module
    original: ImageFolder | None
    brain: BrainData | str | None


def _check_probe_sets(probe_sets: Sequence[str]) -> None:
    """Every probe set loads: a bundled name or a readable ``.npz`` stimulus file."""
    for item in probe_sets:
        if not isinstance(item, str):
            continue
        if not item.endswith(".npz") and item.partition(":")[0] not in bundled_sets():
            raise UnknownNameError(f"--forgetting.probe_sets: {item!r} is not a bundled set "
                                   f"({', '.join(bundled_sets())}) and not a .npz stimulus file")
        try:
            load_neural_stimuli(item)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"--forgetting.probe_sets: {exc}") from exc
        except (DataFormatError, ShapeError) as exc:  # a .npz that is corrupt or holds no images
            raise DataFormatError(f"--forgetting.probe_sets: {exc}") from exc


def _check_original_images(data: ImageFolder) -> None:
    """Every image of the original task opens (its header parses), named if not: checked before training."""
    try:
        check_readable([Path(path) for path, _ in data.samples], "original-task")
    except DataFormatError as exc:
        raise DataFormatError(f"--forgetting.original_data: {exc}") from exc


def prepare_forgetting(module: FinetuneModule, options: ForgettingOptions) -> ForgettingInputs:
    """Resolve :class:`ForgettingInputs`. The original task belongs to the chain's first network (the start itself
    without a chain); a chain whose first network was initialised at random has no original task to score.

    Checks the probe sets, the original task's images and that ``start_cache`` can be written too, so that a bad
    input or output stops the run before its first training step rather than after training."""
    _check_probe_sets(options.probe_sets)
    if options.start_cache is not None:  # written by the report, after training: checked now
        check_output_target(options.start_cache, kind="dir", name="--forgetting.start_cache")
    before = module.start_model()
    chain = task_chain(str(module.hparams.get("start_from"))) if options.chain else []
    original_network = before
    if chain and options.original_data:
        original_network = chain_root(chain)
    original = _original_dataset(options.original_data, original_network) if options.original_data else None
    if original is not None:
        _check_original_images(original)
    brain: BrainData | str | None = options.brain
    if options.brain is not None and options.brain != "simulate":
        brain = load_responses(options.brain, stimuli=options.brain_stimuli)
    return ForgettingInputs(before, chain, previous_tasks(chain, current_start=before), original_network,
                            original, brain)


def run_forgetting(module: FinetuneModule, datamodule, options: ForgettingOptions, root: str | Path,
                   writer=None, seed: int = 0, inputs: ForgettingInputs | None = None):
    """The report of a finished run: written under ``root`` and, with ``writer``, to TensorBoard.

    ``inputs``: from :func:`prepare_forgetting` (called here when None)."""
    inputs = inputs if inputs is not None else prepare_forgetting(module, options)
    image_size = int(getattr(datamodule, "image_size", 0) or 0) or None
    dataset = data_set_name(type(datamodule).__name__)
    table = forgetting_report(
        inputs.before, module.backbone, task_data=datamodule if hasattr(datamodule, "eval_dataset") else None,
        original_data=inputs.original, probe_sets=options.probe_sets, reference=options.reference,
        brain=inputs.brain, layers=options.layers, factortopy=options.factortopy, image_size=image_size,
        batch_size=options.batch_size, max_eval_images=options.max_eval_images,
        max_probe_train=options.max_probe_train, seed=seed, model=str(module.hparams.get("arch")),
        dataset=dataset, start_cache=options.start_cache, original_network=inputs.original_network,
        previous_tasks=inputs.earlier, say=rank_zero_info)
    paths = write_forgetting(table, root)
    if inputs.chain:
        matrix = accuracy_matrix(inputs.chain, table, task_name(type(datamodule).__name__, root))
        paths["chain_csv"] = atomic_write_text(Path(root) / "forgetting_chain.csv", matrix.to_csv())
        paths["chain"] = save_figure(plot_accuracy_matrix(matrix), Path(root) / "forgetting_chain.png")
    if writer is not None:
        log_forgetting(table, writer, step=int(module.global_step))
    return table, paths


def cli_main(argv: Sequence[str] | None = None, *, debug: bool = False) -> int:
    """Parse ``argv`` (everything after ``neuroreg finetune``), fine-tune, then write the forgetting report.

    The run folder is kept to one run as in ``neuroreg train`` (lock, ``--ckpt_path last``,
    ``--resume_if_possible``; docs/reliability.md). Bad configurations and data (missing CSV columns, rows not
    one-hot, missing or unreadable images, empty class folders, a split without a class, unknown probe sets,
    unreadable original-task images) are reported in one line on stderr with the statuses of
    ``neuroreg --help``, before any training step.
    """
    return run_guarded("finetune", lambda: _fit(argv), debug=debug)


def _fit(argv: Sequence[str] | None) -> int:
    return run_cli(argv, FinetuneCLI, FinetuneModule, SplitImageDataModule, description=__doc__)


add_arguments, run = lightning_subcommand(cli_main, "configs/finetune_tiny.yaml")
