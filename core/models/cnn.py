"""Convolutional classifiers: the authors' ``smallcnn`` and ``largecnn`` (paper notes, section 3).

Both take features ``[B, C, frames, coeffs]`` (C = 1 from the front end) and return raw
logits ``[B, n_classes]``. Linear layers are sized from the input shape by a dummy forward
at build time; with the default front end (101 x 40) the flatten sizes are the authors'
3072 (smallcnn) and 12288 (largecnn).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.models.layers import check_input_shape, make_input_norm, probe_shape

__all__ = ["SmallConvStem", "SmallCNN", "LargeCNN"]


class SmallConvStem(nn.Module):
    """The three conv blocks of ``smallcnn`` (shared with ``smalllstm``), after the input norm.

    Block 1: Conv 1->64 (2x2), ReLU, BN, MaxPool (1,3). Block 2: Conv 64->64 (2x2), ReLU,
    BN, MaxPool 2 with padding (1,1). Block 3: Conv 64->32 (2x2), ReLU, BN, MaxPool 2 with
    padding (0,1). Registers ``input_norm``, ``conv1``..``conv3``, ``bn1``..``bn3``,
    ``pool1``..``pool3`` directly on the subclass so the names stay flat.
    """

    def _build_stem(self, in_channels: int, n_coeffs: int, input_norm: bool) -> None:
        self.input_norm = make_input_norm(input_norm, n_coeffs)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=2)
        self.bn1 = nn.BatchNorm2d(64)
        self.pool1 = nn.MaxPool2d(kernel_size=(1, 3))
        self.conv2 = nn.Conv2d(64, 64, kernel_size=2)
        self.bn2 = nn.BatchNorm2d(64)
        self.pool2 = nn.MaxPool2d(kernel_size=2, padding=(1, 1))
        self.conv3 = nn.Conv2d(64, 32, kernel_size=2)
        self.bn3 = nn.BatchNorm2d(32)
        self.pool3 = nn.MaxPool2d(kernel_size=2, padding=(0, 1))

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[B, C, T, F]`` -> conv feature maps ``[B, 32, T', F']``."""
        x = self.input_norm(x)
        x = self.pool1(self.bn1(F.relu(self.conv1(x))))
        x = self.pool2(self.bn2(F.relu(self.conv2(x))))
        return self.pool3(self.bn3(F.relu(self.conv3(x))))


class SmallCNN(SmallConvStem):
    """``smallcnn``: three conv blocks, Dropout 0.4, FC(flat->128), ReLU, Dropout 0.5, FC(128->classes).

    The authors' trailing log_softmax and unused Softmax child are left out: it returns logits.
    """

    def __init__(self, input_shape: tuple[int, int, int], n_classes: int, *, input_norm: bool = True) -> None:
        super().__init__()
        ch, _, coeffs = check_input_shape(input_shape, "smallcnn")
        self._build_stem(ch, coeffs, input_norm)
        self.dropout1 = nn.Dropout(0.4)
        flat = probe_shape(self, self.stem, input_shape, "smallcnn")[1:].numel()
        self.fc1 = nn.Linear(flat, 128)
        self.dropout2 = nn.Dropout(0.5)
        self.fc = nn.Linear(128, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout1(self.stem(x)).flatten(1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return self.fc(x)


class LargeCNN(nn.Module):
    """``largecnn``: AlexNet-like; five 3x3 convs (96, 256, 384, 384, 256), three FC layers.

    Conv1 and conv2 are followed by MaxPool 2 without a ReLU (as in the authors' code; the
    max-pooling still makes them non-linear); conv3-5 have ReLUs, then MaxPool 3 stride 2.
    FC(flat->256), ReLU, Dropout 0.5, FC(256->128), ReLU, Dropout 0.5, FC(128->classes).
    The model has no BatchNorm, so ``input_norm`` (on by default) matters most here.
    """

    def __init__(self, input_shape: tuple[int, int, int], n_classes: int, *, input_norm: bool = True) -> None:
        super().__init__()
        ch, _, coeffs = check_input_shape(input_shape, "largecnn")
        self.input_norm = make_input_norm(input_norm, coeffs)
        self.conv1 = nn.Conv2d(ch, 96, kernel_size=3, padding=1)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(96, 256, kernel_size=3, padding=1)
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(256, 384, kernel_size=3, padding=1)
        self.conv4 = nn.Conv2d(384, 384, kernel_size=3, padding=1)
        self.conv5 = nn.Conv2d(384, 256, kernel_size=3, padding=1)
        self.pool3 = nn.MaxPool2d(kernel_size=3, stride=2)
        flat = probe_shape(self, self.features, input_shape, "largecnn")[1:].numel()
        self.fc1 = nn.Linear(flat, 256)
        self.dropout1 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(256, 128)
        self.dropout2 = nn.Dropout(0.5)
        self.fc = nn.Linear(128, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[B, C, T, F]`` -> conv feature maps ``[B, 256, T', F']``."""
        x = self.input_norm(x)
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x))
        return self.pool3(F.relu(self.conv5(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(1)
        x = self.dropout1(F.relu(self.fc1(x)))
        x = self.dropout2(F.relu(self.fc2(x)))
        return self.fc(x)
