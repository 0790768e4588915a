"""Distillation signals: a frozen teacher, feature capture, adapters and a registry of losses
(KD, DKD, FitNet, AT, ReviewKD, CDD, RKD, PKT, SP, CC, embedding MSE/cosine, CSD, RAML, ROP, D3still)."""

from .capture import FeatureCapture, UnknownFeature
from .objective import DistillObjective, DistillTerm, UnknownLoss, parse_spec
from .registry import REGISTRY, LossInfo, describe
from .teacher import Teacher

__all__ = ["REGISTRY", "DistillObjective", "DistillTerm", "FeatureCapture", "LossInfo", "Teacher",
           "UnknownFeature", "UnknownLoss", "describe", "parse_spec"]
