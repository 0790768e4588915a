"""Compactor-core benchmark: training-step overhead, surgery time, FLOPs agreement.

Ratios are measured side by side in one run, interleaving the two variants so
machine noise hits both alike, with medians over repeats. Writes
``docs/benchmarks/compactor-core.json`` and ``.md``. Usage::

    .venv/bin/python -m capdist.benchmarks.core_suite [--repeats 15] [--out docs/benchmarks]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
import warnings

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ..compactor import CompactorConfig, DiagonalCompactor, NormSchedule, attach, surgery
from ..compactor.layers import compactor_of
from ..measure.counting import count


class _ScaleInNorm(nn.BatchNorm2d):
    """A variant measured here, not shipped: a BatchNorm2d whose per-channel-scale compactor ``s`` is
    applied through its affine parameters (weight ``gamma * s``, bias ``beta * s``), one pass over the
    activation less than the forward hook."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.compactor.weight.view(-1)
        self.num_batches_tracked.add_(int(self.training))
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight * s, self.bias * s,
                            self.training, self.momentum, self.eps)


def _scales_into_norms(model: nn.Module, x: torch.Tensor) -> None:
    """Swap in :class:`_ScaleInNorm` where it applies, after checking on random scales and norm
    parameters that it computes what the hook does (the model's values are restored)."""
    norms = [m for m in model.modules() if type(m) is nn.BatchNorm2d and type(compactor_of(m)) is DiagonalCompactor]
    saved = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        for m in norms:
            for t in (m.compactor.weight, m.weight, m.bias, m.running_mean):
                t.uniform_(-1.5, 1.5)
        model.eval()
        hooked = model(x)
        for m in norms:
            m._forward_hooks.clear()
            m.__class__ = _ScaleInNorm
        diff = float((model(x) - hooked).abs().max() / hooked.abs().max())
    model.load_state_dict(saved)
    model.train()
    if diff > 1e-5:
        raise AssertionError(f"the scales inside the BN differ from the hooked ones by {diff:.1e}")


def _step_time(model, opt, x, y, after_backward=None) -> float:
    t0 = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if after_backward:
        after_backward()
    opt.step()
    return time.perf_counter() - t0


def _pair(name: str, batch: int, size: int, config: CompactorConfig, channels_last: bool = False) -> tuple:
    """A torchvision model and a copy with compactors, a batch, and their optimizers (the compacted
    one with resetting hooked in): ``plain, comp, cm, x, y, opt_plain, opt_comp``."""
    torch.manual_seed(0)
    plain = torchvision.models.get_model(name, weights=None, num_classes=10)
    comp = copy.deepcopy(plain)
    x = torch.randn(batch, 3, size, size)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    cm = attach(comp, x[:1], config)
    opt_p = torch.optim.SGD(plain.parameters(), lr=1e-3, momentum=0.9)
    opt_c = torch.optim.SGD(cm.param_groups(lr=1e-3), lr=1e-3)
    cm.register_step_hook(opt_c)
    return plain, comp, cm, x, y, opt_p, opt_c


