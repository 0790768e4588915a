"""Run every torchvision classification model through attach -> train -> mask -> surgery.

Writes docs/coverage.md: model, groups found, FLOPs before/after, max abs diff,
time, or the one-line reason the model is unsupported. Usage:

    .venv/bin/python scripts/coverage.py [--size 64] [--steps 20] [--out docs/coverage.md]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import torch
import torchvision

from capdist.compactor import CompactorConfig, NormSchedule, attach, surgery
from capdist.compactor.cost import fvcore_by_module
from capdist.errors import CapdistError
from capdist.models import build_model

MIN_SIZE = {"inception_v3": 96, "vit_b_16": 224, "swin_t": 224, "maxvit_t": 224}
FAMILIES = ["alexnet", "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "vgg11_bn",
            "mobilenet_v2", "mobilenet_v3_small", "mnasnet0_5", "efficientnet_b0", "efficientnet_v2_s",
            "regnet_x_400mf", "regnet_y_400mf", "shufflenet_v2_x1_0", "squeezenet1_0", "densenet121",
            "googlenet", "inception_v3", "convnext_tiny", "vit_b_16", "swin_t", "maxvit_t"]


def run(name: str, size: int, steps: int) -> dict:
    start = time.time()
    torch.manual_seed(0)
    x = torch.randn(4, 3, size, size)
    model = build_model(name, num_classes=10)
    cm = attach(model, x[:1], CompactorConfig(scope="all", penalty=1e-3))
    opt = torch.optim.SGD(cm.param_groups(lr=1e-3), lr=1e-3)
    cm.register_step_hook(opt)
    model.train()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), torch.arange(4) % 10)
        opt.zero_grad()
        loss.backward()
        opt.step()
    target = max(0.5, cm.min_flops() / cm.original_flops * 1.05)
    NormSchedule(cm, target=target).update(limit=10**9)
    res = surgery(cm, x)
    after = fvcore_by_module(res.model, (x[:1],))[""]
    return {"groups": len(cm.groups), "before": cm.original_flops, "after": after,
            "rel": res.rel_diff, "seconds": time.time() - start}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default="docs/coverage.md")
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--all", action="store_true", help="every model in list_models, not one per family")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    names = args.only or (torchvision.models.list_models(module=torchvision.models) if args.all else FAMILIES)
    lines = ["# Coverage: compactors on torchvision's classification models", "",
             f"Each model: `attach` (scope all) on a {args.size}x{args.size} input, {args.steps} "
             "SGD steps on random data with penalty and gradient resetting, schedule A to 50% "
             "of the FLOPs (or just above the lowest reachable), then `surgery`. FLOPs by fvcore "
             "after surgery; `rel diff` = max |pruned - masked| / max |masked|.",
             f"Reproduce: `.venv/bin/python scripts/coverage.py --size {args.size}` (one model per "
             "family; `--all` runs every model in `torchvision.models.list_models`). inception_v3 runs at "
             "96x96, the transformers at 224x224 (their fixed input sizes).", "",
             "| model | groups | GFLOPs before | GFLOPs after | after/before | rel diff | time (s) "
             "| status |", "|---|---|---|---|---|---|---|---|"]
    for name in names:
        try:
            r = run(name, MIN_SIZE.get(name, args.size), args.steps)
            ok = "ok" if r["rel"] <= 1e-4 else "MISMATCH"
            lines.append(f"| {name} | {r['groups']} | {r['before'] / 1e9:.4f} | "
                         f"{r['after'] / 1e9:.4f} | {r['after'] / r['before']:.2f} | "
                         f"{r['rel']:.1e} | {r['seconds']:.1f} | {ok} |")
        except CapdistError as exc:
            lines.append(f"| {name} | - | - | - | - | - | - | unsupported: {exc} |")
        except Exception as exc:  # noqa: BLE001 - the table records every failure
            lines.append(f"| {name} | - | - | - | - | - | - | failed: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:160]} |")
        print(lines[-1], flush=True)
        with open(args.out + ".tmp", "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
