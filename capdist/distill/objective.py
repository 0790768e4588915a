"""Combined distillation objective from a spec such as ``kd:1,rkd_distance:25,fitnet:2@layer3``
(mdistiller-style registry, torchao-style typed entries).

Example:
    >>> parse_spec("kd:1,fitnet:2@backbone.layer3")[1]
    DistillTerm(name='fitnet', weight=2.0, layers=('backbone.layer3',))
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import CapdistError
from .adapters import LinearProjector, ShapeMismatch, make_adapter
from .capture import FeatureCapture
from .features import ReviewFusion
from .registry import REGISTRY, LossInfo

# losses over several captured layers, each pooled and projected to the teacher's width when they differ
POOLED = ("cdd_pooled", "cdd_block")


class UnknownLoss(CapdistError):
    """A loss name that is not registered, or a spec that cannot be parsed."""


@dataclass(frozen=True)
class DistillTerm:
    """One weighted loss of the objective.

    Attributes:
        name: a key of :data:`REGISTRY`.
        weight: its weight (None: the registry's default).
        layers: module names for feature losses (the same names in student and teacher).
    """

    name: str
    weight: float | None = None
    layers: tuple[str, ...] = ()


def _info(name: str) -> LossInfo:
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, list(REGISTRY), n=2)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownLoss(f"unknown distillation loss '{name}'{hint}; valid: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def _check_layers(term: DistillTerm) -> None:
    """A feature loss names the layers it compares."""
    info = _info(term.name)
    if info.needs == "feature" and len(term.layers) != 1:
        raise UnknownLoss(f"'{term.name}' needs one layer name: {term.name}:{info.weight:g}@LAYER")
    if info.needs == "features" and not term.layers:
        raise UnknownLoss(f"'{term.name}' needs layer names: {term.name}:{info.weight:g}@LAYER1+LAYER2")


def parse_spec(spec: str) -> list[DistillTerm]:
    """Parse ``name[:weight][@layer[+layer...]]`` items separated by commas."""
    terms = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        head, _, layers = item.partition("@")
        name, _, weight = head.partition(":")
        _info(name)
        try:
            w = float(weight) if weight else None
        except ValueError:
            raise UnknownLoss(f"weight '{weight}' of '{item}' is not a number") from None
        terms.append(DistillTerm(name, w, tuple(filter(None, layers.split("+")))))
        _check_layers(terms[-1])
    return terms


def _as_dict(out) -> dict[str, torch.Tensor]:
    if isinstance(out, dict):
        return out
    return {"logits": out, "embedding": out}


class DistillObjective(nn.Module):
    """The weighted sum of distillation terms, returned term by term for logging.

    Args:
        terms: what to distil (see :func:`parse_spec`).
        student: the student network (features are captured from it by name).
        teacher: the teacher (wrapped or not).
        example_inputs: one batch, used once to size the adapters.
    """

    def __init__(self, terms: list[DistillTerm], student: nn.Module, teacher: nn.Module,
                 example_inputs: torch.Tensor) -> None:
        super().__init__()
        self.terms = list(terms)
        for t in self.terms:
            _check_layers(t)
        names = [n for t in self.terms for n in t.layers]
        self.capture_s = FeatureCapture(student, names)
        self.capture_t = FeatureCapture(teacher, names)
        was = student.training
        student.eval()
        with torch.no_grad():
            s_out, t_out = _as_dict(student(example_inputs)), _as_dict(teacher(example_inputs))
        student.train(was)
        fs, ft = self.capture_s.features, self.capture_t.features
        self.adapters = nn.ModuleDict()
        for i, t in enumerate(self.terms):
            info = REGISTRY[t.name]
            key = f"{i}_{t.name}"
            if info.needs == "feature" and t.name == "fitnet":
                self.adapters[key] = make_adapter(fs[t.layers[0]], ft[t.layers[0]])
            elif t.name == "reviewkd":
                self.adapters[key] = ReviewFusion([fs[n].shape[1] for n in t.layers],
                                                  [ft[n].shape[1] for n in t.layers])
            elif t.name in POOLED:
                self.adapters[key] = nn.ModuleList(
                    LinearProjector(fs[n].shape[1], ft[n].shape[1]) if fs[n].shape[1] != ft[n].shape[1]
                    else nn.Identity() for n in t.layers)
            elif info.needs.startswith("logits"):
                if s_out["logits"].shape != t_out["logits"].shape:
                    raise ShapeMismatch(f"'{t.name}' needs logits of the same shape (student "
                                        f"{tuple(s_out['logits'].shape)}, teacher {tuple(t_out['logits'].shape)})")
            elif info.needs == "embedding":
                a, b = self._pick(t, s_out, fs), self._pick(t, t_out, ft)
                a, b = a.flatten(1), b.flatten(1)
                if a.shape[1] != b.shape[1] and info.family == "embeddings":
                    self.adapters[key] = LinearProjector(a.shape[1], b.shape[1])

    @staticmethod
    def _pick(term: DistillTerm, out: dict, feats: dict) -> torch.Tensor:
        if term.layers:
            f = feats[term.layers[0]]
            return f.mean((2, 3)) if f.dim() == 4 else f
        return out["embedding"]

    def forward(self, student_out, teacher_out, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Weighted terms by name (``kd``, ``fitnet@backbone.layer3``, ...)."""
        s_out, t_out = _as_dict(student_out), _as_dict(teacher_out)
        fs, ft = self.capture_s.features, self.capture_t.features
        result: dict[str, torch.Tensor] = {}
        for i, t in enumerate(self.terms):
            info = REGISTRY[t.name]
            key = f"{i}_{t.name}"
            weight = info.weight if t.weight is None else t.weight
            if info.needs == "logits":
                value = info.fn(s_out["logits"], t_out["logits"], **info.params)
            elif info.needs == "logits+labels":
                value = info.fn(s_out["logits"], t_out["logits"], labels, **info.params)
            elif info.needs == "feature":
                adapter = self.adapters[key] if key in self.adapters else nn.Identity()
                value = info.fn(adapter(fs[t.layers[0]]), ft[t.layers[0]], **info.params)
            elif t.name == "reviewkd":
                fused = self.adapters[key]([fs[n] for n in t.layers])
                value = info.fn(fused, [ft[n] for n in t.layers])
            elif t.name in POOLED:
                pooled = [adapter(fs[n].mean((2, 3)) if fs[n].dim() == 4 else fs[n])
                          for adapter, n in zip(self.adapters[key], t.layers, strict=True)]
                value = info.fn(pooled, [ft[n] for n in t.layers])
            else:
                a = self._pick(t, s_out, fs).flatten(1)
                if key in self.adapters:
                    a = self.adapters[key](a)
                value = info.fn(a, self._pick(t, t_out, ft).flatten(1), **info.params)
            label = t.name + (f"@{'+'.join(t.layers)}" if t.layers else "")
            result[label] = weight * value
        return result
