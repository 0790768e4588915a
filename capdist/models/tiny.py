"""Tiny CNNs with the layer patterns capdist must handle.

``TinyResNet`` has basic residual blocks (internal and residual-coupled groups);
``TinyMobileNet`` has inverted residuals with depthwise convs (diagonal
compactors). Both train in seconds on 8x8 or 16x16 inputs on a CPU.

Example:
    >>> import torch
    >>> TinyResNet(num_classes=10)(torch.randn(2, 3, 16, 16)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import torch
from torch import nn


class _Basic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.down is None else self.down(x)))


class TinyResNet(nn.Module):
    """A 4-block ResNet for 1- or 3-channel inputs of 8-32 pixels.

    Args:
        num_classes: outputs of the classifier.
        in_channels: image channels.
        width: channels of the first stage (the second has twice as many).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.layer1 = nn.Sequential(_Basic(width, width, 1), _Basic(width, width, 1))
        self.layer2 = nn.Sequential(_Basic(width, 2 * width, 2), _Basic(2 * width, 2 * width, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class _Inverted(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.block = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class TinyMobileNet(nn.Module):
    """A MobileNetV2-style net with depthwise convs and inverted residuals.

    Args:
        num_classes: outputs of the classifier.
        in_channels: image channels.
        width: channels after the stem.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                          nn.BatchNorm2d(width), nn.ReLU6(inplace=True)),
            _Inverted(width, width, 4, 1),
            _Inverted(width, 2 * width, 4, 2),
            _Inverted(2 * width, 2 * width, 4, 1),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.head(x.mean((2, 3)))


def tiny_models() -> dict[str, type[nn.Module]]:
    """The tiny test models by name."""
    return {"tiny_resnet": TinyResNet, "tiny_mobilenet": TinyMobileNet}
