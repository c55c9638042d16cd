"""``neuroreg export brainscore``: write a Brain-Score model plugin of a neuroreg model.

    neuroreg export brainscore --model cornet_s --checkpoint run/last.ckpt --out plugins/neuroreg_cornet_s
    neuroreg export brainscore --model vone_cornet_s --scorecard results/evaluate --out plugins/vone

The plugin (files in :mod:`neuroreg.cli._brainscore_plugin`) commits one layer per region:

- ``--layer REGION=MODULE`` where given;
- else, with ``--scorecard DIR`` (a saved ``neuroreg evaluate``/``score`` folder), the layer neuroreg
  chose on the train split for that region: among the brain rows of the model, region and metric
  (``--metric``, default the first of predictivity, versa, crsa, cka the region has), on split
  ``train`` where the metric has one (cRSA, veRSA), else on the layer-selection set's rows
  (``predictivity(select_on=...)``), else on the cross-validated rows, the layer with the highest
  mean score over data sets, subjects and RDM sets (first of equal scores, ``best_index``);
- else the model's area map (:func:`neuroreg.area_layers`: CORnet's V1, V2, V4, IT modules).

The behavioural read-out layer is ``--behaviour-layer`` or the module whose output is the
classifier's input (the pooled penultimate features neuroreg's read-out uses; CORnet
``decoder.avgpool``, timm ``global_pool.pool``).
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import neuroreg as nr
from neuroreg.cli._brainscore_plugin import (REGIONS, PluginSpec, check_identifier, check_plugin_folder, file_sha256,
                                             plugin_package_name, render_plugin)
from neuroreg.errors import UnknownNameError
from neuroreg.models.pretrained import load_weights
from neuroreg.results import ScoreTable, best_index

__all__ = ["add_arguments", "run", "classifier_input_layer", "scorecard_layers", "region_layers"]

#: Metrics a scorecard's layer choice is read from, in order of preference (Brain-Score's own first).
SELECTION_METRICS = ("predictivity", "versa", "crsa", "cka")
#: Brain-Score's default field of view of a model's input image (degrees).
BRAINSCORE_VISUAL_DEGREES = 8.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=["brainscore"], help="what to export to: brainscore (a model plugin)")
    parser.add_argument("--model", required=True, help="registered model name (neuroreg or timm), e.g. cornet_s")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="local weights: a state dict (.pt/.pth/.bin) or a Lightning checkpoint (.ckpt)")
    parser.add_argument("--pretrained", action="store_true", help="start from the model's pretrained weights "
                                                                  "(a local file, as nr.create_model takes them)")
    parser.add_argument("--num-classes", type=int, default=None, help="output classes (default: the model's)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed set before the model is built")
    parser.add_argument("--out", type=Path, required=True,
                        help="the plugin folder to write (copy it to brainscore_vision/models/<name>/)")
    parser.add_argument("--identifier", default=None,
                        help="Brain-Score model identifier (default: neuroreg-<model>[-<checkpoint stem>])")
    parser.add_argument("--scorecard", type=Path, default=None,
                        help="a saved scorecard folder: commit each region's layer chosen there on the train split")
    parser.add_argument("--scorecard-model", default=None,
                        help="the model's label in --scorecard (default: --model)")
    parser.add_argument("--metric", default=None, choices=SELECTION_METRICS,
                        help="the scorecard metric the layers are chosen by (default: the first the region has of "
                             + ", ".join(SELECTION_METRICS) + ")")
    parser.add_argument("--layer", action="append", default=[], metavar="REGION=MODULE",
                        help="commit MODULE to REGION (V1, V2, V4 or IT); repeatable; overrides the other sources")
    parser.add_argument("--behaviour-layer", default=None,
                        help="module of the behavioural read-out (default: the classifier's input)")
    parser.add_argument("--image-size", type=int, default=None, help="input side in pixels (default: the model's)")
    parser.add_argument("--visual-degrees", type=float, default=None,
                        help="field of view of the input in degrees (default: a VOneNet's own, else 8)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")


def _module_name(model: nn.Module, name: str, what: str) -> str:
    """``name`` as a module of ``model``: a module name, or an area alias (V1..IT) through the model's area map."""
    modules = dict(model.named_modules())
    if name in modules and name != "":
        return name
    if name in REGIONS:
        try:
            return nr.area_layers(model)[name]
        except (UnknownNameError, KeyError):
            pass
    close = [m for m in modules if m and (name in m or m.endswith(name))][:5]
    raise UnknownNameError(f"{what} {name!r} is not a module of {type(model).__name__}"
                           + (f"; similar: {close}" if close else ""))


