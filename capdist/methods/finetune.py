"""Fine-tuning a plain (pruned) model with the task terms that fit it and any extra teacher signals.

Example:
    >>> # model, weights = finetune(pruned, teacher, data, TrainConfig(lr=0.01), 5, out=Path("runs/x/finetune"))
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from ..data import RetrievalData
from ..distill import DistillObjective, Teacher, parse_spec
from ..engine import DistContext, TrainConfig, Trainer
from ..engine.evaluation import evaluate_models
from .task_loss import TeacherHead, task_loss_for


def finetune(model: nn.Module, teacher: nn.Module, data: RetrievalData, train: TrainConfig, epochs: int,
             out: Path, kd_temperature: float = 2.0, extras: str = "", kd: bool = True, device: str = "cpu",
             gallery: str = "own", cross_nce: float | None = None, cross_nce_same_label: str = "negative"
             ) -> tuple[nn.Module, dict]:
    """Fine-tune a plain (pruned) model at a tenth of ``train.lr`` with the task terms that fit it:
    CE + triplet (+ KD) for a RetrievalNet, triplet + teacher-embedding regression (+ CE through a
    temporary classifier) for a user's model; plus any extra distillation terms.

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
                         seed=train.seed, gallery=gallery, contrastive_weight=cross_nce,
                         contrastive_same_label=cross_nce_same_label).to(dev)

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
    Trainer(model, objective, data.train, cfg, out, param_groups=[{"params": params}], ctx=DistContext(device=dev),
            stateful={"task": task}, evaluator=lambda net: evaluate_models(net, data, device=str(dev)),
            loader=data.train_loader).fit()
    if kept_head is not None:
        kept_head.release()
    weights = {**task.weights(), **({t.name: t.weight for t in more.terms} if more is not None else {})}
    return model.eval(), weights
