"""The training loop: SGD/AdamW, warm-up + cosine, bf16/fp16 autocast, channels-last, DDP, a
``torch.utils.data`` loader with workers, atomic checkpoints, bit-exact resume on CPU, JSONL
logs, a NaN guard.

Every random choice of a step derives from the run seed and the step index, so a
run killed at any point and resumed from its last checkpoint ends with the same
weights as an uninterrupted one (on CPU), whatever the number of loader workers.

Example:
    >>> trainer = Trainer(model, objective, data.train, TrainConfig(epochs=2), "runs/x")  # doctest: +SKIP
    >>> trainer.fit()  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import logging
import math
import pickle
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from ..data.loader import train_loader
from ..data.sampling import IdentityBatchSampler
from ..data.transforms import Augment
from ..errors import CheckpointError, TrainingDiverged, first_line
from ..io.atomic import atomic_write_bytes
from ..settings import setting
from .distributed import DistContext
from .monitor import Monitor

log = logging.getLogger("capdist")

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], dict[str, torch.Tensor]]


@dataclass
class TrainConfig:
    """Training hyper-parameters.

    Attributes:
        epochs: passes over the training set.
        batch_size: global batch (all ranks together).
        lr: peak learning rate.
        optimizer: ``"sgd"`` or ``"adamw"``.
        momentum: SGD momentum.
        weight_decay: decoupled for AdamW, L2 for SGD.
        warmup_epochs: linear warm-up before the cosine decay.
        instances: K of P x K identity sampling (0 = plain shuffling).
        seed: run seed.
        checkpoint_every: steps between checkpoints (0 = once per epoch).
        log_every: steps between JSONL log lines.
        pad, flip, erase: augmentation (pad-and-crop pixels, horizontal flip, erasing probability).
        amp: autocast precision: ``""`` (off), ``"bf16"`` (CPU or CUDA) or ``"fp16"`` (CUDA, with
            gradient scaling).
        channels_last: keep the model and the batches in channels-last memory format.
        workers: loader processes (None: the cores, at most 8, for images decoded from disk;
            none for data in memory).
        progress: show a progress bar on rank 0.
        eval_every: epochs between retrieval evaluations during training (0: none).
        tensorboard: also write the logged figures as TensorBoard scalars.
    """

    epochs: int = setting(10, "Passes over the training set.", low=1)
    batch_size: int = setting(64, "Global batch, a multiple of --instances.", low=1)
    lr: float = setting(0.05, "Peak learning rate.", low=0, open_low=True)
    optimizer: str = setting("sgd", "Optimizer.", choices=("sgd", "adamw"))
    momentum: float = setting(0.9, "SGD momentum.", low=0, high=1)
    weight_decay: float = setting(5e-4, "Weight decay (decoupled for AdamW).", low=0)
    warmup_epochs: float = setting(1.0, "Epochs of linear learning-rate warm-up before the cosine decay.", low=0)
    instances: int = setting(4, "K: images per identity in a P x K batch.", low=1, cli=False)
    seed: int = setting(0, "Run seed.")
    checkpoint_every: int = setting(0, "Steps between checkpoints (0: once per epoch).", low=0, cli=False)
    log_every: int = setting(20, "Steps between log lines.", low=1, cli=False)
    pad: int = setting(2, "Zero padding before the random crop (pixels).", low=0, cli=False)
    flip: bool = setting(True, "Random horizontal flips.", cli=False)
    erase: float = setting(0.0, "Probability of erasing a random rectangle of each training image.", low=0, high=1,
                           cli=False)
    amp: str = setting("", "Autocast precision: off, bf16 (CPU or CUDA) or fp16 (CUDA).", cli=False)
    channels_last: bool = setting(False, "Channels-last memory format.", cli=False)
    workers: int | None = setting(None, "Loader processes.", cli=False)
    progress: bool = setting(True, "Progress bars.", cli=False)
    eval_every: int = setting(0, "Evaluate retrieval on the query set every N epochs (mAP and R@1 into "
                              "metrics.jsonl, and TensorBoard; 0: only at the end).", low=0)
    tensorboard: bool = setting(False, "Also write every logged figure as TensorBoard scalars to OUT/tensorboard.")
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tensorboard:
            from .monitor import check_tensorboard

            check_tensorboard()


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(amp: str | bool, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None: full precision).

    Raises:
        ValueError: an unknown precision, or fp16 on the CPU (it needs CUDA's gradient scaling).
    """
    if amp is True:
        amp = "fp16" if device.type == "cuda" else "bf16"
    if not amp:
        return None
    if amp not in AMP_DTYPES:
        raise ValueError(f"unknown --amp '{amp}' (bf16 or fp16)")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("--amp fp16 needs CUDA; use --amp bf16 on the CPU")
    return AMP_DTYPES[amp]


