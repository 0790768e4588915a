"""The loss registry: one readable table of every distillation loss capdist offers
(mdistiller's convention: a plain dict, pure functions, default weights from the papers).

Default weights follow the papers, and for the retrieval losses the D3still benchmark
(CVPR 2024), which tuned them with CE + triplet alongside, as capdist trains.

Example:
    >>> sorted(REGISTRY)[:3]
    ['at', 'cc', 'cdd_block']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from . import embeddings, features, logits, relations


@dataclass(frozen=True)
class LossInfo:
    """One registered loss.

    Attributes:
        name: the name used in specs (``kd:1``).
        family: ``logits``, ``features``, ``relations`` or ``embeddings``.
        paper: where it comes from.
        needs: ``logits``, ``logits+labels``, ``feature`` (one named layer), ``features``
            (several named layers) or ``embedding`` (the retrieval embedding, or one named layer).
        weight: default weight.
        fn: the pure tensor function.
        params: default keyword arguments of ``fn``.
    """

    name: str
    family: str
    paper: str
    needs: str
    weight: float
    fn: Callable
    params: dict = field(default_factory=dict)


_ENTRIES = [
    LossInfo("kd", "logits", "Hinton et al., 2015", "logits", 1.0, logits.kd_loss, {"temperature": 4.0}),
    LossInfo("dkd", "logits", "Zhao et al., CVPR 2022", "logits+labels", 1.0, logits.dkd_loss,
             {"alpha": 1.0, "beta": 8.0, "temperature": 4.0}),
    LossInfo("fitnet", "features", "Romero et al., ICLR 2015", "feature", 2.0, features.fitnet_loss),
    LossInfo("at", "features", "Zagoruyko & Komodakis, ICLR 2017", "feature", 1000.0, features.at_loss,
             {"p": 2.0}),
    LossInfo("reviewkd", "features", "Chen et al., CVPR 2021", "features", 1.0, features.reviewkd_loss),
    LossInfo("cdd_pooled", "features", "Xie et al., CVPR 2023 (CDD)", "features", 0.5,
             features.pooled_feature_loss),
    LossInfo("cdd_block", "features", "Xie et al., CVPR 2023 (CDD)", "features", 0.5,
             features.block_feature_loss),
    LossInfo("rkd_distance", "relations", "Park et al., CVPR 2019", "embedding", 25.0,
             relations.rkd_distance_loss),
    LossInfo("rkd_angle", "relations", "Park et al., CVPR 2019", "embedding", 50.0, relations.rkd_angle_loss),
    LossInfo("pkt", "relations", "Passalis & Tefas, ECCV 2018", "embedding", 30000.0, relations.pkt_loss),
    LossInfo("sp", "relations", "Tung & Mori, ICCV 2019", "embedding", 3000.0, relations.sp_loss),
    LossInfo("cc", "relations", "Peng et al., ICCV 2019", "embedding", 5.0, relations.cc_loss,
             {"gamma": 0.4, "order": 2}),
    LossInfo("emb_mse", "embeddings", "embedding regression", "embedding", 1.0, embeddings.embedding_mse_loss),
    LossInfo("emb_cosine", "embeddings", "embedding cosine", "embedding", 1.0,
             embeddings.embedding_cosine_loss),
    LossInfo("cross_nce", "embeddings", "Budnik & Avrithis, CVPR 2021", "embedding", 1.0,
             embeddings.cross_contrastive_loss, {"temperature": 0.05}),
    LossInfo("csd", "embeddings", "Wu et al., CVPR 2023", "embedding", 10.0, embeddings.csd_loss,
             {"k": 10, "t_query": 0.1, "t_gallery": 0.1}),
    LossInfo("raml", "embeddings", "Suma & Tolias, WACV 2023", "embedding", 10.0, embeddings.raml_loss,
             {"lam_cross": 0.7482, "lam_self": 0.6778}),
    LossInfo("rop", "embeddings", "Xie et al., ICLR 2023", "embedding", 1.0, embeddings.rop_loss,
             {"k": 10, "temperature": 0.01, "rank_weight": 1.0}),
    LossInfo("d3still", "embeddings", "Xie et al., CVPR 2024", "embedding", 1.0, embeddings.d3still_loss,
             {"k": 10, "alpha": 100.0, "beta": 5.0, "gamma": 1.0}),
]

REGISTRY: dict[str, LossInfo] = {e.name: e for e in _ENTRIES}


def describe() -> list[dict]:
    """The registry as rows for ``capdist losses`` and the README."""
    return [{"name": e.name, "family": e.family, "paper": e.paper, "needs": e.needs, "weight": e.weight,
             "params": e.params} for e in _ENTRIES]