def classifier_input_layer(model: nn.Module, image_size: int, seed: int = 0) -> str:
    """The first module (in call order) whose output is the classifier's input, value for value.

    One forward pass of a seeded random ``(1, 3, image_size, image_size)`` image; the classifier is
    ``model.get_classifier()``. Raises :class:`UnknownNameError` when the model has no classifier
    module or no module gives its input.
    """
    get = getattr(model, "get_classifier", None)
    classifier = get() if callable(get) else None
    if not isinstance(classifier, nn.Module) or isinstance(classifier, nn.Identity):
        raise UnknownNameError(f"{type(model).__name__} has no classifier module to read its input from; "
                               "name the behavioural read-out with --behaviour-layer MODULE")
    inside = {id(m) for m in classifier.modules()}
    seen: dict[str, torch.Tensor] = {}
    order: list[str] = []
    given: list[torch.Tensor] = []

    def keep(name: str):
        def hook(_module, _inputs, output):
            if isinstance(output, torch.Tensor) and name not in seen:
                seen[name] = output.detach()
                order.append(name)
        return hook

    hooks = [m.register_forward_hook(keep(n)) for n, m in model.named_modules() if n and id(m) not in inside]
    hooks.append(classifier.register_forward_pre_hook(lambda _m, args: given.append(args[0].detach())))
    generator = torch.Generator().manual_seed(seed)
    try:
        with torch.no_grad():
            model.eval()(torch.rand(1, 3, image_size, image_size, generator=generator))
    finally:
        for h in hooks:
            h.remove()
    if not given:
        raise UnknownNameError(f"the classifier of {type(model).__name__} was not called in a forward pass; "
                               "name the behavioural read-out with --behaviour-layer MODULE")
    target = given[0].reshape(-1)
    for name in order:
        out = seen[name].reshape(-1)
        if out.shape == target.shape and torch.equal(out, target):
            return name
    raise UnknownNameError(f"no module of {type(model).__name__} outputs the classifier's input (it is computed "
                           "outside a module); name the behavioural read-out with --behaviour-layer MODULE")


def scorecard_layers(table: ScoreTable, model_label: str, metric: str | None = None) -> dict[str, tuple[str, str]]:
    """Region -> (layer, how it was chosen) for the regions V1/V2/V4/IT that ``table`` (brain rows) scores.

    Per region: the rows of ``model_label`` and the metric (``metric``, else the first of
    :data:`SELECTION_METRICS` the region has); their ``train`` rows where there are any (the split
    neuroreg chooses layers on), else the rows of the layer-selection set (``data="select_on"``, as
    Brain-Score's predictivity commits layers), else all (cross-validated scores); the layer with the highest
    mean score over the other keys (data set, subject, RDM set); the first of equal scores.
    """
    rows = [r for r in table if r.get("model") == model_label]
    if not rows:
        labels = sorted({str(r.get("model")) for r in table})
        raise UnknownNameError(f"the scorecard has no brain rows of model {model_label!r}; it has {labels} "
                               "(pass --scorecard-model LABEL)")
    chosen: dict[str, tuple[str, str]] = {}
    for region in REGIONS:
        here = [r for r in rows if r.get("region") == region]
        metrics = list(dict.fromkeys(str(r["metric"]) for r in here))
        use = metric if metric is not None else next((m for m in SELECTION_METRICS if m in metrics), None)
        if use is None or use not in metrics:
            continue
        picked = [r for r in here if r["metric"] == use]
        train = [r for r in picked if r.get("split") == "train"]
        # cross-validated scores with a selection set (predictivity(select_on=...)): choose on that set only
        selection = [r for r in picked if r.get("data") == "select_on"]
        split = "train" if train else "select_on" if selection else "cross-validated"
        picked = train or selection or picked
        layers = list(dict.fromkeys(str(r["layer"]) for r in picked))
        means = [float(np.mean([r["score"] for r in picked if str(r["layer"]) == layer])) for layer in layers]
        best = best_index(means)
        if best is None:
            continue
        datasets = sorted({str(r.get("dataset")) for r in picked if r.get("dataset") is not None})
        n_rows = sum(1 for r in picked if str(r["layer"]) == layers[best])
        chosen[region] = (layers[best], f"{use} on the {split} rows of {', '.join(datasets) or 'the scorecard'} "
                                        f"(mean {means[best]:.4g} over {n_rows} rows)")
    return chosen


def _parse_layer_options(options: list[str]) -> dict[str, str]:
    given: dict[str, str] = {}
    for option in options:
        region, sep, module = option.partition("=")
        region, module = region.strip(), module.strip()
        if not sep or not module or region not in REGIONS:
            raise ValueError(f"--layer takes REGION=MODULE with REGION one of {list(REGIONS)}; got {option!r}")
        given[region] = module
    return given


