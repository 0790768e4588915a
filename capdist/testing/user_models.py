"""A user-style retrieval model, as most deployed re-ID and product-search models are built: a
torchvision ResNet trunk, GeM pooling (Radenovic et al., TPAMI 2018) and a BatchNorm embedding,
no classifier. It is what ``capdist compress --teacher capdist.testing.user_models:gem_resnet``
exercises in the benchmarks: a model capdist did not build.

Example:
    >>> import torch
    >>> gem_resnet("resnet18", dim=32)(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 32])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn


class GeM(nn.Module):
    """Generalised-mean pooling with a learnable exponent."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(p))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x.clamp(min=self.eps).pow(self.p), 1).pow(1.0 / self.p).flatten(1)


class GeMResNet(nn.Module):
    """ResNet trunk (no pooling, no fc) + GeM + linear projection + BatchNorm1d embedding.

    Args:
        arch: a torchvision ResNet name.
        dim: embedding width.
        last_stride: stride of the last stage (1 is the re-ID convention).
    """

    def __init__(self, arch: str = "resnet50", dim: int = 128, last_stride: int = 2) -> None:
        super().__init__()
        net = torchvision.models.get_model(arch, weights=None)
        if last_stride == 1:
            block = net.layer4[0]
            for m in (getattr(block, "conv2", None) if hasattr(block, "conv3") else block.conv1,
                      block.downsample[0] if block.downsample is not None else None):
                if m is not None:
                    m.stride = (1, 1)
        self.trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
                                   net.layer4)
        self.pool = GeM()
        self.proj = nn.Linear(net.fc.in_features, dim, bias=False)
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.proj(self.pool(self.trunk(x))))


def gem_resnet(arch: str = "resnet50", dim: int = 128, last_stride: int = 2) -> GeMResNet:
    """Factory for ``package.module:factory`` specs (``--teacher-arg arch=resnet50``)."""
    return GeMResNet(arch, dim, last_stride)


class TwoOutputs(nn.Module):
    """A small model returning ``(logits, embedding)``, as many re-ID codebases do in training."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.body(x)
        return self.classifier(embedding), embedding


def two_outputs(num_classes: int = 10) -> TwoOutputs:
    """A :class:`TwoOutputs` (a factory for ``package.module:factory`` specs)."""
    return TwoOutputs(num_classes)


class LogitsInTraining(TwoOutputs):
    """Returns the logits alone in training mode and the embedding in eval mode (torchreid's
    ``loss='softmax'`` contract): its training output is not the embedding it deploys."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, embedding = super().forward(x)
        return logits if self.training else embedding


def logits_in_training(num_classes: int = 5) -> LogitsInTraining:
    """A :class:`LogitsInTraining` (a factory for ``package.module:factory`` specs)."""
    return LogitsInTraining(num_classes)
