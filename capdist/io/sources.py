"""Where a model comes from: a run directory, a torchvision name, a user's factory or timm, plus a
checkpoint.

:func:`open_model` turns what a user types into a model capdist can train and evaluate:

- a capdist run directory;
- a torchvision classification name (or a capdist tiny model): the backbone inside
  :class:`RetrievalNet`, a plain torchvision state dict loading into its backbone;
- ``package.module:factory`` or ``timm:NAME`` with keyword arguments: the factory's module
  is used **as is** (in a :class:`RetrievalView`) when the weights fit it, and wrapped in a
  :class:`RetrievalNet` only when they fit that instead.

What was chosen and how the checkpoint's keys were mapped is said in one line
(:attr:`OpenedModel.note`) and recorded in the run directory (``config.json``: ``source``),
so :func:`capdist.load` rebuilds the same class.

Example:
    >>> opened = open_model("tiny_resnet", num_classes=10, args={"width": 8})
    >>> type(opened.model).__name__, opened.source["kind"]
    ('RetrievalNet', 'torchvision')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..errors import CheckpointError
from ..models import RetrievalNet, build_model
from ..models.view import RetrievalView, parse_output_selector, unwrapped
from .run_dir import load_retrieval, read_config
from .weights import KeyFit, load_weights

HEAD_KEYS = ("neck.", "classifier.", "projection.")
DROPPED_CLASSIFIERS = ("fc.", "classifier.", "head.", "heads.classifier.", "heads.weight", "last_linear.")


@dataclass
class OpenedModel:
    """A model ready for capdist and how it was made.

    Attributes:
        model: a :class:`RetrievalNet` or a :class:`RetrievalView` around the user's module, eval mode.
        source: JSON description (``kind``, ``spec``, ``args``, ``embedding_output``, ``wrapped``).
        note: one line: which class is used and how the checkpoint's keys were mapped.
    """

    model: nn.Module
    source: dict
    note: str


def _fit_note(fit: KeyFit | None, weights: str | None) -> str:
    if fit is None:
        return "random init (no --weights)"
    left = []
    if fit.missing:
        left.append(f"{len(fit.missing)} model tensors left as initialised ({', '.join(fit.missing[:3])})")
    if fit.unexpected:
        left.append(f"{len(fit.unexpected)} checkpoint tensors dropped ({', '.join(fit.unexpected[:3])})")
    return f"{len(fit.state)} tensors from {weights}, {fit.mapping()}" + (f"; {'; '.join(left)}" if left else "")


def _retrieval_net(spec: str, num_classes: int, args: dict, weights: str | None,
                   allow_partial: bool) -> tuple[RetrievalNet, KeyFit | None]:
    net = RetrievalNet(spec, num_classes, backbone_kwargs=args)
    if not weights:
        return net, None
    fit = load_weights(net, weights, allow_partial=allow_partial, allow_missing=HEAD_KEYS,
                       allow_unexpected=DROPPED_CLASSIFIERS)
    return net, fit


def open_model(spec: str, weights: str | None = None, args: dict | None = None, num_classes: int = 1000,
               embedding_output: str | int | None = None, allow_partial: bool = False) -> OpenedModel:
    """Build (and load) the model ``spec`` names.

    Args:
        spec: run directory, torchvision / tiny name, ``package.module:factory``, ``timm:NAME``,
            ``torchreid:NAME`` or ``fastreid:CONFIG.yml``.
        weights: checkpoint (safetensors or weights-only torch file, any usual container).
        args: keyword arguments of the constructor.
        num_classes: identities of the training data (the head of a :class:`RetrievalNet`).
        embedding_output: dict key or tuple index of the embedding in a user module's output.
        allow_partial: load what fits and leave the rest as initialised.

    Raises:
        CheckpointError: the weights fit neither the module nor a RetrievalNet around it.
        UnsupportedModel: the model cannot be built.
    """
    args = dict(args or {})
    selector = parse_output_selector(embedding_output)
    if Path(spec).is_dir():
        model = load_retrieval(spec)
        return OpenedModel(model, read_config(spec).get("source") or {"kind": "run", "spec": str(spec)},
                           f"{spec}: capdist run directory ({type(unwrapped(model)).__name__})")
    if spec.startswith(("torchreid:", "fastreid:")):  # the identities of its classifier
        args = {"num_classes": num_classes, **args}
    if spec.startswith("torchreid:"):  # built with loss='triplet': (logits, features) in training
        selector = 1 if selector is None else selector
    user_kind = "timm" if spec.startswith("timm:") else ("factory" if ":" in spec else None)
    source = {"kind": user_kind or "torchvision", "spec": spec, "args": args, "embedding_output": selector,
              "wrapped": user_kind is None}
    if user_kind is None:
        net, fit = _retrieval_net(spec, num_classes, args, weights, allow_partial)
        return OpenedModel(net.eval(), source, f"{spec} in RetrievalNet (embedding head added): "
                                               f"{_fit_note(fit, weights)}")
    module = build_model(spec, **args)
    if not weights:
        view = RetrievalView(module, selector, source)
        return OpenedModel(view.eval(), source, f"{spec} used as is ({type(module).__name__}): random init")
    try:
        fit = load_weights(module, weights, allow_partial=allow_partial)
    except CheckpointError as as_is:
        try:
            net, fit = _retrieval_net(spec, num_classes, args, weights, allow_partial=False)
        except CheckpointError:
            raise as_is from None
        source["wrapped"] = True
        return OpenedModel(net.eval(), source, f"{spec} in RetrievalNet (the weights fit that, not "
                                               f"{type(module).__name__} alone): {_fit_note(fit, weights)}")
    view = RetrievalView(module, selector, source)
    return OpenedModel(view.eval(), source, f"{spec} used as is ({type(module).__name__}): {_fit_note(fit, weights)}")
