"""The retrieval task terms of compression and fine-tuning, for capdist's own models and for a
user's model without a classifier (CDD, CVPR 2023: CE + batch-hard triplet + KD on logits).

A :class:`RetrievalNet` has an ID classifier: CE with label smoothing on its logits,
batch-hard triplet on the pooled feature, KD on the teacher's logits. A user's module
usually ends in an embedding and nothing else; retrieval then needs batch-hard triplet on
the embedding and the regression of the teacher's embedding (the feature terms are added by
the caller). When labels exist, a *temporary* classifier on the embedding adds CE; it is
trained alongside and dropped from the result. KD on logits needs the teacher's logits, so it
runs only when the teacher has its own classifier.

Example:
    >>> import torch
    >>> task = RetrievalTaskLoss(student_logits=False, teacher_logits=False, embed_dim=8, num_classes=3)
    >>> sorted(task.weights())
    ['ce', 'emb_mse', 'triplet']
"""

from __future__ import annotations

import torch
from torch import nn

from ..distill.embeddings import cross_contrastive_loss, embedding_mse_loss
from ..distill.logits import kd_loss
from ..models.losses import batch_hard_triplet, smoothed_cross_entropy

GALLERY_FEATURE_WEIGHT = 1.0
CROSS_NCE_WEIGHT = 4.0