class Trainer:
    """Runs an objective over a dataset with checkpoints and logs in ``out_dir``.

    Args:
        model: the network (plain; wrapped in DDP here when the context is distributed).
        objective: ``objective(model, images, pids, step) -> {"loss": ..., other terms}``.
        train_set: training items (``pids`` attribute needed for P x K sampling).
        config: hyper-parameters.
        out_dir: where ``checkpoint.pt`` and ``metrics.jsonl`` go.
        param_groups: optimizer groups (default: all trainable parameters).
        ctx: distributed context.
        stateful: extra objects with ``state_dict``/``load_state_dict`` saved in checkpoints.
        after_step: called with the step index after each optimizer step.
        evaluator: ``model -> retrieval metrics``, run every ``config.eval_every`` epochs.
        keep_best: keep the weights of the best evaluation as ``best.safetensors``.
        loader: batches ``(images, pids)`` to train on instead of P x K sampling of ``train_set``
            (a user's own loader; needs ``len`` and ``set_epoch(epoch, start)``).
        extra_log: more figures for every log line (e.g. the FLOPs the masks keep).
    """

    def __init__(self, model: nn.Module, objective: Objective, train_set: Dataset, config: TrainConfig,
                 out_dir: str | Path, param_groups: list[dict] | None = None, ctx: DistContext | None = None,
                 stateful: dict | None = None, after_step: Callable[[int], None] | None = None,
                 evaluator: Callable[[nn.Module], dict] | None = None, keep_best: bool = False,
                 loader=None, extra_log: Callable[[], dict] | None = None) -> None:
        self.ctx = ctx or DistContext()
        self.model = model.to(self.ctx.device)
        self.objective = objective
        self.train_set = train_set
        self.config = config
        self.out = Path(out_dir)
        self.stateful = stateful or {}
        self.after_step, self.extra_log = after_step, extra_log
        if loader is not None:  # the user's own batching, as given
            self.sampler = self.loader = loader
        else:
            pids = getattr(train_set, "pids", None)
            if pids is None:
                pids = torch.tensor([train_set[i][1] for i in range(len(train_set))])
            self.sampler = IdentityBatchSampler(pids, config.batch_size, config.seed, config.instances,
                                                self.ctx.rank, self.ctx.world_size)
            self.loader = train_loader(train_set, self.sampler, Augment(config.pad, config.flip, config.erase),
                                       config.workers, pin_memory=self.ctx.device.type == "cuda")
        self.steps_per_epoch = len(self.sampler)
        self.monitor = Monitor(self.out, self.ctx.is_main, config.tensorboard, evaluator,
                               config.eval_every * self.steps_per_epoch, keep_best)
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        if config.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.total_steps = self.steps_per_epoch * config.epochs
        groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
        for g in groups:
            g.setdefault("lr", config.lr)
            g["base_lr"] = g["lr"]
        if config.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                                             weight_decay=config.weight_decay)
        elif config.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        else:
            raise ValueError(f"unknown optimizer '{config.optimizer}' (sgd or adamw)")
        self.net = self.model
        if self.ctx.enabled:
            ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.amp_dtype = amp_dtype(config.amp, self.ctx.device)
        self.scaler = torch.amp.GradScaler(self.ctx.device.type,
                                           enabled=self.amp_dtype is torch.float16 and self.ctx.device.type == "cuda")
        self.step = 0

    # ------------------------------------------------------------------ schedule
    def lr_factor(self, step: int) -> float:
        warm = int(self.config.warmup_epochs * self.steps_per_epoch)
        if step < warm:
            return (step + 1) / warm
        span = max(1, self.total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(step - warm, span) / span))

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        if not self.ctx.is_main:
            return
        state = {"step": self.step, "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                 "extra": {k: v.state_dict() for k, v in self.stateful.items()}, "monitor": self.monitor.state_dict()}
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.checkpoint_path, buf.getvalue())

    def load_checkpoint(self) -> bool:
        path = self.checkpoint_path
        if not path.is_file():
            return False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location=self.ctx.device, weights_only=True)
            if not isinstance(state, dict) or "step" not in state:
                raise KeyError("not a capdist training checkpoint")
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            for k, obj in self.stateful.items():
                obj.load_state_dict(state["extra"][k])
            self.monitor.load_state_dict(state.get("monitor", {}))
        except (RuntimeError, KeyError, EOFError, ValueError, TypeError, AttributeError, IndexError,
                pickle.UnpicklingError) as exc:
            raise CheckpointError(f"cannot resume from {path}: {first_line(exc)}; remove it to start over") from None
        self.step = int(state["step"])
        log = self.out / "metrics.jsonl"
        if self.ctx.is_main and log.is_file():
            lines = [ln for ln in log.read_text().splitlines()
                     if ln.strip() and json.loads(ln).get("step", 0) <= self.step]
            atomic_write_bytes(log, ("\n".join(lines) + "\n" if lines else "").encode())
        return True

    # ------------------------------------------------------------------ loop
    def _log(self, record: dict) -> None:
        self.monitor.log(record)

    def _batches(self):
        """``(step, images, pids)`` from the current step to the end, epoch by epoch."""
        while self.step < self.total_steps:
            epoch, start = divmod(self.step, self.steps_per_epoch)
            self.sampler.set_epoch(epoch, start)
            for images, pids in self.loader:
                images = images.to(self.ctx.device, non_blocking=True, memory_format=self.memory_format)
                yield self.step, images, pids.to(self.ctx.device, non_blocking=True)
                if self.step >= self.total_steps:
                    return

    def fit(self, resume: bool = False) -> dict:
        """Train to the end (or continue a checkpointed run). Returns the last logged record."""
        self.out.mkdir(parents=True, exist_ok=True)
        if resume:
            self.load_checkpoint()
        elif self.ctx.is_main:
            (self.out / "metrics.jsonl").write_text("")
        c = self.config
        log.info("training on %s: %d steps of %d images", self.ctx.device, self.total_steps - self.step,
                 c.batch_size)
        every = c.checkpoint_every or self.steps_per_epoch
        bar = None
        if c.progress and self.ctx.is_main:
            from tqdm import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True,
                       desc="train")
        self.net.train()
        last: dict = {}
        seen, tick = 0, time.perf_counter()
        try:
            for step, images, pids in self._batches():
                torch.manual_seed(c.seed * 7919 + step)
                factor = self.lr_factor(step)
                for g in self.optimizer.param_groups:
                    g["lr"] = g["base_lr"] * factor
                with torch.autocast(self.ctx.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    terms = self.objective(self.net, images, pids, step)
                loss = terms["loss"]
                if not self.ctx.all_true(bool(torch.isfinite(loss.detach()).item())):
                    kept = (f"the last good checkpoint is kept at {self.checkpoint_path}; lower --lr and rerun with "
                            "--resume or start over") if self.checkpoint_path.is_file() else (
                            "no checkpoint was written yet; lower --lr and start over")
                    raise TrainingDiverged(f"loss became {float(loss.detach()):.4g} at step {step} "
                                           f"(epoch {step // self.steps_per_epoch}); {kept}")
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.step += 1
                seen += len(images) * self.ctx.world_size
                if self.after_step:
                    self.after_step(step)
                if self.step % c.log_every == 0 or self.step == self.total_steps:
                    now = time.perf_counter()
                    last = {"step": self.step, "epoch": self.step / self.steps_per_epoch,
                            "lr": self.optimizer.param_groups[0]["lr"],
                            "images_per_s": seen / max(now - tick, 1e-9),
                            **{k: float(v.detach()) for k, v in terms.items()},
                            **(self.extra_log() if self.extra_log else {})}
                    seen, tick = 0, now
                    self._log(last)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
                self.monitor.after_step(self.model, self.step, self.step / self.steps_per_epoch)
                if self.step % every == 0 or self.step == self.total_steps:
                    self.save_checkpoint()
        finally:
            self.monitor.close()
            if bar is not None:
                bar.close()
        self.ctx.barrier()
        return last

    def config_dict(self) -> dict:
        return asdict(self.config)