def region_layers(model: nn.Module, args: argparse.Namespace) -> tuple[dict[str, str], list[str]]:
    """The committed region -> module map and one line per region saying where it came from."""
    given = _parse_layer_options(list(args.layer or []))
    from_card: dict[str, tuple[str, str]] = {}
    if args.scorecard is not None:
        card = nr.Scorecard.load(args.scorecard)
        brain = card.sections.get("brain", ScoreTable())
        if not len(brain):
            raise ValueError(f"--scorecard {str(args.scorecard)!r} has no brain scores to choose layers from")
        from_card = scorecard_layers(brain, args.scorecard_model or args.model, args.metric)
        if not from_card:
            regions = sorted({str(r.get("region")) for r in brain})
            raise ValueError(f"--scorecard {str(args.scorecard)!r} scores none of {list(REGIONS)} (its regions: "
                             f"{regions}){' with --metric ' + args.metric if args.metric else ''}")
    missing = [r for r in REGIONS if r not in given and r not in from_card]
    areas: dict[str, str] = {}
    if missing:
        try:
            areas = nr.area_layers(model)
        except UnknownNameError as exc:
            raise UnknownNameError(f"{exc}; or commit the regions {missing} with --layer REGION=MODULE") from exc
    mapping: dict[str, str] = {}
    sources: list[str] = []
    for region in REGIONS:
        if region in given:
            layer, how = given[region], "--layer"
        elif region in from_card:
            layer, how = from_card[region][0], f"chosen in the scorecard: {from_card[region][1]}"
        else:
            layer, how = areas[region], "the model's area map (neuroreg.area_layers)"
        mapping[region] = _module_name(model, layer, f"the {region} layer")
        sources.append(f"{region}: {mapping[region]} ({how})")
    return mapping, sources


def _build(args: argparse.Namespace) -> tuple[nn.Module, dict[str, Any]]:
    kwargs: dict[str, Any] = {} if args.num_classes is None else {"num_classes": int(args.num_classes)}
    torch.manual_seed(args.seed)
    model = nr.create_model(args.model, pretrained=args.pretrained, **kwargs)
    if args.checkpoint is not None:
        load_weights(model, args.checkpoint, args.model)
    return model.eval(), kwargs


def _visual_degrees(model: nn.Module, given: float | None) -> float:
    if given is not None:
        if not given > 0:
            raise ValueError(f"--visual-degrees must be positive; got {given}")
        return float(given)
    own = getattr(getattr(model, "vone_block", None), "visual_degrees", None)
    return float(own) if isinstance(own, (int, float)) else BRAINSCORE_VISUAL_DEGREES


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    check_plugin_folder(out, overwrite=args.overwrite)
    if args.checkpoint is not None and not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"--checkpoint {str(args.checkpoint)!r} is not a file")
    stem = [re.sub(r"[^A-Za-z0-9._-]", "_", Path(args.checkpoint).stem)] if args.checkpoint is not None else []
    identifier = check_identifier(args.identifier or "-".join(["neuroreg", args.model, *stem]))
    model, kwargs = _build(args)
    mapping, sources = region_layers(model, args)
    image_size = nr.preprocessing_of(model, image_size=args.image_size).image_size
    readout = (_module_name(model, args.behaviour_layer, "--behaviour-layer") if args.behaviour_layer
               else classifier_input_layer(model, image_size, seed=args.seed))
    weights = "the model's " + (f"weights from {Path(args.checkpoint).name}" if args.checkpoint is not None
                                else "pretrained weights" if args.pretrained else f"initial weights (seed {args.seed})")
    out.mkdir(parents=True, exist_ok=True)
    if (out / "region_layer_map").is_dir():
        shutil.rmtree(out / "region_layer_map")
    weights_path = out / "weights.pth"
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, weights_path)
    spec = PluginSpec(identifier=identifier, model_name=args.model, model_kwargs=kwargs, seed=int(args.seed),
                      region_layer_map=mapping, behavioral_readout_layer=readout, image_size=image_size,
                      visual_degrees=_visual_degrees(model, args.visual_degrees),
                      weights_sha256=file_sha256(weights_path), neuroreg_version=nr.__version__,
                      provenance=(f"Weights: {weights}.", "Region-to-layer map:", *(f"- {s}" for s in sources),
                                  f"Behavioural read-out: {readout}."))
    for relative, text in render_plugin(spec).items():
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        (out / relative).write_text(text, encoding="utf-8")
    print(f"wrote the Brain-Score plugin {identifier} to {out}")
    for line in sources:
        print(f"  {line}")
    print(f"  behavioural read-out: {readout}; image {image_size} px = {spec.visual_degrees:g} degrees")
    print(f"copy it to brainscore_vision/models/{plugin_package_name(identifier)}/ and load it with "
          f"brainscore_vision.load_model({identifier!r})")
    return 0