class RetrievalTaskLoss(nn.Module):
    """CE + triplet (+ KD), or triplet + embedding regression (+ CE through a temporary classifier).

    Args:
        student_logits: the student has its own ID classifier (``logits`` in its output).
        teacher_logits: the teacher has one (KD on logits possible).
        embed_dim: width of the student's embedding (for the temporary classifier).
        num_classes: identities in the training data (0: no temporary classifier).
        kd: use KD on logits when both sides have them.
        kd_temperature: its temperature.
        embedding_weight: weight of the teacher-embedding regression (user models).
        temporary_classifier: train a classifier on the embedding when the student has none.
        feature_weight: weight of ``deployed_emb_mse``: the student's pooled feature passed through
            the frozen BNNeck *as deployed* (eval mode, the teacher's running statistics) regressed
            onto the teacher's embedding, the term that keeps a student compatible with the
            teacher's gallery (0: off).
        eval_neck: that frozen BNNeck (needed for the term).
        contrastive_weight: weight of ``cross_nce``, InfoNCE against the teacher's batch embeddings
            (inspired by Budnik & Avrithis, CVPR 2021; the CDD paper has no such term): each student
            embedding, as a query among the teacher's embeddings of the batch, must retrieve its own
            image's (0: off). Under DDP the batch is this rank's slice, so the gallery searched holds
            batch / world-size images.
        contrastive_same_label: the other images of the query's identity in ``cross_nce``:
            ``"negative"``, ``"excluded"`` or ``"positive"``.
    """

    def __init__(self, student_logits: bool, teacher_logits: bool, embed_dim: int = 0, num_classes: int = 0,
                 kd: bool = True, kd_temperature: float = 2.0, embedding_weight: float = 1.0,
                 temporary_classifier: bool = True, feature_weight: float = 0.0,
                 eval_neck: nn.Module | None = None, contrastive_weight: float = 0.0,
                 contrastive_same_label: str = "negative") -> None:
        super().__init__()
        self.contrastive_weight = contrastive_weight
        self.contrastive_same_label = contrastive_same_label
        self.feature_weight = feature_weight if student_logits and eval_neck is not None else 0.0
        self.eval_neck = [eval_neck] if eval_neck is not None else None
        self.student_logits = student_logits
        self.kd = kd and student_logits and teacher_logits
        self.kd_temperature = kd_temperature
        self.embedding_weight = 0.0 if student_logits else embedding_weight
        use_head = not student_logits and temporary_classifier and num_classes > 1 and embed_dim > 0
        self.head = nn.Linear(embed_dim, num_classes, bias=False) if use_head else None

    def weights(self) -> dict[str, float]:
        """The terms this loss adds, with their weights (the report lists them)."""
        w = {"triplet": 1.0}
        if self.student_logits or self.head is not None:
            w["ce"] = 1.0
        if self.kd:
            w["kd"] = 1.0
        if self.embedding_weight:
            w["emb_mse"] = self.embedding_weight
        if self.feature_weight:
            w["deployed_emb_mse"] = self.feature_weight
        if self.contrastive_weight:
            w["cross_nce"] = self.contrastive_weight
        return w

    def forward(self, s_out: dict, t_out: dict, pids: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.student_logits:
            terms = {"ce": smoothed_cross_entropy(s_out["logits"], pids),
                     "triplet": batch_hard_triplet(s_out["feature"], pids)}
            if self.kd:
                terms["kd"] = kd_loss(s_out["logits"], t_out["logits"], self.kd_temperature)
            if self.feature_weight and t_out["embedding"].shape == s_out["embedding"].shape:
                terms["deployed_emb_mse"] = self.feature_weight * embedding_mse_loss(
                    deployed_embedding(self.eval_neck, s_out["feature"]), t_out["embedding"])
            return self._contrastive(terms, s_out["embedding"], t_out["embedding"], pids)
        emb = s_out["embedding"]
        terms = {"triplet": batch_hard_triplet(emb, pids)}
        if self.head is not None:
            terms["ce"] = smoothed_cross_entropy(self.head(emb), pids)
        if self.embedding_weight and t_out["embedding"].shape == emb.shape:
            terms["emb_mse"] = self.embedding_weight * embedding_mse_loss(emb, t_out["embedding"])
        return self._contrastive(terms, emb, t_out["embedding"], pids)

    def _contrastive(self, terms: dict[str, torch.Tensor], e_s: torch.Tensor, e_t: torch.Tensor,
                     pids: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.contrastive_weight and e_s.shape == e_t.shape:
            same = self.contrastive_same_label
            terms["cross_nce"] = self.contrastive_weight * cross_contrastive_loss(
                e_s, e_t, labels=None if same == "negative" else pids,
                positives="label" if same == "positive" else "self")
        return terms


def deployed_embedding(neck: list[nn.Module] | nn.Module, feature: torch.Tensor) -> torch.Tensor:
    """``feature`` through a BatchNorm neck as it runs when deployed: eval mode, its running
    statistics (whatever mode the model trains in)."""
    neck = neck[0] if isinstance(neck, list) else neck
    return torch.nn.functional.batch_norm(feature, neck.running_mean, neck.running_var, neck.weight, neck.bias,
                                          training=False, eps=neck.eps)


def cross_nce_weight(gallery: str, requested: float | None) -> float:
    """The weight of ``cross_nce`` in effect: the one requested, else :data:`CROSS_NCE_WEIGHT` for the
    teacher's gallery and off for the model's own."""
    if requested is not None:
        return requested
    return CROSS_NCE_WEIGHT if gallery == "teacher" else 0.0


def nce_suffix(distill) -> str:
    """``+cross_nce`` in a method's name when that term is on (it is not part of the CDD paper);
    ``distill`` is a :class:`~capdist.methods.settings.DistillConfig`."""
    return "+cross_nce" if cross_nce_weight(distill.gallery, distill.cross_nce) else ""


def task_loss_for(student: nn.Module, teacher: nn.Module, example: torch.Tensor, num_classes: int,
                  kd: bool = True, kd_temperature: float = 2.0, seed: int = 0,
                  gallery: str = "own", feature_weight: float = GALLERY_FEATURE_WEIGHT,
                  contrastive_weight: float | None = None, contrastive_same_label: str = "negative"
                  ) -> RetrievalTaskLoss:
    """The task loss that fits ``student`` and ``teacher`` (classifier or not), its head seeded.

    ``gallery="teacher"`` adds the regression of the teacher's embedding by the student's feature
    through the frozen BNNeck as deployed and the cross-model contrastive term (the teacher's
    embeddings of the batch as the gallery the student's must retrieve from); pair it with
    :class:`TeacherHead` (a user's model regresses the teacher's embedding either way).
    ``contrastive_weight`` is that term's weight (None: :data:`CROSS_NCE_WEIGHT` for the teacher's
    gallery, off otherwise).
    """
    contrastive_weight = cross_nce_weight(gallery, contrastive_weight)
    from ..models.view import has_logits, unwrapped

    width = 0
    if not has_logits(student):
        was = student.training
        with torch.no_grad():
            width = int(student.eval()(example[:2])["embedding"].shape[1])
        student.train(was)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RetrievalTaskLoss(has_logits(student), has_logits(teacher), width, num_classes, kd=kd,
                                 kd_temperature=kd_temperature,
                                 feature_weight=feature_weight if gallery == "teacher" else 0.0,
                                 contrastive_weight=contrastive_weight,
                                 contrastive_same_label=contrastive_same_label,
                                 eval_neck=getattr(unwrapped(student), "neck", None) if gallery == "teacher" else None)



class TeacherHead:
    """Keeps a RetrievalNet student's ID classifier exactly the teacher's while it trains, so its
    embedding is pulled into the space of the teacher's deployed gallery (backward-compatible
    training, Shen et al., CVPR 2020: the old classifier as the new model's head).

    The BNNeck keeps training and re-estimating its statistics: freezing the teacher's statistics
    was measured to make compatibility worse (``docs/benchmarks/gallery-fmnist-open25``).
    :meth:`release` makes the classifier trainable again when training ends.
    """

    def __init__(self, student: nn.Module) -> None:
        from ..models.view import unwrapped

        classifier = getattr(unwrapped(student), "classifier", None)
        self.frozen = [name for name, p in classifier.named_parameters() if p.requires_grad] if classifier else []
        for name in self.frozen:
            classifier.get_parameter(name).requires_grad_(False)
        self.classifier = classifier

    def release(self, model: nn.Module | None = None) -> None:
        """Make the classifier trainable again (on ``model``, e.g. the pruned copy, when given)."""
        from ..models.view import unwrapped

        classifier = getattr(unwrapped(model), "classifier", None) if model is not None else self.classifier
        for name in self.frozen if classifier is not None else ():
            classifier.get_parameter(name).requires_grad_(True)
