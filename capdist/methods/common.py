"""What every compression method shares: where the models come from, which data it runs on, and
how a run is placed (device, resume, overwrite, subsets).

Example:
    >>> source = ModelSource("runs/teacher")
    >>> RunOptions(device="cpu").resume
    False
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..data import RetrievalData, open_dataset
from ..errors import UnsupportedModel
from ..io.sources import open_model
from ..models.view import RetrievalView

log = logging.getLogger("capdist")


@dataclass
class ModelSource:
    """A trained model: an ``nn.Module`` in hand, a run directory, a torchvision name,
    ``package.module:factory`` or ``timm:NAME``, with its checkpoint and constructor arguments.

    Attributes:
        spec: the module or its name.
        weights: checkpoint path (safetensors, or a torch file read weights-only).
        args: constructor arguments of a factory.
        embedding_output: which entry of a dict / tuple output is the embedding.
        allow_partial: load the tensors that fit and list the rest.
        note: what :meth:`open` built and how, in one line.
    """

    spec: str | nn.Module
    weights: str | None = None
    args: dict = field(default_factory=dict)
    embedding_output: str | int | None = None
    allow_partial: bool = False
    note: str = field(default="", repr=False, compare=False)

    @classmethod
    def of(cls, source: ModelSource | str | nn.Module) -> ModelSource:
        """A source from a source, a name or a module."""
        return source if isinstance(source, ModelSource) else cls(source)

    def open(self, num_classes: int) -> nn.Module:
        """The model in eval mode; :attr:`note` says what was built and how (the methods log it once the
        run's settings have been checked, so a bad setting is the only line printed)."""
        if isinstance(self.spec, nn.Module):
            self.note = f"{type(self.spec).__name__} in hand"
            return self.spec.eval()
        spec = self.spec
        if self.weights and not Path(spec).is_dir() and (Path(self.weights).parent / "config.json").is_file() \
                and ":" not in spec:
            from ..io.run_dir import read_config

            config = read_config(Path(self.weights).parent)
            if isinstance(config.get("model"), dict) and config["model"].get("backbone") == spec:
                spec = str(Path(self.weights).parent)
        opened = open_model(spec, self.weights, self.args, num_classes, self.embedding_output, self.allow_partial)
        self.note = opened.note
        return opened.model.eval()


@dataclass
class RunOptions:
    """Where and how a run happens, apart from what the method does.

    Attributes:
        device: ``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        resume: continue a run from its last checkpoint.
        overwrite: replace a run directory that holds another run.
        train_subset: train on this many images drawn by the seed.
        test_subset: evaluate on the first N queries.
        recipe: the resolved options to store beside the run as ``config.yaml``.
    """

    device: str = "auto"
    resume: bool = False
    overwrite: bool = False
    train_subset: int | None = None
    test_subset: int | None = None
    recipe: dict | None = None


def _embedding(model: nn.Module, example: torch.Tensor) -> torch.Tensor:
    out = model(example)
    return out["embedding"] if isinstance(out, dict) else out


def _find_embedding(view: RetrievalView, example: torch.Tensor) -> None:
    """A view that names no output, over a module whose training output is a tuple or list while its eval
    output is a tensor (torchreid's ``(logits, features)``): the one entry as wide as the eval output
    becomes the embedding, said in one line. Several or none: left for the user to name."""
    deployed = view.model.eval()(example)
    trained = view.model.train()(example)
    if not isinstance(deployed, torch.Tensor) or not isinstance(trained, (tuple, list)):
        return
    width = deployed.flatten(1).shape[1]
    fits = [i for i, t in enumerate(trained) if isinstance(t, torch.Tensor) and t.dim() >= 2
            and t.flatten(1).shape[1] == width]
    if len(fits) == 1:
        view.output = fits[0]
        view.source["embedding_output"] = fits[0]
        log.info("embedding: entry %d of the model's training-mode output, as wide (%d) as its eval-mode "
                 "output (--embedding-output %d)", fits[0], width, fits[0])


def preflight(models: list[nn.Module], example: torch.Tensor) -> None:
    """A forward of each model in eval mode and in training mode on a real batch (two images or more),
    before anything is written: a model whose output holds no embedding where capdist looks, or whose
    training-mode output is not the embedding it deploys (torchreid's ``loss='softmax'`` returns the
    logits in training), fails here with its one-line reason. A training-mode tuple with one entry as
    wide as the eval-mode embedding has that entry chosen. The forwards leave the models' buffers
    (BatchNorm statistics) as they were.

    Raises:
        UnsupportedModel: no embedding, or training and eval embeddings of different widths.
    """
    with torch.no_grad():
        for model in models:
            was = model.training
            buffers = {name: b.clone() for name, b in model.named_buffers()}
            try:
                if isinstance(model, RetrievalView) and model.output is None:
                    _find_embedding(model, example)
                deployed = _embedding(model.eval(), example)
                trained = _embedding(model.train(), example)
            finally:
                for name, b in model.named_buffers():
                    b.copy_(buffers[name])
                model.train(was)
            if trained.flatten(1).shape[1:] != deployed.flatten(1).shape[1:]:
                raise UnsupportedModel(
                    f"in training mode the model's embedding is {trained.flatten(1).shape[1]} wide, in eval mode "
                    f"{deployed.flatten(1).shape[1]}: training would distil the wrong output (torchreid: build "
                    "with loss=triplet and --embedding-output 1, whose training output is (logits, features))")


def resolve_data(data: str | RetrievalData, train_subset: int | None = None, test_subset: int | None = None,
                 seed: int = 0) -> RetrievalData:
    """A dataset spec or a :class:`RetrievalData` already in hand, with the requested subsets."""
    opened = data if isinstance(data, RetrievalData) else open_dataset(data)
    return opened.train_subset(train_subset, seed=seed).test_subset(test_subset)
