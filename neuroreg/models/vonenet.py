"""VOneNet: VOneBlock -> 1x1 bottleneck -> any backbone with its stem removed (Dapello et al. 2020).

The VOneBlock (stride 4) replaces the backbone's stem, which also reduces by
4 in ResNets, CORnet-S/Z and AlexNet, so the rest of the network sees the
resolution it was designed for. A bias-free 1x1 convolution maps the 512
VOneBlock channels to the channels the backbone's first remaining layer takes.

Backbones understood without help (stem modules replaced by ``nn.Identity``):

* timm and torchvision ResNets: ``conv1``, ``bn1``, ``act1``/``relu``, ``maxpool``;
* CORnet-S and CORnet-Z: ``V1``;
* torchvision AlexNet: ``features.0-2`` (conv, ReLU, max-pool);
* timm EfficientNet/MobileNet: ``conv_stem``, ``bn1``.

Any other backbone: pass ``stem=[module names]`` and ``backbone_channels``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import timm
import torch
from torch import Tensor, nn
from torchvision.models import AlexNet

from neuroreg._utils.modes import eval_mode
from neuroreg.models._intermediates import TimmModelAPI, check_output_fmt, hooked_intermediates, take_indices
from neuroreg.models.areas import area_layers
from neuroreg.models.cornet import CORnetS, CORnetZ
from neuroreg.models.vone import VOneBlock

__all__ = ["VOneNet", "strip_stem"]


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def _int_attr(obj: object, attr: str) -> int:
    """``obj.<attr>`` checked to be an int (AttributeError when missing, as plain attribute access)."""
    value = getattr(obj, attr)
    if not isinstance(value, int):
        raise TypeError(f"{type(obj).__name__}.{attr} must be an int; got {value!r}")
    return value


def _stem_channels(backbone: nn.Module, name: str) -> int | None:
    """``out_channels`` of the stem module ``name`` when it is a single conv, else None (layout not known)."""
    value = getattr(getattr(backbone, name, None), "out_channels", None)
    return value if isinstance(value, int) else None


def _known_stem(backbone: nn.Module) -> tuple[list[str], int] | None:
    if isinstance(backbone, (CORnetS, CORnetZ)):
        first = backbone.V2.conv_input if isinstance(backbone, CORnetS) else backbone.V2.conv
        return ["V1"], first.in_channels
    if isinstance(backbone, AlexNet):
        return ["features.0", "features.1", "features.2"], backbone.features[3].in_channels
    if all(hasattr(backbone, a) for a in ("conv1", "bn1", "maxpool", "layer1")):
        act = "act1" if hasattr(backbone, "act1") else "relu"
        channels = _stem_channels(backbone, "conv1")      # None for deep stems (timm resnet*d: a Sequential)
        if channels is not None:
            return ["conv1", "bn1", act, "maxpool"], channels
    if hasattr(backbone, "conv_stem") and hasattr(backbone, "bn1"):
        channels = _stem_channels(backbone, "conv_stem")
        if channels is not None:
            return ["conv_stem", "bn1"], channels
    return None


def strip_stem(backbone: nn.Module, stem: Sequence[str] | None = None,
               backbone_channels: int | None = None) -> tuple[nn.Module, int]:
    """Replace the stem modules of ``backbone`` by ``nn.Identity`` (in place); return it and its input channels."""
    known = _known_stem(backbone)
    if stem is None:
        if known is None:
            raise ValueError(f"no stem is known for {type(backbone).__name__}; pass stem=[module names] "
                             "and backbone_channels=<channels the first kept layer expects>")
        stem = known[0]
    if backbone_channels is None:
        if known is None:
            raise ValueError("backbone_channels is required when the stem is given explicitly for "
                             f"{type(backbone).__name__}")
        backbone_channels = known[1]
    modules = dict(backbone.named_modules())
    missing = [name for name in stem if name not in modules]
    if missing:
        raise ValueError(f"stem names {missing} are not modules of {type(backbone).__name__}")
    for name in stem:
        _set_module(backbone, name, nn.Identity())
    return backbone, int(backbone_channels)


class VOneNet(nn.Module):
    """VOneBlock front end on ``backbone`` (a module, or a timm model name).

    Args:
        backbone: timm model, torchvision ResNet/AlexNet, CORnet, or a timm name.
        vone_block: a ready VOneBlock; otherwise one is built from ``**vone_kwargs``.
        stem, backbone_channels: override the stem detection (see module docs).
        num_classes: only with a timm name (passed to ``timm.create_model``).

    ``forward_features``/``forward_head``/``reset_classifier`` delegate to the
    backbone (torchvision models get the equivalent split). ``areas``: V1 is
    ``"vone_block"``; V2/V4/IT come from the backbone's area map under ``backbone.``.
    timm's feature API: ``feature_info`` (one entry per area, channels and
    reduction measured once on an ``image_size`` input), ``forward_intermediates``
    (the area modules' outputs; stops after the deepest one asked for) and
    ``timm.create_model(name, features_only=True)``.
    Inputs are images normalized with mean = std = 0.5 (``pretrained_cfg``).
    """

    #: ``forward_intermediates`` returns exactly the area modules' outputs (``extract`` relies on it).
    intermediates_are_module_outputs = True
    #: The ``flags`` of the official checkpoint loaded by the registry (set only then).
    official_flags: dict

    def __init__(self, backbone: nn.Module | str, *, vone_block: VOneBlock | None = None,
                 stem: Sequence[str] | None = None, backbone_channels: int | None = None,
                 num_classes: int | None = None, **vone_kwargs) -> None:
        super().__init__()
        if isinstance(backbone, str):
            backbone = (timm.create_model(backbone) if num_classes is None
                        else timm.create_model(backbone, num_classes=num_classes))
        elif num_classes is not None:
            raise ValueError("num_classes is only used with a backbone name; call reset_classifier on a module")
        if vone_block is not None and vone_kwargs:
            raise ValueError(f"give either vone_block or VOneBlock keywords, not both (got {sorted(vone_kwargs)})")
        self.vone_block = vone_block if vone_block is not None else VOneBlock(**vone_kwargs)
        self.backbone, channels = strip_stem(backbone, stem, backbone_channels)
        self.bottleneck = nn.Conv2d(self.vone_block.out_channels, channels, kernel_size=1, bias=False)
        nn.init.kaiming_normal_(self.bottleneck.weight, mode="fan_out", nonlinearity="relu")
        self._kind = self._backbone_kind(self.backbone)
        self.areas = self._areas()
        # the VOneNet input contract (mean = std = 0.5) also when built directly, not through the registry
        # (the registry attaches the registered cfg afterwards, with the same statistics)
        base = getattr(backbone, "pretrained_cfg", None) or {}
        self.pretrained_cfg = {**dict(base), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
        self._feature_names = [self.areas[a] for a in ("V1", "V2", "V4", "IT") if a in self.areas]
        self._feature_info: list[dict] | None = None

    @staticmethod
    def _backbone_kind(b: nn.Module) -> str:
        if all(hasattr(b, a) for a in ("forward_features", "forward_head", "reset_classifier")):
            return "timm"
        if all(hasattr(b, a) for a in ("features", "avgpool", "classifier")):
            return "features_classifier"
        if all(hasattr(b, a) for a in ("layer4", "avgpool", "fc")):
            return "resnet"
        raise ValueError(f"{type(b).__name__} has neither timm's forward_features/forward_head nor a torchvision "
                         "ResNet/AlexNet layout; wrap it to provide forward_features and forward_head")

    def _areas(self) -> dict[str, str]:
        try:
            inner = area_layers(self.backbone)
        except KeyError:
            inner = {}
        areas = {"V1": "vone_block"}
        areas.update({a: f"backbone.{name}" for a, name in inner.items() if a != "V1"})
        return areas

    def _timm_backbone(self) -> TimmModelAPI:
        """The backbone through timm's API (only for ``_kind == "timm"``, which checked that it has it)."""
        return cast(TimmModelAPI, self.backbone)

    def _classifier_stack(self) -> nn.Sequential:
        """``backbone.classifier`` of a ``"features_classifier"`` backbone (torchvision AlexNet/VGG layout)."""
        stack = self.backbone.get_submodule("classifier")
        if not isinstance(stack, nn.Sequential):
            raise TypeError(f"{type(self.backbone).__name__}.classifier must be an nn.Sequential ending in the "
                            f"final layer; got {type(stack).__name__}")
        return stack

    @property
    def num_classes(self) -> int:
        """The backbone's own ``num_classes``, else the classifier's outputs (0 without a linear classifier)."""
        if hasattr(self.backbone, "num_classes"):
            return _int_attr(self.backbone, "num_classes")
        head = self.get_classifier()
        return head.out_features if isinstance(head, nn.Linear) else 0

    @property
    def num_features(self) -> int:
        """The backbone's own ``num_features``, else the classifier's ``in_features``."""
        source = self.backbone if hasattr(self.backbone, "num_features") else self.get_classifier()
        return _int_attr(source, "num_features" if source is self.backbone else "in_features")

    def get_classifier(self) -> nn.Module:
        if self._kind == "timm":
            return self._timm_backbone().get_classifier()
        if self._kind == "features_classifier":
            return self._classifier_stack()[-1]
        return self.backbone.get_submodule("fc")

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New classifier with ``num_classes`` outputs (0: identity)."""
        if self._kind == "timm":
            b = self._timm_backbone()
            if global_pool is None:
                b.reset_classifier(num_classes)
            else:
                b.reset_classifier(num_classes, global_pool)
            return
        old = self.get_classifier()
        new: nn.Module = nn.Identity()
        if num_classes > 0:
            in_features, weight = _int_attr(old, "in_features"), old.weight
            if not isinstance(weight, Tensor):
                raise TypeError(f"the classifier's weight ({type(old).__name__}.weight) must be a tensor; "
                                f"got {type(weight).__name__}")
            new = nn.Linear(in_features, num_classes).to(weight.device)
        if self._kind == "features_classifier":
            self._classifier_stack()[-1] = new
        else:
            self.backbone.fc = new

    def forward_features(self, x: Tensor) -> Tensor:
        """Images ``(B, 3, H, W)`` -> the backbone's last feature map."""
        x = self.bottleneck(self.vone_block(x))
        if self._kind == "timm":
            return self._timm_backbone().forward_features(x)
        part = self.backbone.get_submodule
        if self._kind == "features_classifier":
            return part("features")(x)
        x = part("maxpool")(part("relu")(part("bn1")(part("conv1")(x))))          # identities after strip_stem
        return part("layer4")(part("layer3")(part("layer2")(part("layer1")(x))))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        if self._kind == "timm":
            return self._timm_backbone().forward_head(x, pre_logits=pre_logits)
        x = torch.flatten(self.backbone.get_submodule("avgpool")(x), 1)
        if self._kind == "features_classifier":
            stack = self._classifier_stack()
            return stack[:-1](x) if pre_logits else stack(x)
        return x if pre_logits else self.backbone.get_submodule("fc")(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def feature_info(self) -> list[dict]:
        """``[{"num_chs", "reduction", "module"}]`` for V1 (``vone_block``), V2, V4, IT."""
        if self._feature_info is None:
            size = int(self.vone_block.image_size)
            device = self.bottleneck.weight.device
            # the sizing pass draws VOneBlock noise; forked so it does not shift the caller's random stream
            # (a seeded extraction would otherwise differ between the first call on a network and later ones)
            with eval_mode(self), torch.no_grad(), torch.random.fork_rng(
                    devices=[device] if device.type == "cuda" else []):
                out = self.forward_intermediates(torch.zeros(1, self.vone_block.in_channels, size, size,
                                                             device=device), intermediates_only=True)
            maps = out if isinstance(out, list) else out[1]      # a list with intermediates_only
            self._feature_info = [dict(num_chs=int(f.shape[1]), reduction=round(size / f.shape[-1]), module=name)
                                  for f, name in zip(maps, self._feature_names)]
        return self._feature_info

    def forward_intermediates(self, x: Tensor, indices: int | list[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """Area maps (indices over ``feature_info``, timm's rules): ``[maps]`` with ``intermediates_only``,
        else ``(final, [maps])``; ``final`` is ``forward_features(x)`` (the deepest requested map with
        ``stop_early``). ``norm`` is accepted for timm's wrappers and changes nothing."""
        check_output_fmt(output_fmt)
        take, _ = take_indices(len(self._feature_names), indices)
        final, maps = hooked_intermediates(self, self.forward_features, x, self._feature_names, take,
                                           stop_early or intermediates_only)
        return maps if intermediates_only else (final, maps)

    def prune_intermediate_layers(self, indices: int | list[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the classifier (``prune_head``); later areas are skipped at run time. Returns the kept indices."""
        take, _ = take_indices(len(self._feature_names), indices)
        if prune_head:
            self.reset_classifier(0)
        return take
