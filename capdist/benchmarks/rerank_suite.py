"""k-reciprocal re-ranking measured: the mAP it adds beside plain ranking for a trained model, and the
peak memory and time of re-ranking a large gallery (each size in its own process, so its peak is its own).

Usage:
    python -m capdist.benchmarks.rerank_suite --model runs/teacher --data fmnist-open --out docs/benchmarks/rerank
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..io.atomic import atomic_write_bytes, atomic_write_json

SIZES = (10_000, 50_000)
QUERIES = 3_000


def peak_of_one_size(items: int, dim: int = 512, queries: int = QUERIES) -> dict:
    """Re-rank ``queries`` against ``items - queries`` clustered random embeddings; seconds and peak RSS."""
    from ..measure.retrieval_metrics import evaluate

    g = torch.Generator().manual_seed(0)
    pids = torch.randint(0, items // 20, (items,), generator=g)
    x = torch.randn(items // 20, dim, generator=g)[pids] + 1.5 * torch.randn(items, dim, generator=g)
    start = time.perf_counter()
    result = evaluate(x[:queries], pids[:queries], x[queries:], pids[queries:], rerank=True)
    return {"items": items, "queries": queries, "dim": dim, "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "mAP": round(result["mAP"], 4)}


def gain(model: str, data: str, test_subset: int | None) -> dict:
    """mAP and R@1 of ``model`` on ``data`` with plain ranking and with re-ranking."""
    from ..data import open_dataset
    from ..engine.evaluation import evaluate_models
    from ..io.run_dir import load_retrieval

    dataset = open_dataset(data).test_subset(test_subset)
    net = load_retrieval(model)
    return {name: evaluate_models(net, dataset, rerank=flag) for name, flag in (("plain", False), ("rerank", True))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="fmnist-open")
    parser.add_argument("--test-subset", type=int, default=None)
    parser.add_argument("--out", default="docs/benchmarks/rerank")
    parser.add_argument("--one-size", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_size:
        print(json.dumps(peak_of_one_size(args.one_size)))
        return
    sizes = [json.loads(subprocess.run([sys.executable, "-m", "capdist.benchmarks.rerank_suite", "--model", "-",
                                        "--one-size", str(n)], capture_output=True, text=True, check=True).stdout)
             for n in SIZES]
    figures = {"model": args.model, "data": args.data, "gain": gain(args.model, args.data, args.test_subset),
               "memory": sizes, "torch_threads": torch.get_num_threads()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "rerank.json", figures)
    plain, rerank = figures["gain"]["plain"], figures["gain"]["rerank"]
    lines = ["# k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)", "",
             f"Reproduce: `python -m capdist.benchmarks.rerank_suite --model {args.model} --data {args.data}`.", "",
             f"## {args.data}: {args.model}", "", "| ranking | mAP | R@1 | mINP |", "|---|---|---|---|",
             *(f"| {name} | {100 * r['mAP']:.2f} | {100 * r['R@1']:.2f} | {100 * r['mINP']:.2f} |"
               for name, r in (("plain (cosine)", plain), ("re-ranked", rerank))), "",
             "## Memory and time (clustered random 512-d embeddings, 3,000 queries, one process per size)", "",
             "| items (queries + gallery) | seconds | peak RSS (GiB) |", "|---|---|---|",
             *(f"| {m['items']:,} | {m['seconds']} | {m['peak_rss_gib']} |" for m in sizes), ""]
    atomic_write_bytes(out / "rerank.md", "\n".join(lines).encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
