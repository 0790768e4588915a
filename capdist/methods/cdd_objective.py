"""CDD's training objective as one module (Xie et al., CVPR 2023, arXiv 2303.09230): the retrieval
task terms (CE + batch-hard triplet + KD on logits, or their user-model counterparts), the per-block
feature loss (or the stage variant), any extra distillation terms, and the pooled per-group features
a retrieval-guided mask schedule reads after each step.

Every feature is captured as a pooled copy inside its hook, at the BatchNorm output before the
block's in-place ReLU, on both sides.

Example:
    >>> # objective = CDDObjective(student, Teacher(teacher), cm, example, 10, DistillConfig())
    >>> # terms = objective(student, images, pids, step); terms["loss"].backward()
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..compactor import CompactorModel, PooledFeatures
from ..distill import DistillObjective, FeatureCapture, Teacher, parse_spec
from ..distill.features import block_feature_loss, pooled_feature_loss
from ..models.view import unwrapped
from .settings import DistillConfig
from .task_loss import TeacherHead, task_loss_for

log = logging.getLogger("capdist")


def block_layers(cm: CompactorModel) -> list[str]:
    """One anchor per compacted block, as CDD distils each bottleneck once: among the groups not tied
    by a residual add, the last of each innermost parent module (a bottleneck's conv2 + BN, a basic
    block's conv1 + BN); a stem whose module also holds the blocks is left out."""
    order = {name: i for i, (name, _) in enumerate(cm.model.named_modules())}
    internal = sorted((g.spec.anchors[0] for g in cm.groups if not g.spec.residual), key=lambda a: order.get(a, 0))
    parents = {a: a.rpartition(".")[0] for a in internal}
    blocks: dict[str, str] = {}
    for anchor in internal:
        parent = parents[anchor]
        inner_prefix = parent + "." if parent else ""
        if any(q != parent and q.startswith(inner_prefix) for q in parents.values()):
            continue
        blocks[parent] = anchor
    return list(blocks.values())


def stage_names(model: nn.Module, x: torch.Tensor, limit: int = 4) -> list[str]:
    """The last ``limit`` backbone stages with 4-D outputs (the stage variant of the feature loss)."""
    backbone = model.backbone if hasattr(model, "backbone") else model
    prefix = "backbone." if hasattr(model, "backbone") else ""
    root, root_name = backbone, ""
    if isinstance(getattr(backbone, "features", None), nn.Sequential):
        root, root_name = backbone.features, "features."
    shapes: dict[str, int] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=name: shapes.__setitem__(n, o.dim()))
             for name, m in root.named_children() if isinstance(m, nn.Sequential)]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(x)
    model.train(was)
    for h in hooks:
        h.remove()
    names = [prefix + root_name + n for n, d in shapes.items() if d == 4]
    return names[-limit:]


class CDDObjective(nn.Module):
    """The loss of one CDD step, term by term, and the features the mask schedule reads.

    Args:
        student: the heavy student with compactors attached (``cm``).
        teacher: the frozen teacher (:class:`capdist.distill.Teacher`).
        cm: the compacted student.
        example: one batch, to size heads and adapters.
        num_classes: identities in the training data.
        config: which teacher signals, with their weights.
        seed: seeds the temporary classifier of a user's model.
        same_architecture: the student is a copy of the teacher (the block loss needs the same blocks).
    """

    def __init__(self, student: nn.Module, teacher: Teacher, cm: CompactorModel, example: torch.Tensor,
                 num_classes: int, config: DistillConfig, seed: int = 0, same_architecture: bool = True) -> None:
        super().__init__()
        self.config = config
        self._teacher = [teacher]
        prefix = "model." if unwrapped(student) is not student else ""
        self.blocks = [prefix + a for a in block_layers(cm)] if config.feature_loss == "block" and \
            same_architecture else []
        self.stages = [] if self.blocks else stage_names(student, example)
        self.feature_loss = "block" if self.blocks else "stage"
        if config.feature_loss == "block" and not same_architecture:
            log.warning("the student is another architecture than the teacher: CDD's block loss needs the same "
                        "blocks on both sides, so the pooled outputs of the four stages are compared instead "
                        "(feature_loss 'stage' in the report)")
        self.group_layers: dict[str, str] = {}
        self._stages_s = FeatureCapture(student, self.stages, pool=True)
        self._features_t = FeatureCapture(teacher, self.stages + self.blocks, pool=True)
        self._blocks_s = FeatureCapture(student, [b + ".compactor" for b in self.blocks], inputs=True, pool=True)
        self._groups: tuple[FeatureCapture, FeatureCapture] | None = None
        self.extras = DistillObjective(parse_spec(config.extra), student, teacher, example) if config.extra else None
        self.kept_head = TeacherHead(student) if config.gallery == "teacher" else None
        self.task = task_loss_for(student, teacher.model, example, num_classes, kd=config.kd,
                                  kd_temperature=config.kd_temperature, seed=seed, gallery=config.gallery,
                                  contrastive_weight=config.cross_nce,
                                  contrastive_same_label=config.cross_nce_same_label)

    def capture_groups(self, student: nn.Module, teacher: Teacher, cm: CompactorModel) -> None:
        """Also capture every compacted group's pooled feature, student and teacher (what a
        retrieval-guided schedule reads through :meth:`pooled_features`)."""
        prefix = "model." if unwrapped(student) is not student else ""
        self.group_layers = {g.name: prefix + g.spec.anchors[0] for g in cm.groups}
        names = list(self.group_layers.values())
        self._groups = FeatureCapture(student, names, pool=True), FeatureCapture(teacher, names, pool=True)

    def forward(self, net: nn.Module, images: torch.Tensor, pids: torch.Tensor, step: int) -> dict:
        """The step's loss and its terms (the :class:`capdist.engine.Trainer` objective)."""
        s_out, t_out = net(images), self._teacher[0](images)
        terms = self.task(s_out, t_out, pids)
        terms[f"cdd_{self.feature_loss}"] = self.config.feature_weight * self.feature_term()
        if self.extras is not None:
            terms.update(self.extras(s_out, t_out, pids))
        return {"loss": sum(terms.values()), **terms}

    def feature_term(self) -> torch.Tensor:
        """The unweighted feature loss of the last forward pass."""
        s, t = (self._blocks_s.features, self._features_t.features)
        if self.blocks:
            return block_feature_loss([s[b + ".compactor"] for b in self.blocks], [t[b] for b in self.blocks])
        s = self._stages_s.features
        return pooled_feature_loss([s[n] for n in self.stages], [t[n] for n in self.stages])

    def pooled_features(self) -> PooledFeatures:
        """The last forward pass's pooled features per compacted group, student and teacher."""
        s, t = (c.features for c in self._groups)
        return PooledFeatures({g: s[n].detach() for g, n in self.group_layers.items()},
                              {g: t[n].detach() for g, n in self.group_layers.items()})

    def weights(self) -> dict[str, float]:
        """Every term with its weight, as the report lists them."""
        weights = {**self.task.weights(), f"cdd_{self.feature_loss}": self.config.feature_weight}
        if self.extras is not None:
            weights.update({t.name: t.weight for t in self.extras.terms})
        return weights

    def remove(self) -> None:
        """Remove the forward hooks."""
        for capture in (self._stages_s, self._features_t, self._blocks_s, *(self._groups or ())):
            capture.remove()

    @property
    def feature_layers(self) -> list[str]:
        """The layers the feature loss compares."""
        return self.blocks or self.stages
