"""The original CORnet-S, written out as published (reference for tests; not part of the package)."""

from collections import OrderedDict

import torch
from torch import nn


class _OriginalCORblockS(nn.Module):
    """The original block, written out as published (stride changed on the module each step)."""

    def __init__(self, cin, cout, times):
        super().__init__()
        self.times = times
        self.conv_input = nn.Conv2d(cin, cout, 1, bias=False)
        self.skip = nn.Conv2d(cout, cout, 1, stride=2, bias=False)
        self.norm_skip = nn.BatchNorm2d(cout)
        self.conv1 = nn.Conv2d(cout, 4 * cout, 1, bias=False)
        self.conv2 = nn.Conv2d(4 * cout, 4 * cout, 3, stride=2, padding=1, bias=False)
        self.conv3 = nn.Conv2d(4 * cout, cout, 1, bias=False)
        for t in range(times):
            setattr(self, f"norm1_{t}", nn.BatchNorm2d(4 * cout))
            setattr(self, f"norm2_{t}", nn.BatchNorm2d(4 * cout))
            setattr(self, f"norm3_{t}", nn.BatchNorm2d(cout))

    def forward(self, inp):
        x = self.conv_input(inp)
        for t in range(self.times):
            if t == 0:
                skip = self.norm_skip(self.skip(x))
                self.conv2.stride = (2, 2)
            else:
                skip = x
                self.conv2.stride = (1, 1)
            x = torch.relu(getattr(self, f"norm1_{t}")(self.conv1(x)))
            x = torch.relu(getattr(self, f"norm2_{t}")(self.conv2(x)))
            x = getattr(self, f"norm3_{t}")(self.conv3(x))
            x = torch.relu(x + skip)
        return x


def original_cornet_s():
    return nn.Sequential(OrderedDict([
        ("V1", nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)), ("norm1", nn.BatchNorm2d(64)),
            ("nonlin1", nn.ReLU()), ("pool", nn.MaxPool2d(3, 2, 1)),
            ("conv2", nn.Conv2d(64, 64, 3, padding=1, bias=False)), ("norm2", nn.BatchNorm2d(64)),
            ("nonlin2", nn.ReLU())]))),
        ("V2", _OriginalCORblockS(64, 128, 2)),
        ("V4", _OriginalCORblockS(128, 256, 4)),
        ("IT", _OriginalCORblockS(256, 512, 2)),
        ("decoder", nn.Sequential(OrderedDict([
            ("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("linear", nn.Linear(512, 1000))]))),
    ]))


def randomize_bn(model, seed):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
