"""The authors' small ResNet for keyword spotting (paper notes, section 3).

conv3x3 1->16, BN, ReLU; three stages (``layer1``..``layer3``) of two residual blocks with
16, 32 and 64 channels, stride 2 in stages 2 and 3 (downsample path: conv3x3 + BN); a 1x1
conv 64->64 with stride (2,1) (``head_conv``, no BN or ReLU, as in the authors' code);
AvgPool 4; FC. With the default front end (101 x 40) the FC input is the authors' 384.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.models.layers import check_input_shape, make_input_norm, probe_shape

__all__ = ["ResidualBlock", "ResNet"]


class ResidualBlock(nn.Module):
    """Two 3x3 conv + BN layers with an identity shortcut (conv3x3 + BN when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNet(nn.Module):
    """``resnet``: stem, three stages of two residual blocks (16/32/64), 1x1 conv stride (2,1), AvgPool 4, FC."""

    def __init__(self, input_shape: tuple[int, int, int], n_classes: int, *, input_norm: bool = True) -> None:
        super().__init__()
        ch, _, coeffs = check_input_shape(input_shape, "resnet")
        self.input_norm = make_input_norm(input_norm, coeffs)
        self.conv1 = nn.Conv2d(ch, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = nn.Sequential(ResidualBlock(16, 16), ResidualBlock(16, 16))
        self.layer2 = nn.Sequential(ResidualBlock(16, 32, stride=2), ResidualBlock(32, 32))
        self.layer3 = nn.Sequential(ResidualBlock(32, 64, stride=2), ResidualBlock(64, 64))
        self.head_conv = nn.Conv2d(64, 64, kernel_size=1, stride=(2, 1))
        self.pool = nn.AvgPool2d(4)
        flat = probe_shape(self, self.features, input_shape, "resnet")[1:].numel()
        self.fc = nn.Linear(flat, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[B, C, T, F]`` -> pooled maps ``[B, 64, T', F']``."""
        x = self.input_norm(x)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.pool(self.head_conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))
