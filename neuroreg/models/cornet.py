"""CORnet-Z, CORnet-R and CORnet-S: shallow recurrent networks with named areas V1, V2, V4, IT.

Kubilius, Schrimpf, et al. (2019), "Brain-Like Object Recognition with
High-Performing Shallow Recurrent ANNs", NeurIPS. Module names follow the
original code (``V1.conv1``, ``V2.conv_input``, ``V2.norm1_0``, ``decoder.linear``
...) so that the official checkpoints load by stripping their ``module.``
prefix. Parameter counts at 1000 classes: CORnet-Z 2,071,656, CORnet-S
53,416,616, CORnet-R 5,208,936.

All three follow timm's conventions: ``forward_features(x)`` returns the IT
map ``(B, 512, H/32, W/32)``, ``forward_head(x, pre_logits=False)`` pools and
classifies, ``reset_classifier(num_classes)`` replaces ``decoder.linear``.
timm's feature API: ``feature_info`` lists the areas V1 (64 channels,
reduction 4), V2 (128, 8), V4 (256, 16), IT (512, 32);
``forward_intermediates`` returns their outputs (stopping after the deepest
one asked for), and ``timm.create_model(name, features_only=True)`` gives
the area maps.
Inputs are ImageNet-normalized images (see ``pretrained_cfg``); any input size
of at least 32 pixels works.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuroreg.errors import ShapeError
from neuroreg.models._intermediates import check_output_fmt, take_indices

__all__ = ["CORnetZ", "CORnetR", "CORnetS", "CORblockZ", "CORblockR", "CORblockS", "check_image_batch"]

AREAS = ("V1", "V2", "V4", "IT")


def _decoder(num_features: int, num_classes: int, drop_rate: float) -> nn.Sequential:
    return nn.Sequential(OrderedDict([
        ("avgpool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten(1)),
        ("dropout", nn.Dropout(drop_rate)),
        ("linear", nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()),
        ("output", nn.Identity()),
    ]))


def check_image_batch(x, in_channels: int | None, where: str) -> None:
    """Refuse anything but a batch of images ``(B, in_channels, H, W)`` (any channel count when
    ``in_channels`` is None), naming the shape seen (kornia style: a 3-D image would otherwise fail
    deep inside, as a matmul or index error)."""
    want = f"(B, {'C' if in_channels is None else in_channels}, H, W)"
    if not isinstance(x, Tensor):
        raise TypeError(f"{where} expects a tensor of images {want}; got {type(x).__name__}")
    if x.ndim != 4 or (in_channels is not None and x.shape[1] != in_channels):
        hint = (" (one unbatched image? add the batch dimension: x.unsqueeze(0))"
                if x.ndim == 3 and in_channels in (None, x.shape[0]) else "")
        raise ShapeError(f"{where} expects a batch of images x of shape {want}; got shape {tuple(x.shape)}{hint}")


def _check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative int (0 = no classifier); got {num_classes!r}")
    return num_classes


class _CORnetBase(nn.Module):
    """timm-style head shared by the CORnets: ``decoder`` = avgpool, flatten, dropout, linear."""

    num_features = 512
    areas = {"V1": "V1", "V2": "V2", "V4": "V4", "IT": "IT"}
    #: ``forward_intermediates`` returns exactly the area modules' outputs (``extract`` relies on it).
    intermediates_are_module_outputs = True

    def _init_head(self, num_classes: int, drop_rate: float) -> None:
        self.num_classes = _check_num_classes(num_classes)
        self.drop_rate = float(drop_rate)
        self.decoder = _decoder(self.num_features, self.num_classes, self.drop_rate)
        self.feature_info = [dict(num_chs=c, reduction=r, module=a)
                             for a, c, r in zip(AREAS, (64, 128, 256, 512), (4, 8, 16, 32))]
        self._n_areas = len(AREAS)

    def _run_areas(self, x: Tensor, n: int) -> list[Tensor]:
        """Outputs of the first ``n`` areas (feed-forward; CORnet-R overrides)."""
        outs = []
        for area in AREAS[:n]:
            x = getattr(self, area)(x)
            outs.append(x)
        return outs

    def _check_input(self, x: Tensor) -> None:
        """``x`` must be ``(B, C, H, W)`` with C the input channels of V1's first conv (3 for images; other
        counts where a front end such as a VOneBlock has replaced part of V1)."""
        first = next((m for m in self.get_submodule("V1").modules() if isinstance(m, nn.Conv2d)), None)
        check_image_batch(x, None if first is None else first.in_channels, type(self).__name__)

    def forward_features(self, x: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` -> the IT map ``(B, 512, H/32, W/32)``."""
        self._check_input(x)
        return self._run_areas(x, self._n_areas)[-1]

    def forward_intermediates(self, x: Tensor, indices: int | list[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """Area maps V1/V2/V4/IT (indices 0-3, timm's rules); ``norm`` is accepted (CORnets have no final norm).

        Returns ``[maps]`` with ``intermediates_only``, else ``(final, [maps])``
        where ``final`` is the IT map (or the deepest area computed with ``stop_early``).
        """
        check_output_fmt(output_fmt)
        self._check_input(x)
        take, max_index = take_indices(self._n_areas, indices)
        n = max_index + 1 if (stop_early or intermediates_only) else self._n_areas
        outs = self._run_areas(x, n)
        maps = [outs[i] for i in take]
        return maps if intermediates_only else (outs[-1], maps)

    def prune_intermediate_layers(self, indices: int | list[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the areas above the deepest index (and the classifier); returns the kept indices."""
        take, max_index = take_indices(self._n_areas, indices)
        for area in AREAS[max_index + 1:self._n_areas]:
            setattr(self, area, nn.Identity())
        self._n_areas = max_index + 1
        self.feature_info = self.feature_info[:self._n_areas]
        if prune_head:
            self.reset_classifier(0)
        return take

    def get_classifier(self) -> nn.Module:
        return self.decoder.get_submodule("linear")

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier by a freshly initialised ``Linear(512, num_classes)`` (0: identity)."""
        if global_pool not in (None, "avg"):
            raise ValueError(f"CORnet pools by average only; got global_pool={global_pool!r}")
        self.num_classes = _check_num_classes(num_classes)
        device = next(self.parameters()).device
        self.decoder.linear = (nn.Linear(self.num_features, num_classes).to(device)
                               if num_classes > 0 else nn.Identity())

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """``(B, 512, h, w)`` -> logits ``(B, num_classes)`` (or pooled ``(B, 512)`` if ``pre_logits``)."""
        part = self.decoder.get_submodule
        x = part("flatten")(part("avgpool")(x))
        if pre_logits:
            return x
        return part("output")(part("linear")(part("dropout")(x)))

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` (normalized) -> logits ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x))


# ----------------------------------------------------------------------------- CORnet-Z
class CORblockZ(nn.Module):
    """Conv -> ReLU -> max-pool 3x3 stride 2; the feed-forward block of CORnet-Z."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)
        self.nonlin = nn.ReLU()
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.output = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.output(self.pool(self.nonlin(self.conv(x))))


class CORnetZ(_CORnetBase):
    """CORnet-Z: four feed-forward conv blocks (V1 7x7 stride 2; V2, V4, IT 3x3), 2,071,656 parameters."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.V1 = CORblockZ(in_chans, 64, kernel_size=7, stride=2)
        self.V2 = CORblockZ(64, 128)
        self.V4 = CORblockZ(128, 256)
        self.IT = CORblockZ(256, 512)
        self._init_head(num_classes, drop_rate)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)



# ----------------------------------------------------------------------------- CORnet-R
def _conv_out(size: int, conv: nn.Conv2d) -> int:
    """Output height (or width) of ``conv`` for an input of ``size`` pixels (numeric padding only)."""
    if isinstance(conv.padding, str):
        raise TypeError(f"_conv_out needs a numeric conv padding; got padding={conv.padding!r}")
    return (size + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1


class CORblockR(nn.Module):
    """Recurrent block of CORnet-R: input conv (GroupNorm, ReLU), then a 3x3 conv on input + state.

    ``forward(inp, state)`` returns the new state; ``inp=None`` means "no input
    yet" (the first time step above V1), in which case the input is zero.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv_input = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)
        self.norm_input = nn.GroupNorm(32, out_channels)
        self.nonlin_input = nn.ReLU()
        self.conv1 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(32, out_channels)
        self.nonlin1 = nn.ReLU()
        self.output = nn.Identity()

    def forward(self, inp: Tensor | None, state: Tensor | None = None,
                empty_shape: tuple[int, int, int] | None = None) -> Tensor:
        if inp is None:
            if empty_shape is None:
                raise ValueError("CORblockR.forward: inp=None (no input yet) needs empty_shape=(batch, height, "
                                 "width) of the zero input; got empty_shape=None")
            batch, height, width = empty_shape
            w = self.conv1.weight
            inp = w.new_zeros(batch, self.out_channels, height, width)
        else:
            inp = self.nonlin_input(self.norm_input(self.conv_input(inp)))
        skip = inp if state is None else inp + state
        return self.output(self.nonlin1(self.norm1(self.conv1(skip))))


class CORnetR(_CORnetBase):
    """CORnet-R: four recurrent blocks unrolled for ``times`` steps (default 5).

    As in the official forward, each area's output is updated in place during
    a time step: at t = 0 V1 reads the image and the areas above it receive
    no input (zeros); at t >= 1 V1 reads the image again and area i reads
    area i-1's output *of the same step*, plus its own state.
    """

    def __init__(self, num_classes: int = 1000, times: int = 5, in_chans: int = 3, drop_rate: float = 0.0) -> None:
        super().__init__()
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"times must be a positive int; got {times!r}")
        self.times = times
        self.V1 = CORblockR(in_chans, 64, kernel_size=7, stride=4)
        self.V2 = CORblockR(64, 128, stride=2)
        self.V4 = CORblockR(128, 256, stride=2)
        self.IT = CORblockR(256, 512, stride=2)
        self._init_head(num_classes, drop_rate)

    def _run_areas(self, x: Tensor, n: int) -> list[Tensor]:
        blocks = [getattr(self, a) for a in AREAS[:n]]
        sizes = [(x.shape[2], x.shape[3])]
        for block in blocks:
            h, w = sizes[-1]
            sizes.append((_conv_out(h, block.conv_input), _conv_out(w, block.conv_input)))
        # t = 0: V1 reads the image, the areas above it no input (zeros) and have no state yet
        outputs: list[Tensor] = [block(x if i == 0 else None, None, empty_shape=(x.shape[0], *sizes[i + 1]))
                                 for i, block in enumerate(blocks)]
        for _ in range(1, self.times):
            for i, block in enumerate(blocks):
                inp = x if i == 0 else outputs[i - 1]
                outputs[i] = block(inp, outputs[i], empty_shape=(x.shape[0], *sizes[i + 1]))
        return outputs


# ----------------------------------------------------------------------------- CORnet-S
class StrideByCallConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose stride can be given per call (``conv(x, stride=2)``).

    CORnet-S applies one shared ``conv2`` at stride 2 on the first recurrent
    step and at stride 1 afterwards. Going through the module call (rather than
    ``F.conv2d`` on its weight) keeps forward hooks firing at every step.
    """

    def forward(self, x: Tensor, stride: int | None = None) -> Tensor:
        if stride is None:
            return super().forward(x)
        return F.conv2d(x, self.weight, self.bias, stride, self.padding, self.dilation, self.groups)


class CORblockS(nn.Module):
    """Recurrent bottleneck block of CORnet-S (scale 4), ``times`` steps with shared convs.

    Step 0 downsamples by 2 (``conv2`` applied with stride 2, skip through
    ``skip``/``norm_skip``); later steps keep the resolution and use identity
    skips. Each step has its own batch norms ``norm{1,2,3}_{t}``.
    """

    scale = 4

    def __init__(self, in_channels: int, out_channels: int, times: int = 1) -> None:
        super().__init__()
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"times must be a positive int; got {times!r}")
        self.times = times
        hidden = out_channels * self.scale
        self.conv_input = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.skip = nn.Conv2d(out_channels, out_channels, kernel_size=1, stride=2, bias=False)
        self.norm_skip = nn.BatchNorm2d(out_channels)
        self.conv1 = nn.Conv2d(out_channels, hidden, kernel_size=1, bias=False)
        self.nonlin1 = nn.ReLU()
        # Stride 2 at step 0 and 1 afterwards, chosen per call: the original
        # mutates ``conv2.stride`` inside forward, which we avoid.
        self.conv2 = StrideByCallConv2d(hidden, hidden, kernel_size=3, padding=1, bias=False)
        self.nonlin2 = nn.ReLU()
        self.conv3 = nn.Conv2d(hidden, out_channels, kernel_size=1, bias=False)
        self.nonlin3 = nn.ReLU()
        self.output = nn.Identity()
        for t in range(times):
            setattr(self, f"norm1_{t}", nn.BatchNorm2d(hidden))
            setattr(self, f"norm2_{t}", nn.BatchNorm2d(hidden))
            setattr(self, f"norm3_{t}", nn.BatchNorm2d(out_channels))

    def forward(self, inp: Tensor) -> Tensor:
        x = self.conv_input(inp)
        for t in range(self.times):
            skip = self.norm_skip(self.skip(x)) if t == 0 else x
            stride = 2 if t == 0 else 1
            x = self.nonlin1(getattr(self, f"norm1_{t}")(self.conv1(x)))
            x = self.conv2(x, stride=stride)
            x = self.nonlin2(getattr(self, f"norm2_{t}")(x))
            x = getattr(self, f"norm3_{t}")(self.conv3(x))
            x = self.nonlin3(x + skip)
            x = self.output(x)
        return x


class CORnetS(_CORnetBase):
    """CORnet-S: V1 (two convs), then CORblock_S areas V2/V4/IT with ``times`` (2, 4, 2).

    53,416,616 parameters at 1000 classes, as the original.
    """

    def __init__(self, num_classes: int = 1000, times: tuple[int, int, int] = (2, 4, 2), in_chans: int = 3,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        steps = tuple(times)
        if len(steps) != 3:
            raise ValueError(f"times must give the recurrent steps of V2, V4 and IT (3 ints); got {steps!r}")
        self.times = steps
        self.V1 = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)),
            ("norm1", nn.BatchNorm2d(64)),
            ("nonlin1", nn.ReLU()),
            ("pool", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            ("conv2", nn.Conv2d(64, 64, kernel_size=3, stride=1, padding=1, bias=False)),
            ("norm2", nn.BatchNorm2d(64)),
            ("nonlin2", nn.ReLU()),
            ("output", nn.Identity()),
        ]))
        self.V2 = CORblockS(64, 128, times=steps[0])
        self.V4 = CORblockS(128, 256, times=steps[1])
        self.IT = CORblockS(256, 512, times=steps[2])
        self._init_head(num_classes, drop_rate)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

