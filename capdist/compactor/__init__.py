"""Compactors, gradient resetting, mask schedules and surgery (ResRep, ICCV 2021; CDD, CVPR 2023).

Plug into any torchvision backbone from your own training loop::

    cm = attach(model, example_inputs, CompactorConfig(scope="internal"))
    schedule = NormSchedule(cm, target=0.35)
    ...  loss = task_loss + cm.penalty(); loss.backward()
    cm.reset_gradients(); optimizer.step(); schedule.step()
    res = surgery(cm, example_inputs)   # res.model, res.max_abs_diff, res.plan
"""

from .config import ALLOCATIONS, CompactorConfig, Scope
from .graph import GroupSpec, analyse
from .layers import Compactor, DiagonalCompactor, LinearCompactor
from .model import ChannelGroup, CompactorModel
from .placement import attach, detach, plan_groups
from .retrieval_schedule import RetrievalSchedule
from .schedule import NormSchedule
from .schedules import SCHEDULES, MaskSchedule, PooledFeatures, ScheduleConfig, ScheduleTiming, build_schedule
from .surgery import SurgeryResult, replay, surgery

__all__ = [
    "ALLOCATIONS", "SCHEDULES", "ChannelGroup", "Compactor", "CompactorConfig", "CompactorModel",
    "DiagonalCompactor", "GroupSpec", "LinearCompactor", "MaskSchedule", "NormSchedule", "PooledFeatures",
    "RetrievalSchedule", "ScheduleConfig", "ScheduleTiming", "Scope", "SurgeryResult", "analyse", "attach",
    "build_schedule", "detach", "plan_groups", "replay", "surgery",
]
