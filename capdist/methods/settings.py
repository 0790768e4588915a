"""The settings of a compression run, each declared once with its default, help and choices: the
command-line options, the Python API's keywords, recipes and ``config.yaml`` are all generated from
these dataclasses (see :mod:`capdist.settings`).

Example:
    >>> cfg = CompressConfig.of(target_flops=0.25, schedule="norm")
    >>> cfg.target.flops, cfg.schedule.kind, cfg.train.lr
    (0.25, 'norm', 0.01)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..compactor import ALLOCATIONS, CompactorConfig, ScheduleConfig
from ..engine import TrainConfig
from ..settings import Settings, setting

GALLERIES = ("own", "teacher")
SAME_LABEL = ("negative", "excluded", "positive")


@dataclass(slots=True)
class TargetConfig:
    """What the result must cost."""

    flops: float = setting(0.35, "FLOPs of the result as a fraction of the teacher's.", flag="--target-flops",
                           low=0, high=1, open_low=True)
    latency: float | None = setting(None, "Latency as a fraction of the teacher's on --device at --latency-batch "
                                    "and --latency-input-size (instead of --target-flops); a per-layer latency "
                                    "table is measured first and cached.", flag="--target-latency", low=0, high=1,
                                    open_low=True)
    latency_batch: int = setting(1, "Images per pass for --target-latency.", flag="--latency-batch", low=1)
    latency_table_time: float = setting(0.02, "Seconds of timing behind each latency-table entry.",
                                        flag="--latency-table-time", low=0, open_low=True)
    round_to: int | None = setting(None, "Kept widths are multiples of this (default: 1; under --target-latency 1 "
                                   "or 8, whichever a side-by-side timing of two pruned probes shows to be "
                                   "faster).", flag="--round-to", low=1)
    min_ratio: float = setting(0.2, "Every layer keeps at least this fraction of its channels.", flag="--min-ratio",
                               low=0, high=1)
    allocation: str = setting("global", "How a ranking spreads the reduction over layers: one ranking of every "
                              "channel of every layer (ResRep), or the same fraction of every layer up to --round-to "
                              "and --min-ratio, channels ranked within it (Torch-Pruning's default; latency savings "
                              "then play no part, and retrieval guidance's own masks are not evened out, only its "
                              "top-up).", choices=ALLOCATIONS)


@dataclass(slots=True)
class CompactorSettings:
    """Where compactors go and how they learn."""

    scope: str = setting("all", "Compactors on groups not tied by residual adds (ResRep/CDD), or on every group.",
                         choices=("internal", "all"))
    residual_compactor: str = setting("diagonal", "Compactors of residual streams (scope all): per-channel scales "
                                      "or dense C x C maps as ResRep (with dense maps everywhere a resnet50 step "
                                      "costs about 2.2x a plain one).",
                                      choices=("diagonal", "dense"))
    internal_compactor: str = setting("dense", "Compactors of the other groups: dense C x C maps as ResRep and CDD "
                                      "(a resnet50 step about 1.2x a plain one), or per-channel scales (1.1x; a few "
                                      "tenths of a point lower in every validation cell, docs/benchmarks/val-sweep).",
                                      choices=("dense", "diagonal"))
    penalty: float = setting(4e-3, "Group-lasso strength (CDD: 4e-3).", low=0)
    momentum: float = setting(0.9, "SGD momentum of the compactors (ResRep: 0.99 over long schedules).",
                              flag="--compactor-momentum", low=0, high=1)

    def placement(self, round_to: int = 1, min_ratio: float = 0.2, allocation: str = "global") -> CompactorConfig:
        """What :func:`capdist.compactor.attach` builds for these settings (``compress`` and ``inspect``)."""
        return CompactorConfig(scope=self.scope, penalty=self.penalty, round_to=round_to, min_ratio=min_ratio,
                               diagonal_residual=self.residual_compactor == "diagonal",
                               diagonal_internal=self.internal_compactor == "diagonal", allocation=allocation)


@dataclass(slots=True)
class DistillConfig:
    """The teacher signals and their weights."""

    kd: bool = setting(True, "KD on the teacher's logits when both models have a classifier.")
    kd_temperature: float = setting(2.0, "KD temperature (CDD: 2).", low=0, open_low=True)
    feature_loss: str = setting("block", "CDD's per-block loss before the compactors (authors' code) or pooled "
                                "stage outputs (MSE).", choices=("block", "stage"))
    feature_weight: float = setting(0.5, "Weight of that feature loss (CDD: 0.5).", low=0)
    cross_nce: float | None = setting(None, "Weight of cross_nce, InfoNCE against the teacher's batch embeddings "
                                      "(inspired by asymmetric metric learning; the CDD paper has no such term): "
                                      "each compressed embedding must retrieve its own image's teacher embedding "
                                      "(default: 4 with --gallery teacher, off otherwise; 0: off).", low=0)
    cross_nce_same_label: str = setting("negative", "What cross_nce makes of the other images of a query's identity "
                                        "in the batch: negatives (the term as measured in "
                                        "docs/benchmarks/gallery-fmnist-open25), left out, or positives.",
                                        choices=SAME_LABEL)
    extra: str = setting("", "Extra terms, e.g. 'rkd_distance:25,fitnet:2@backbone.layer3'.", flag="--distill",
                         metavar="SPEC")
    gallery: str = setting("own", "'teacher': the compressed model will encode queries against the teacher's "
                           "deployed gallery (the teacher's classifier stays, its embedding is regressed through "
                           "the BNNeck as deployed) and the report shows asymmetric mAP first.", choices=GALLERIES)


def timer_names() -> list[str]:
    """The timing back-ends by name."""
    from ..measure import TIMERS

    return list(TIMERS)


@dataclass(slots=True)
class ReportConfig:
    """How the result is measured."""

    latency_backend: str = setting("eager", "Runtime every latency figure is measured in (the report's side-by-side "
                                   "timings, the latency table and budget): eager, onnxruntime and openvino on the "
                                   "CPU; onnxruntime-cuda and onnxruntime-tensorrt on a CUDA GPU (onnxruntime-gpu).",
                                   choices=timer_names)
    latency_repeats: int = setting(10, "Timed passes behind each latency figure in the report.", low=1)
    latency_input_size: tuple[int, int, int] | None = setting(
        None, "Image size at which the report times every model side by side with the teacher (default: the "
        "training size): HxW (three channels) or CxHxW, e.g. 224x224.", metavar="HxW")
    flip_test: bool = setting(False, "Report retrieval with flip test-time augmentation (each embedding averaged "
                              "with its mirror image's), as torchreid and fast-reid evaluate.")
    rerank: bool = setting(False, "Report retrieval after k-reciprocal re-ranking (Zhong et al., CVPR 2017; "
                           "k1=20, k2=6, lambda=0.3), as torchreid's rerank and fast-reid's TEST.RERANK.")


def _compress_training() -> TrainConfig:
    return TrainConfig(lr=0.01, warmup_epochs=0.5)


@dataclass(slots=True)
class CompressConfig(Settings):
    """Everything ``capdist compress`` does, by section.

    Attributes:
        target: what the result must cost.
        compactors: where compactors go and how they learn.
        schedule: how the masks are chosen and paced.
        distill: the teacher signals.
        train: the optimizer and budget.
        report: how the result is measured.
        finetune_epochs: epochs of plain fine-tuning after surgery.
    """

    target: TargetConfig = field(default_factory=TargetConfig)
    compactors: CompactorSettings = field(default_factory=CompactorSettings)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    train: TrainConfig = field(default_factory=_compress_training)
    report: ReportConfig = field(default_factory=ReportConfig)
    finetune_epochs: int = setting(0, "Epochs of plain fine-tuning after surgery.", low=0)
