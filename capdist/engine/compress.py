"""Capacity Dynamic Distillation end to end (CDD, CVPR 2023, arXiv 2303.09230).

A heavy student (a copy of the teacher by default) gets compactors; it is trained
with CE + batch-hard triplet + KD on logits + CDD's per-block pooled-feature loss
(+ any extra distillation terms) while gradient resetting lets the channels the
mask schedule picks die; surgery then removes them. The result is evaluated
against the teacher, symmetric and asymmetric, and written as a run directory
that ``capdist.load`` rebuilds without pickle.

Example:
    >>> cfg = CompressConfig(target_flops=0.35)
    >>> report = compress("resnet18", "runs/teacher/model.safetensors", "fmnist", cfg, "runs/c")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..compactor import CompactorConfig, NormSchedule, RetrievalSchedule, attach, surgery
from ..data import IdentityBatchSampler, RetrievalData, open_dataset
from ..distill import DistillObjective, FeatureCapture, Teacher, parse_spec
from ..distill.features import block_feature_loss, pooled_feature_loss
from ..errors import UnreachableTarget
from ..io.atomic import check_out_dir, prepare_out_dir, removed_on_failure
from ..io.export import EmbeddingOnly
from ..io.sources import open_model
from ..measure.latency_budget import LatencyBudget
from ..measure.report import plot_mask_history
from ..models.view import inner, like
from .distributed import DistContext, init_distributed
from .latency_target import BudgetState, latency_budget_for
from .outputs import model_rows, save_result
from .task_loss import CROSS_NCE_WEIGHT, TeacherHead, task_loss_for
from .trainer import TrainConfig, Trainer

log = logging.getLogger("capdist")


@dataclass
class CompressConfig:
    """What ``capdist compress`` does.

    Attributes:
        target_flops: FLOPs of the result as a fraction of the teacher's.
        target_latency: latency of the result as a fraction of the teacher's on the run's device, at
            ``latency_batch`` and ``latency_input_size`` (replaces the FLOPs target; a per-layer
            latency table is measured, cached and calibrated first, see
            :mod:`capdist.measure.latency_budget`).
        latency_batch: images per pass for the latency target.
        latency_table_time: seconds of timing behind each latency-table entry.
        schedule: ``"retrieval"`` (CDD's RGGR, capped at the target) or ``"norm"`` (ResRep).
        scope: ``"internal"`` or ``"all"`` compactor placement.
        residual_compactor: ``"diagonal"`` (a per-channel scale per producer of a residual stream:
            a resnet50 step costs 1.22x a plain one instead of 2.06x, ``docs/benchmarks/compactor-core.md``,
            with mAP no lower in the seed-averaged study, ``docs/benchmarks/seeds-fmnist/``) or
            ``"dense"`` (ResRep's C x C compactor there too).
        mask_warmup: epochs before masks start.
        mask_until: fraction of training by which the norm schedule reaches the target.
        penalty: group-lasso strength (CDD: 4e-3).
        compactor_momentum: SGD momentum of the compactors (ResRep: 0.99 over long schedules;
            0.9 lets masked rows settle at zero within the short runs users make).
        round_to: kept widths are multiples of this (None: 1 under a FLOPs target; under a latency
            target 1 or 8, whichever a side-by-side timing of two pruned probes shows to be faster).
        min_ratio: every group keeps at least this fraction of its channels (0 gives CDD's purely
            global ranking, which empties deep layers at aggressive targets).
        kd_temperature: KD temperature (CDD: 2).
        feature_loss: ``"block"`` (CDD's own: per compacted block, the unsquared L2 distance of the
            pooled features before the compactor, batch mean, summed over blocks) or ``"stage"``
            (mean over the last four stages of the MSE of pooled stage outputs).
        pooled_weight: weight of that feature loss (CDD: 0.5).
        cross_nce: weight of the cross-model contrastive term (Budnik & Avrithis, CVPR 2021): each
            student embedding, among the teacher's embeddings of the batch, must retrieve its own
            image's (0: off; ``docs/benchmarks/seeds-fmnist`` measures it).
        distill: extra terms, e.g. ``"rkd_distance:25,fitnet:2@backbone.layer3"``.
        neighbours: the retrieval schedule's neighbour search: ``"student"`` (the student feature
            ranks a bank without the batch) or ``"teacher"`` (the authors' code: the teacher feature
            ranks a bank that holds the batch, so the sample finds itself first).
        k: neighbours per sample (None: 5 for ``"student"``, 2 for ``"teacher"`` as the authors use).
        ratio, bank_size: retrieval schedule low fraction and bank length.
        gallery: ``"own"`` (the compressed model re-encodes its gallery) or ``"teacher"`` (it encodes
            queries against the teacher's deployed gallery: the teacher's classifier is kept and the
            teacher's embedding regressed through the BNNeck as deployed).
        finetune_epochs: epochs of plain fine-tuning after surgery.
        latency_repeats: timed passes behind each latency figure in the report.
        latency_input_size: C, H, W at which the report times the models (default: the training size).
        train: optimizer, epochs, batch.
    """

    target_flops: float = 0.35
    target_latency: float | None = None
    latency_batch: int = 1
    latency_table_time: float = 0.02
    schedule: str = "retrieval"
    scope: str = "internal"
    residual_compactor: str = "diagonal"
    mask_warmup: float = 1.0
    mask_until: float = 0.6
    penalty: float = 4e-3
    compactor_momentum: float = 0.9
    round_to: int | None = None
    min_ratio: float = 0.2
    kd_temperature: float = 2.0
    feature_loss: str = "block"
    pooled_weight: float = 0.5
    cross_nce: float = CROSS_NCE_WEIGHT
    distill: str = ""
    neighbours: str = "student"
    k: int | None = None
    gallery: str = "own"
    ratio: float = 0.5
    bank_size: int = 1024
    finetune_epochs: int = 0
    latency_repeats: int = 10
    latency_input_size: tuple[int, int, int] | None = None
    train: TrainConfig = field(default_factory=TrainConfig)


def load_teacher(teacher: str | nn.Module, weights: str | None, num_classes: int, args: dict | None = None,
                 embedding_output: str | int | None = None, allow_partial: bool = False) -> nn.Module:
    """A trained teacher: a module already in hand, a run directory, or a model source plus weights
    (see :func:`capdist.io.sources.open_model`); says in one log line what was built and how."""
    if isinstance(teacher, nn.Module):
        return teacher.eval()
    if weights and not Path(teacher).is_dir() and (Path(weights).parent / "config.json").is_file() \
            and ":" not in teacher:
        from ..io.run_dir import read_config

        config = read_config(Path(weights).parent)
        if isinstance(config.get("model"), dict) and config["model"].get("backbone") == teacher:
            teacher = str(Path(weights).parent)
    opened = open_model(teacher, weights, args, num_classes, embedding_output, allow_partial)
    log.info("teacher: %s", opened.note)
    return opened.model.eval()


def block_layers(cm) -> list[str]:
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
    """The last ``limit`` backbone stages with 4-D outputs (CDD distils one pooled feature per block)."""
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


def masked_penalty_for(trainer: Trainer, deadline: int, config: CompressConfig, reach: float = 1.5) -> float:
    """Lasso on masked rows large enough that a row of norm ``reach`` masked at ``deadline`` reaches
    zero by the end (never below ``penalty``): with SGD momentum m a constant gradient g moves a row by
    about lr * g / (1 - m) per step. Rows that get there early are pinned at zero
    (:meth:`CompactorModel.settle_masked`), so erring on the large side costs nothing."""
    travel = sum(trainer.lr_factor(t) for t in range(deadline, trainer.total_steps)) * config.train.lr
    travel /= 1.0 - config.compactor_momentum
    return max(config.penalty, reach / max(travel, 1e-12))


def resolve_data(data: str | RetrievalData, train_subset: int | None = None, test_subset: int | None = None,
                 seed: int = 0) -> RetrievalData:
    """A dataset spec or a :class:`RetrievalData` already in hand, with the requested subsets."""
    opened = data if isinstance(data, RetrievalData) else open_dataset(data)
    return opened.train_subset(train_subset, seed=seed).test_subset(test_subset)


def compress(teacher_name: str | nn.Module, weights: str | None, data_spec: str | RetrievalData,
             config: CompressConfig, out: str | Path, student_name: str | None = None,
             student_weights: str | None = None, train_subset: int | None = None, resume: bool = False,
             overwrite: bool = False, device: str = "cpu", test_subset: int | None = None,
             model_args: dict | None = None, embedding_output: str | int | None = None,
             allow_partial: bool = False, recipe: dict | None = None) -> dict:
    """Run CDD and write the compressed model and its report into ``out``.

    ``teacher_name`` is anything :func:`load_teacher` takes: an ``nn.Module``, a run directory,
    a torchvision name, ``package.module:factory`` (arguments in ``model_args``) or ``timm:NAME``.
    """
    start = time.time()
    ctx = init_distributed(device)
    out = check_out_dir(out, overwrite=overwrite, resume=resume)
    data = resolve_data(data_spec, train_subset, test_subset, config.train.seed)
    teacher = load_teacher(teacher_name, weights, data.num_classes, model_args, embedding_output,
                           allow_partial).to(ctx.device)
    if student_name:
        student = load_teacher(student_name, student_weights, data.num_classes, model_args, embedding_output,
                               allow_partial).to(ctx.device)
    else:
        student = copy.deepcopy(teacher)
    tcfg = config.train
    steps_per_epoch = len(IdentityBatchSampler(data.train.pids, tcfg.batch_size, tcfg.seed, tcfg.instances))
    total = steps_per_epoch * tcfg.epochs
    warmup = int(config.mask_warmup * steps_per_epoch)
    if warmup >= total:
        raise UnreachableTarget(f"the mask warm-up ({warmup} steps) is not shorter than training ({total} steps): "
                                "the masks would never be trained; lower --mask-warmup or raise --epochs")
    with removed_on_failure(out):
        if ctx.is_main:
            prepare_out_dir(out, overwrite=overwrite, resume=resume,
                            recipe=("compress", recipe) if recipe else None)
        ctx.barrier()
        example = torch.stack([data.train[i][0] for i in range(2)]).to(ctx.device)
        cm = attach(inner(student).train(), example, CompactorConfig(
            scope=config.scope, penalty=config.penalty, round_to=config.round_to or 1, min_ratio=config.min_ratio,
            diagonal_residual=config.residual_compactor == "diagonal"))
        student.train()
        frozen = Teacher(teacher)
        prefix = "model." if inner(student) is not student else ""
        blocks = [prefix + a for a in block_layers(cm)] if config.feature_loss == "block" and not student_name else []
        stages = [] if blocks else stage_names(student, example)
        feature_loss = "block" if blocks else "stage"
        if config.feature_loss == "block" and student_name:
            log.warning("--student %s is another architecture than the teacher: CDD's block loss needs the same "
                        "blocks on both sides, so the pooled outputs of the four stages are compared instead "
                        "(feature_loss 'stage' in the report)", student_name)
        group_layers = {g.name: prefix + g.spec.anchors[0] for g in cm.groups} if config.schedule == "retrieval" else {}
        cap_s = FeatureCapture(student, stages + list(group_layers.values()), pool=True)
        cap_t = FeatureCapture(frozen, stages + blocks + list(group_layers.values()), pool=True)
        cap_pre = FeatureCapture(student, [b + ".compactor" for b in blocks], inputs=True, pool=True)
        extras = DistillObjective(parse_spec(config.distill), student, frozen, example) if config.distill else None
        kept_head = TeacherHead(student) if config.gallery == "teacher" else None
        task = task_loss_for(student, teacher, example, data.num_classes, kd_temperature=config.kd_temperature,
                             seed=config.train.seed, gallery=config.gallery,
                             contrastive_weight=config.cross_nce).to(ctx.device)

        interval = max(1, steps_per_epoch // 10)
        deadline = max(int(config.mask_until * total), warmup)
        if deadline > int(config.mask_until * total):
            log.warning("the masks start after %d steps of warm-up but were to reach the target by step %d; they "
                        "reach it at the first update after the warm-up instead", warmup,
                        int(config.mask_until * total))
        budget = None if config.target_latency is None else latency_budget_for(
            cm, EmbeddingOnly(teacher), example, tuple(config.latency_input_size or data.image_shape),
            config.latency_batch, config.latency_table_time, config.round_to is None, out, ctx, resume)
        target = config.target_flops if budget is None else config.target_latency
        if config.schedule == "norm":
            schedule = NormSchedule(cm, target, warmup=warmup, interval=interval, granularity=1,
                                    until=deadline, budget=budget)
        elif config.schedule == "retrieval":
            k = config.k or (2 if config.neighbours == "teacher" else 5)
            schedule = RetrievalSchedule(cm, target, warmup=warmup, interval=interval, k=k,
                                         ratio=config.ratio, bank_size=config.bank_size, deadline=deadline,
                                         neighbours=config.neighbours, budget=budget)
        else:
            raise ValueError(f"unknown schedule '{config.schedule}' (retrieval or norm)")
        last_feats: dict[str, dict] = {}

        def objective(net, images, pids, step):
            s_out = net(images)
            t_out = frozen(images)
            terms = task(s_out, t_out, pids)
            if blocks:
                feats = block_feature_loss([cap_pre.features[b + ".compactor"] for b in blocks],
                                           [cap_t.features[b] for b in blocks])
            else:
                feats = pooled_feature_loss([cap_s.features[n] for n in stages], [cap_t.features[n] for n in stages])
            terms[f"cdd_{feature_loss}"] = config.pooled_weight * feats
            if extras is not None:
                terms.update(extras(s_out, t_out, pids))
            last_feats["s"] = {g: cap_s.features[n].detach() for g, n in group_layers.items()}
            last_feats["t"] = {g: cap_t.features[n].detach() for g, n in group_layers.items()}
            return {"loss": sum(terms.values()), **terms}

        calibration = BudgetState(budget, target) if budget is not None else None

        def after_step(step: int) -> None:
            if isinstance(schedule, NormSchedule):
                updated = schedule.step()
            else:
                updated = schedule.observe(last_feats["s"], last_feats["t"])
            if calibration is not None and updated:
                calibration.after_update(example, ctx)

        groups = cm.param_groups(lr=tcfg.lr, momentum=tcfg.momentum, weight_decay=tcfg.weight_decay,
                                 compactor_momentum=config.compactor_momentum)
        known = {id(p) for g in groups for p in g["params"]}
        head = [p for p in task.parameters() if id(p) not in known]
        more = [p for p in extras.parameters()] if extras is not None else []
        if head or more:
            groups.append({"params": head + more})
        trainer = Trainer(student, objective, data.train, tcfg, out, param_groups=groups, ctx=ctx,
                          stateful={"schedule": schedule, "task": task,
                                    **({"latency_budget": calibration} if calibration is not None else {})},
                          after_step=after_step)
        # identity-initialised compactors: a group of n compactors starts with joint row norms sqrt(n)
        reach = 2.0 * max((math.sqrt(len(g.compactors)) for g in cm.groups), default=1.0)
        cm.config.masked_penalty = masked_penalty_for(trainer, deadline, config, reach)
        cm.register_step_hook(trainer.optimizer)
    trainer.fit(resume=resume)
    train_seconds = time.time() - start
    if isinstance(schedule, NormSchedule):
        if not schedule.reached():
            schedule.update(limit=10**9)
    else:
        schedule.top_up()
    attribution = schedule.attribution() if isinstance(schedule, RetrievalSchedule) else None
    for cap in (cap_s, cap_t, cap_pre):
        cap.remove()
    weights_used = {**task.weights(), f"cdd_{feature_loss}": config.pooled_weight, "penalty": config.penalty}
    if extras is not None:
        weights_used.update({t.name: t.weight for t in extras.terms})
    report: dict = {}
    if ctx.is_main:
        report = _finish(cm, student, teacher, data, config, out, str(ctx.device), train_seconds,
                         blocks or stages, data.name, weights_used, feature_loss, attribution, kept_head, budget)
    ctx.barrier()
    return report


def finetune(model: nn.Module, teacher: nn.Module, data: RetrievalData, train: TrainConfig, epochs: int,
             kd_temperature: float, out: Path, extras: str = "", kd: bool = True,
             device: str = "cpu", gallery: str = "own", cross_nce: float | None = None) -> tuple[nn.Module, dict]:
    """Fine-tune a plain (pruned) model at a tenth of the lr with the task terms that fit it: CE + triplet
    (+ KD) for a RetrievalNet, triplet + teacher-embedding regression (+ CE through a temporary
    classifier) for a user's model; plus any extra distillation terms.

    Returns:
        The fine-tuned model (eval mode) and the loss terms it ran with their weights.
    """
    dev = torch.device(device)
    model = copy.deepcopy(model).to(dev).train()
    frozen = Teacher(teacher.to(dev))
    example = torch.stack([data.train[i][0] for i in range(2)]).to(dev)
    more = DistillObjective(parse_spec(extras), model, frozen, example) if extras else None
    kept_head = TeacherHead(model) if gallery == "teacher" else None
    task = task_loss_for(model, teacher, example, data.num_classes, kd=kd, kd_temperature=kd_temperature,
                         seed=train.seed, gallery=gallery, contrastive_weight=cross_nce).to(dev)

    def objective(net, images, pids, step):
        s_out, t_out = net(images), frozen(images)
        terms = task(s_out, t_out, pids)
        if more is not None:
            terms.update(more(s_out, t_out, pids))
        return {"loss": sum(terms.values()), **terms}

    cfg = copy.deepcopy(train)
    cfg.epochs, cfg.lr, cfg.warmup_epochs = epochs, train.lr * 0.1, 0.0
    params = [p for p in model.parameters() if p.requires_grad] + list(task.parameters())
    params += list(more.parameters()) if more is not None else []
    Trainer(model, objective, data.train, cfg, out, param_groups=[{"params": params}],
            ctx=DistContext(device=dev), stateful={"task": task}).fit()
    if kept_head is not None:
        kept_head.release()
    weights = {**task.weights(), **({t.name: t.weight for t in more.terms} if more is not None else {})}
    return model.eval(), weights


def _finish(cm, student, teacher, data, config: CompressConfig, out: Path, device: str, train_seconds: float,
            feature_layers: list[str], data_spec: str, loss_weights: dict, feature_loss: str,
            attribution: dict | None = None, kept_head: TeacherHead | None = None,
            budget: LatencyBudget | None = None) -> dict:
    """Surgery, optional fine-tuning, evaluation and the output directory."""
    student.eval()
    real = torch.stack([data.query[i][0] for i in range(min(64, len(data.query)))]).to(device)
    res = surgery(cm, real)
    pruned = like(student, res.model)
    entries = [("teacher", teacher), ("student (compactors, before surgery)", student),
               ("compressed (after surgery)", pruned)]
    final = pruned
    if config.finetune_epochs:
        final, tuned = finetune(pruned, teacher, data, config.train, config.finetune_epochs,
                                config.kd_temperature, out / "finetune", config.distill, device=device,
                                gallery=config.gallery, cross_nce=config.cross_nce)
        loss_weights = {**loss_weights, "finetune": tuned}
        entries.append((f"compressed + {config.finetune_epochs} fine-tune epochs", final))
    if kept_head is not None:
        kept_head.release(final)
        kept_head.release(pruned)
        kept_head.release()
    predicted = budget.fraction() if budget is not None else None
    batches = tuple(sorted({1, 32, config.latency_batch}))
    rows = model_rows(entries, data, device, config.latency_repeats, config.latency_input_size, batches=batches)
    label = f"cdd-{config.schedule}" + ("" if config.scope == "all" else f" ({config.scope})")
    if config.min_ratio != CompressConfig.min_ratio:
        label += f" (min-ratio {config.min_ratio:g})"
    if cm.config.round_to != 1:
        label += f" (round-to {cm.config.round_to})"
    if budget is not None:
        label += f" (latency target {config.target_latency:g})"
    if config.residual_compactor != CompressConfig.residual_compactor:
        label += f" ({config.residual_compactor} residual compactors)"
    if config.feature_loss != CompressConfig.feature_loss:
        label += f" ({config.feature_loss} loss)"
    if config.gallery == "teacher":
        label += " (teacher gallery)"
    if config.schedule == "retrieval" and config.neighbours != CompressConfig.neighbours:
        label += f" ({config.neighbours}-ranked neighbours)"
    extra = {"method": label + (f" + {config.distill}" if config.distill else ""),
             "target_flops": config.target_flops if budget is None else None,
             "target_latency": config.target_latency, "round_to": cm.config.round_to, "penalty": config.penalty,
             "masked_penalty": round(cm.config.masked_penalty or config.penalty, 6),
             "schedule": config.schedule, "scope": config.scope,
             "epochs": config.train.epochs, "finetune_epochs": config.finetune_epochs,
             "surgery_max_abs_diff": res.max_abs_diff, "surgery_rel_diff": res.rel_diff,
             "masked_rows_drift": res.drift, "training_seconds": round(train_seconds, 1),
             "feature_loss": feature_loss, "distill_blocks": feature_layers, "loss_terms": loss_weights,
             "gallery": config.gallery}
    if budget is not None:
        measured = rows[-1][f"latency_ratio_b{config.latency_batch}"]
        extra["latency_budget"] = {
            "target": config.target_latency, "batch": config.latency_batch, "device": device,
            "input_size": list(config.latency_input_size or data.image_shape), "predicted": round(predicted, 4),
            "measured": round(measured, 4), "within_5_percent": abs(measured / config.target_latency - 1) <= 0.05,
            "calibration": budget.calibration, "table": "latency_budget.json"}
    if attribution is not None:
        extra["rggr"] = attribution
        plot_mask_history(attribution, config.target_latency or config.target_flops, out / "mask_schedule.png")
    settings = {"compress": {k: v for k, v in asdict(config).items() if k != "train"}, "train": asdict(config.train)}
    save_result(out, final, teacher, data, data_spec, res.plan, settings, rows, extra,
                f"capdist compress: {config.schedule} schedule, scope {config.scope}, "
                + (f"target {config.target_flops:.0%} FLOPs" if budget is None else
                 f"target {config.target_latency:.0%} of the teacher's latency"))
    return json.loads((out / "report.json").read_text())
