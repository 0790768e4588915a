"""Why RGGR's unanimous vote rarely fires: for a trained teacher's pooled features at every compacted
group, the share of units that are in the lowest ``ratio`` of contributions for *every* sample and
neighbour of a batch (the rule of CDD's RGGR), and for at least 90% of them, by batch size.

Run: ``python -m capdist.benchmarks.rggr_votes RUN_DIR DATA`` (a teacher run directory and its data).
"""

from __future__ import annotations

import sys

import torch

from ..compactor import CompactorConfig, attach
from ..compactor.retrieval_schedule import low_votes
from ..data import open_dataset
from ..distill import FeatureCapture
from ..io.run_dir import load_retrieval


def vote_shares(run_dir: str, data_spec: str, batches: tuple[int, ...] = (1, 4, 16, 64), k: int = 2,
                ratio: float = 0.5, images: int = 1024) -> dict[int, dict[str, float]]:
    """``{batch: {"unanimous": share, "most": share}}`` over all units of all groups, with the
    student equal to the teacher and the bank holding ``images`` teacher features (the authors' search:
    the teacher feature ranks, so each sample finds itself first)."""
    model = load_retrieval(run_dir).eval()
    data = open_dataset(data_spec)
    x = torch.stack([data.train[i][0] for i in range(min(images, len(data.train)))])
    cm = attach(model, x[:2], CompactorConfig(scope="all"))
    model.eval()
    names = {g.name: g.spec.anchors[0] for g in cm.groups}
    capture = FeatureCapture(model, list(names.values()), pool=True)
    with torch.no_grad():
        feats = {g: [] for g in names}
        for chunk in x.split(256):
            model(chunk)
            for g, n in names.items():
                feats[g].append(capture.features[n])
    bank = {g: torch.cat(f) for g, f in feats.items()}
    result = {}
    for b in batches:
        unanimous = most = total = 0
        for group in cm.groups:
            f = bank[group.name]
            q = f[:b]
            share_low = low_votes(q, f, k, ratio, group.spec.period, rank_by=q).flatten(0, 1).float().mean(0)
            unanimous += int((share_low == 1).sum())
            most += int((share_low >= 0.9).sum())
            total += group.spec.period
        result[b] = {"unanimous": unanimous / total, "most": most / total}
    capture.remove()
    return result


def main() -> None:
    run_dir, data_spec = sys.argv[1], sys.argv[2]
    print("| batch | units low for every sample and neighbour | units low for at least 90% of them |")
    print("|---|---|---|")
    for b, s in vote_shares(run_dir, data_spec).items():
        print(f"| {b} | {s['unanimous']:.1%} | {s['most']:.1%} |")


if __name__ == "__main__":
    main()
