"""Where a training run's numbers go: ``metrics.jsonl`` always, TensorBoard event files on request,
and retrieval evaluated every few epochs with the best weights kept (torchreid's ``eval_freq``,
fast-reid's ``TEST.EVAL_PERIOD``).

Example:
    >>> monitor = Monitor(Path("runs/t"), tensorboard=True, evaluator=lambda m: {"mAP": 0.5})  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import save
from torch import nn

from ..errors import CapdistError
from ..io.atomic import atomic_write_bytes

log = logging.getLogger("capdist")
BEST_WEIGHTS = "best.safetensors"


def check_tensorboard() -> None:
    """Raises a one-line error when TensorBoard's writer cannot be imported."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise CapdistError("--tensorboard needs the tensorboard package: pip install 'capdist[tensorboard]'") from None


class Monitor:
    """Logs records and evaluates the model on a schedule.

    Args:
        out: the run directory (``metrics.jsonl``, ``tensorboard/``, ``best.safetensors``).
        is_main: this process writes (rank 0).
        tensorboard: also write TensorBoard scalars.
        evaluator: ``model -> {"mAP": ..., ...}`` (None: no periodic evaluation).
        eval_every: steps between evaluations (0: none).
        keep_best: write the weights of the best-mAP evaluation to ``best.safetensors``.
    """

    def __init__(self, out: Path, is_main: bool = True, tensorboard: bool = False,
                 evaluator: Callable[[nn.Module], dict] | None = None, eval_every: int = 0,
                 keep_best: bool = False) -> None:
        self.out, self.is_main = Path(out), is_main
        self.evaluator, self.eval_every, self.keep_best = evaluator, eval_every, keep_best
        self.best: dict = {}
        self.tensorboard, self.writer = tensorboard and is_main, None

    def log(self, record: dict) -> None:
        """One line of ``metrics.jsonl``, and its numbers as TensorBoard scalars at ``record["step"]``."""
        if not self.is_main:
            return
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard and self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out / "tensorboard"))
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key.replace("eval_", "eval/"), value, record["step"])
            self.writer.flush()

    def after_step(self, model: nn.Module, step: int, epoch: float) -> None:
        """Evaluate when ``step`` completes an evaluation period (every rank calls; rank 0 evaluates)."""
        if self.evaluator is None or not self.eval_every or step % self.eval_every or not self.is_main:
            return
        was = model.training
        metrics = self.evaluator(model.eval())
        model.train(was)
        self.log({"step": step, "epoch": epoch, **{f"eval_{k}": v for k, v in metrics.items()}})
        log.info("epoch %.1f: mAP %.2f%%", epoch, 100 * metrics["mAP"])
        if metrics["mAP"] > self.best.get("mAP", -1.0):
            self.best = {"mAP": metrics["mAP"], "step": step, "epoch": epoch}
            if self.keep_best:
                state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
                atomic_write_bytes(self.out / BEST_WEIGHTS, save(state))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def state_dict(self) -> dict:
        return dict(self.best)

    def load_state_dict(self, state: dict) -> None:
        self.best = dict(state)
