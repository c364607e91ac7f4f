"""Networks: CIFAR ResNets of depth 6n+2 (He et al. 2016, section 4.2) and torchvision ResNet-18/34.

A CIFAR ResNet is a 3x3 stem conv, three sections of n basic blocks with 16w, 32w, 64w
channels (w: width multiplier) at full, 1/2 and 1/4 of the input's side, global average
pooling and a linear classifier: 2 + 6n weight layers. Downsampling blocks use a 1x1
convolution shortcut with batch norm ("option B"); the paper does not say which option
its ResNets used. The paper's CIFAR-100 ResNet-32 has w = 4.

Each ReLU is its own module so that features.py can hook any activation without
touching the forward code.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torchvision
from torch import nn

from fspbench.errors import BadInput
from fspbench.registry import CIFAR_ARCH, check_arch, cifar_depth_blocks

__all__ = ["CifarResNet", "build_model", "check_arch", "cifar_depth_blocks", "section_names"]

TORCHVISION_BUILDERS = {"tv-resnet18": torchvision.models.resnet18, "tv-resnet34": torchvision.models.resnet34}


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus shortcut, then ReLU. x: (B, Cin, H, W) -> (B, Cout, H/s, W/s)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.act2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images. x: (B, in_channels, H, W) -> logits (B, num_classes)."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, width: int = 1) -> None:
        super().__init__()
        n = cifar_depth_blocks(depth)
        widths = [16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        c_in = widths[0]
        for i, c_out in enumerate(widths):
            blocks = [BasicBlock(c_in if b == 0 else c_out, c_out, 2 if (i > 0 and b == 0) else 1) for b in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            c_in = c_out
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():  # MSRA init (paper), as in He et al. 2015
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 16w, H, W)
        x = self.layer3(self.layer2(self.layer1(x)))  # (B, 64w, H/4, W/4)
        return self.fc(torch.flatten(self.avgpool(x), 1))  # (B, num_classes)


def build_model(arch: str, num_classes: int, in_channels: int, width: int = 1, weights: str = "") -> nn.Module:
    """Build ``arch`` for a task with ``num_classes`` classes and ``in_channels`` input channels.

    tv-resnet18/34 may load a local ImageNet state dict (``weights``); the classifier is
    replaced when the class count differs, and the stem conv is averaged over RGB when the
    task has one input channel, so the pretrained filters are kept.
    """
    check_arch(arch)
    m = CIFAR_ARCH.match(arch)
    if m:
        if weights:
            raise BadInput(f"weights: only tv-resnet18/34 load pretrained weights, not {arch}")
        return CifarResNet(int(m.group(1)), num_classes, in_channels, width)
    if width != 1:
        raise BadInput(f"width: {arch} has a fixed width; use width = 1")
    model = TORCHVISION_BUILDERS[arch](weights=None)
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise BadInput(f"weights: no such file {weights!r}; give a local ImageNet state dict (.pth)")
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (RuntimeError, KeyError, ValueError) as err:
            first = str(err).splitlines()[0]
            raise BadInput(f"weights: {weights} is not a {arch} state dict ({first})") from None
    if in_channels != 3:
        old = model.conv1
        model.conv1 = nn.Conv2d(in_channels, old.out_channels, 7, 2, 3, bias=False)
        with torch.no_grad():
            model.conv1.weight.copy_(old.weight.mean(dim=1, keepdim=True).expand_as(model.conv1.weight))
    if num_classes != model.fc.out_features:
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def section_names(model: nn.Module) -> list[str]:
    """Names of the model's sections (one spatial size each): layer1, layer2, ..."""
    names = [n for n, _ in model.named_children() if re.fullmatch(r"layer\d+", n)]
    if not names:
        raise TypeError(f"{type(model).__name__} has no layer<k> sections")
    return names
