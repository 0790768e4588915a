"""A user's own retrieval models, as deployed re-ID and product-search models are built: a ResNet-style
trunk, GeM pooling, a BatchNorm embedding and no classifier. Imported by the tests by name
(``user_models:build``), in this process and in fresh ones."""

import torch
import torch.nn.functional as F
from torch import nn

import capdist.testing.user_models as capdist_gem


class GeM(capdist_gem.GeM):
    """GeM as many user codebases write it: the pooling window read from the input's shape (which
    the ONNX exporter cannot keep dynamic)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x.clamp(min=self.eps).pow(self.p), (x.size(-2), x.size(-1))).pow(1.0 / self.p).flatten(1)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


class UserReID(nn.Module):
    """Trunk + GeM + linear projection + BatchNorm1d embedding; ``out`` chooses the output form."""

    def __init__(self, dim: int = 16, width: int = 8, out: str = "tensor") -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = Block(width, 2 * width, 2)
        self.layer2 = Block(2 * width, 4 * width, 2)
        self.pool = GeM()
        self.proj = nn.Linear(4 * width, dim, bias=False)
        self.bnneck = nn.BatchNorm1d(dim)
        self.out = out

    def forward(self, x: torch.Tensor):
        emb = self.bnneck(self.proj(self.pool(self.layer2(self.layer1(self.stem(x))))))
        if self.out == "dict":
            return {"emb": emb, "norm": emb.norm(dim=1)}
        if self.out == "tuple":
            return emb.sum(1, keepdim=True), emb
        return emb


def build(dim: int = 16, out: str = "tensor") -> UserReID:
    return UserReID(dim=dim, out=out)


def needs_classes(num_classes: int) -> UserReID:
    return UserReID(dim=num_classes)


def not_a_model() -> int:
    return 3