def step_overhead(name: str, batch: int, size: int, repeats: int, scope: str,
                  diagonal_residual: bool = False, channels_last: bool = False,
                  diagonal_internal: bool = False, scales_in_norm: bool = False) -> dict:
    """Median compactor step time / plain step time (penalty in the loss + resetting); with
    ``channels_last`` both networks and the batch are in that memory format (as ``--channels-last``);
    with ``scales_in_norm`` the per-channel scales after BatchNorms run inside the norm (:class:`_ScaleInNorm`)."""
    config = CompactorConfig(scope=scope, diagonal_residual=diagonal_residual, diagonal_internal=diagonal_internal)
    plain, comp, cm, x, y, opt_p, opt_c = _pair(name, batch, size, config, channels_last)
    if scales_in_norm:
        _scales_into_norms(comp, x[:2])
    if channels_last:
        plain.to(memory_format=torch.channels_last)
        comp.to(memory_format=torch.channels_last)

    def comp_step():
        t0 = time.perf_counter()
        loss = F.cross_entropy(comp(x), y) + cm.penalty()
        opt_c.zero_grad(set_to_none=True)
        loss.backward()
        opt_c.step()
        return time.perf_counter() - t0

    plain.train()
    comp.train()
    for _ in range(2):
        _step_time(plain, opt_p, x, y)
        comp_step()
    ratios, tp, tc = [], [], []
    for _ in range(repeats):
        a = _step_time(plain, opt_p, x, y)
        b = comp_step()
        tp.append(a)
        tc.append(b)
        ratios.append(b / a)
    diagonal = "diagonal everywhere" if diagonal_internal and diagonal_residual else (
        "diagonal residual" if diagonal_residual else "diagonal internal" if diagonal_internal else "")
    label = scope + (f" ({diagonal})" if diagonal else "") + (", channels-last" if channels_last else "") + (
        ", scales inside the BN (not shipped)" if scales_in_norm else "")
    return {"model": name, "scope": label, "batch": batch, "size": size, "repeats": repeats,
            "compactors": len(cm.compactors()), "median_ratio": statistics.median(ratios),
            "ratio_of_medians": statistics.median(tc) / statistics.median(tp),
            "plain_step_s": statistics.median(tp), "compactor_step_s": statistics.median(tc)}


def step_parts(name: str, batch: int, size: int, repeats: int) -> dict:
    """Median seconds of a step's forward, backward, and the rest (penalty, resetting, SGD), plain
    against the default compactors (scope all, diagonal residual), interleaved."""
    plain, comp, cm, x, y, opt_p, opt_c = _pair(name, batch, size, CompactorConfig(scope="all", diagonal_residual=True))
    plain.train(), comp.train()
    opts = {"plain": opt_p, "default": opt_c}
    times: dict = {k: {"forward": [], "backward": [], "penalty, resetting and SGD": []} for k in opts}

    def one(key: str, model: nn.Module) -> None:
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        loss = loss + cm.penalty() if key == "default" else loss
        opts[key].zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        opts[key].step()
        t4 = time.perf_counter()
        for part, dt in zip(times[key], (t1 - t0, t3 - t2, (t2 - t1) + (t4 - t3)), strict=True):
            times[key][part].append(dt)

    for _ in range(repeats + 2):
        one("plain", plain)
        one("default", comp)
    return {k: {part: statistics.median(v[2:]) for part, v in t.items()} for k, t in times.items()}


def surgery_time(name: str, size: int, repeats: int) -> dict:
    """Wall time of surgery (fold + torch-pruning removal + equivalence check)."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=10)
    x = torch.randn(2, 3, size, size)
    cm = attach(model, x[:1], CompactorConfig(scope="all"))
    NormSchedule(cm, target=0.5).update(limit=10**9)
    times, diffs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = surgery(cm, x)
        times.append(time.perf_counter() - t0)
        diffs.append(res.rel_diff)
    return {"model": name, "size": size, "median_s": statistics.median(times),
            "max_rel_diff": max(diffs), "flops_fraction": cm.flops() / cm.original_flops}


def flops_agreement(names: list[str], size: int) -> list[dict]:
    """fvcore vs thop vs ``cm.flops()`` on the model surgery produces at 50% FLOPs."""
    rows = []
    for name in names:
        torch.manual_seed(0)
        model = torchvision.models.get_model(name, weights=None, num_classes=10)
        x = torch.randn(1, 3, size, size)
        cm = attach(model, x, CompactorConfig(scope="all"))
        NormSchedule(cm, target=0.5).update(limit=10**9)
        res = surgery(cm, x)
        c = count(res.model, x)
        rows.append({"model": name, "cm_flops": cm.flops(), "fvcore": c.fvcore_flops,
                     "thop": c.thop_macs, "cm_vs_fvcore": abs(cm.flops() - c.fvcore_flops) / c.fvcore_flops,
                     "thop_vs_fvcore": c.disagreement})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default="docs/benchmarks")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    result = {
        "machine": {"threads": torch.get_num_threads(), "torch": torch.__version__, "device": "cpu"},
        "step_overhead": [step_overhead("resnet50", 32, 64, args.repeats, "internal"),
                          step_overhead("resnet50", 32, 64, args.repeats, "all"),
                          step_overhead("resnet50", 32, 64, args.repeats, "all", diagonal_residual=True),
                          step_overhead("resnet50", 32, 64, args.repeats, "all", diagonal_residual=True,
                                        channels_last=True),
                          step_overhead("resnet50", 32, 64, args.repeats, "all", diagonal_residual=True,
                                        diagonal_internal=True),
                          step_overhead("resnet50", 32, 64, args.repeats, "all", diagonal_residual=True,
                                        scales_in_norm=True)],
        "step_parts": step_parts("resnet50", 32, 64, args.repeats),
        "surgery": [surgery_time("resnet50", 64, 5), surgery_time("resnet18", 64, 5)],
        "flops_agreement": flops_agreement(["resnet18", "resnet50", "mobilenet_v2",
                                            "efficientnet_b0", "regnet_x_400mf"], 64),
    }
    os.makedirs(args.out, exist_ok=True)
    md = ["# Compactor core benchmark", "",
          "Reproduce: `.venv/bin/python -m capdist.benchmarks.core_suite` "
          f"({result['machine']['threads']} CPU threads, torch {result['machine']['torch']}).", "",
          "## Training-step overhead (goal <= 1.15)", "",
          "Compactor step (forward with compactors + penalty in the loss + gradient resetting + SGD)"
          " / plain step, interleaved, median of per-pair ratios. Absolute times move with the shared"
          " machine's load from run to run (rows of one run too); compare the ratios.", "",
          "| model | scope | batch | input | compactors | median ratio | plain step (s) | compactor step (s) |",
          "|---|---|---|---|---|---|---|---|"]
    for r in result["step_overhead"]:
        md.append(f"| {r['model']} | {r['scope']} | {r['batch']} | {r['size']}x{r['size']} | {r['compactors']} "
                  f"| {r['median_ratio']:.3f} | {r['plain_step_s']:.3f} | {r['compactor_step_s']:.3f} |")
    parts = result["step_parts"]
    md += ["", "Where the default's extra time goes (resnet50, batch 32, 64x64; medians of interleaved steps, "
           "seconds):", "", "| part | plain | default compactors | ratio |", "|---|---|---|---|"]
    for part in ("forward", "backward", "penalty, resetting and SGD"):
        md.append(f"| {part} | {parts['plain'][part]:.3f} | {parts['default'][part]:.3f} "
                  f"| {parts['default'][part] / parts['plain'][part]:.2f} |")
    md += ["", "## Surgery wall time (goal < 2 s for resnet50)", "",
           "| model | input | median (s) | max rel diff | FLOPs kept |", "|---|---|---|---|---|"]
    for r in result["surgery"]:
        md.append(f"| {r['model']} | {r['size']} | {r['median_s']:.2f} | {r['max_rel_diff']:.1e} "
                  f"| {r['flops_fraction']:.2f} |")
    md += ["", "## FLOPs agreement after surgery (50% target, 64x64 input)", "",
           "Surgery folds the BNs, so fvcore and thop count the same convs and linears here; on models "
           "that keep BNs they differ by BN, pooling and activation costs (see `capdist profile`).", "",
           "| model | cm.flops() | fvcore | thop | cm vs fvcore | thop vs fvcore |", "|---|---|---|---|---|---|"]
    for r in result["flops_agreement"]:
        md.append(f"| {r['model']} | {r['cm_flops'] / 1e6:.2f} M | {r['fvcore'] / 1e6:.2f} M | "
                  f"{r['thop'] / 1e6:.2f} M | {r['cm_vs_fvcore']:.2%} | {r['thop_vs_fvcore']:.2%} |")
    for ext, text in (("json", json.dumps(result, indent=2)), ("md", "\n".join(md) + "\n")):
        path = os.path.join(args.out, f"compactor-core.{ext}")
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    print("\n".join(md))


if __name__ == "__main__":
    main()
