"""Mask schedule B: retrieval-guided gradient resetting (CDD's RGGR, CVPR 2023, arXiv 2303.09230).

For every compacted group, a FIFO bank holds pooled teacher features of the
matching teacher layer. Each observed batch: every student feature (the query)
finds its k nearest teacher features in the bank (cosine, the gallery); the
contribution of channel c to that query-gallery similarity is ``|s_c * g_c|``
(on normalised features); the channels that fall in the lowest ``ratio`` of
contributions for *every* sample and *every* neighbour are masked. Masks only
grow. The paper has no FLOPs target; capdist adds one as a cap (never mask past
it) and :meth:`top_up` finishes with norm ranking when the retrieval signal alone
does not reach it. The cap may be a latency budget instead (then the top-up ranks
by norm per millisecond saved). All of it is vectorised over batch x neighbours x channels.

Example:
    >>> sched = RetrievalSchedule(cm, target=0.35, warmup=500, interval=50)  # doctest: +SKIP
    >>> sched.observe(student_pooled, teacher_pooled)  # dicts: group name -> (B, C)  # doctest: +SKIP
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from .budget import Budget, FlopsBudget, ranking_scores
from .model import ChannelGroup, CompactorModel
from .schedule import COST_NAMES, check_target

log = logging.getLogger("capdist")


def low_votes(query: torch.Tensor, bank: torch.Tensor, k: int, ratio: float, period: int,
              rank_by: torch.Tensor | None = None) -> torch.Tensor:
    """For every query and each of its k nearest bank items, which units are among the lowest ``ratio``
    of contributions ``|s_c * g_c|`` to their similarity.

    Args:
        query: (B, C) student features.
        bank: (N, C) teacher features.
        k: neighbours per query.
        ratio: fraction of units counted as low.
        period: channels per tile (units are ``{b + j*period}``).
        rank_by: (B, C) features that choose the neighbours (the batch's teacher features in
            the authors' search); default: ``query``.

    Returns:
        Bool tensor (B, k, period): True = low for that sample and neighbour.
    """
    q = F.normalize(query.float(), dim=1)
    g = F.normalize(bank.to(query.device).float(), dim=1)
    r = q if rank_by is None else F.normalize(rank_by.to(query.device).float(), dim=1)
    nbr = (r @ g.T).topk(min(k, len(g)), dim=1).indices           # B x k
    contrib = (q.unsqueeze(1) * g[nbr]).abs()                    # B x k x C
    contrib = contrib.view(*contrib.shape[:2], -1, period).sum(2)  # B x k x units
    low_idx = contrib.argsort(dim=2)[..., :int(ratio * period)]   # B x k x n_low
    return torch.zeros_like(contrib, dtype=torch.bool).scatter_(2, low_idx, True)


def low_contribution_units(query: torch.Tensor, bank: torch.Tensor, k: int, ratio: float,
                           period: int, rank_by: torch.Tensor | None = None) -> torch.Tensor:
    """Units whose contribution is in the lowest ``ratio`` for every query and every neighbour
    (:func:`low_votes` unanimous); a bool tensor of length ``period``, True = always low."""
    return low_votes(query, bank, k, ratio, period, rank_by).flatten(0, 1).all(0)


NEIGHBOUR_SEARCHES = ("student", "teacher")


class RetrievalSchedule:
    """CDD's retrieval-guided masks with a FLOPs (or latency) cap.

    Args:
        cm: the compacted model.
        target: cost after surgery as a fraction of the budget's reference (the cap).
        warmup: observed steps before masks start.
        interval: steps between mask updates.
        k: teacher neighbours per sample.
        ratio: fraction of channels counted as low-contribution.
        bank_size: teacher features kept per group (FIFO).
        deadline: step by which the target must be met (None: no pacing). Between
            ``warmup`` and ``deadline`` the allowed cost falls linearly from 100% to the
            target; when retrieval guidance has not masked enough by then, the weakest
            rows by norm are added, a few at a time, so they still have time to decay.
        neighbours: ``"student"`` (the student feature ranks a bank without the batch) or
            ``"teacher"`` (the authors' search: the teacher feature ranks a bank that already
            holds the batch, so the first neighbour is the sample's own teacher feature).
        budget: what the target limits (default: FLOPs).
    """

    def __init__(self, cm: CompactorModel, target: float, warmup: int = 0, interval: int = 1, k: int = 5,
                 ratio: float = 0.5, bank_size: int = 1024, deadline: int | None = None,
                 neighbours: str = "student", budget: Budget | None = None) -> None:
        if neighbours not in NEIGHBOUR_SEARCHES:
            raise ValueError(f"unknown neighbour search '{neighbours}' ({' or '.join(NEIGHBOUR_SEARCHES)})")
        self.budget = budget or FlopsBudget(cm)
        check_target(cm, target, self.budget)
        self.neighbours = neighbours
        self.masked_by = {source: {g.name: 0 for g in cm.groups} for source in ("retrieval", "norm")}
        self.saved = {"retrieval": 0.0, "norm": 0.0}
        self.flops_saved = {"retrieval": 0.0, "norm": 0.0}
        self.history: list[dict] = []
        self.cm = cm
        self.target = target
        self.warmup = warmup
        self.interval = max(1, interval)
        self.k = k
        self.ratio = ratio
        self.bank_size = bank_size
        self.deadline = deadline
        self.steps = 0
        self.banks: dict[str, torch.Tensor] = {}

    def state_dict(self) -> dict:
        return {"steps": self.steps, "banks": {k: v.clone() for k, v in self.banks.items()},
                "masked_by": {s: torch.tensor([n[g.name] for g in self.cm.groups]) for s, n in self.masked_by.items()},
                "saved": torch.tensor([self.saved["retrieval"], self.saved["norm"]], dtype=torch.float64),
                "flops_saved": torch.tensor([self.flops_saved["retrieval"], self.flops_saved["norm"]],
                                            dtype=torch.float64),
                "history": torch.tensor([[h["step"], h["flops"], h["retrieval"], h["norm"], h["cost"]]
                                         for h in self.history], dtype=torch.float64).reshape(-1, 5)}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.banks = {k: v.clone() for k, v in state["banks"].items()}
        for source, counts in state.get("masked_by", {}).items():
            self.masked_by[source] = {g.name: int(n) for g, n in zip(self.cm.groups, counts.tolist(), strict=True)}
        if "saved" in state:
            self.saved = dict(zip(("retrieval", "norm"), state["saved"].tolist(), strict=True))
        if "flops_saved" in state:
            self.flops_saved = dict(zip(("retrieval", "norm"), state["flops_saved"].tolist(), strict=True))
        self.history = [{"step": int(r[0]), "flops": r[1], "retrieval": r[2], "norm": r[3],
                         "cost": r[4] if len(r) > 4 else r[1]}
                        for r in state.get("history", torch.zeros(0, 5)).tolist()]

    needs_features = True

    def step(self, features) -> bool:
        """One optimizer step with the batch's pooled features (``features.student`` and
        ``features.teacher``: group name -> (B, C)); see :meth:`observe`."""
        return self.observe(features.student, features.teacher)

    def complete(self) -> None:
        """Training is over: top the masks up to the target by norm; warn when the top-up, not
        retrieval guidance, made most of the reduction."""
        self.top_up()
        share = self.attribution()["share_of_target"]
        if share["norm"] > share["retrieval"]:
            log.warning("retrieval guidance made %.0f%% of the target's reduction and the norm top-up %.0f%%: these "
                        "masks are mostly ResRep's norm ranking (the report's 'rggr' field has the details)",
                        100 * share["retrieval"], 100 * share["norm"])

    def report(self) -> dict:
        """``{"rggr": attribution()}``."""
        return {"rggr": self.attribution()}

    def attribution(self) -> dict:
        """What retrieval guidance and the norm top-up each masked: units per group and in total,
        the FLOPs each removed (as fractions of the original), their shares of the reduction the
        target asks for (in the budget's cost: FLOPs or latency), and the FLOPs after every mask
        update."""
        wanted = max(1e-12, 1.0 - self.target)
        return {"neighbours": self.neighbours, "k": self.k, "ratio": self.ratio, "cost": self.budget.kind,
                "units": {s: {"total": sum(n.values()), "per_group": dict(n)} for s, n in self.masked_by.items()},
                "flops_removed": {s: round(v, 6) for s, v in self.flops_saved.items()},
                "share_of_target": {s: round(v / wanted, 4) for s, v in self.saved.items()},
                "history": [dict(h) for h in self.history]}

    def _tracked(self, source: str, fn, *args) -> None:
        """Run a masking step and count what it masked under ``source``."""
        before = {g.name: int(g.kept_units().sum()) for g in self.cm.groups}
        flops, cost = self.cm.flops(), self.budget.fraction()
        fn(*args)
        for g in self.cm.groups:
            self.masked_by[source][g.name] += before[g.name] - int(g.kept_units().sum())
        self.flops_saved[source] += (flops - self.cm.flops()) / self.cm.original_flops
        self.saved[source] += cost - self.budget.fraction()

    def _record(self) -> None:
        entry = {"step": self.steps, "flops": self.cm.flops() / self.cm.original_flops,
                 "retrieval": self.saved["retrieval"], "norm": self.saved["norm"], "cost": self.budget.fraction()}
        if not self.history or (entry["flops"], entry["norm"]) != (self.history[-1]["flops"],
                                                                    self.history[-1]["norm"]):
            cost = COST_NAMES.get(self.budget.kind, self.budget.kind)
            also = "" if self.budget.kind == "flops" else f" ({100 * self.budget.fraction():.1f}% of the {cost})"
            log.info("masks at step %d: %.1f%% of the FLOPs%s; removed by retrieval guidance %.1f%%, by norm "
                     "top-up %.1f%% of the %s", entry["step"], 100 * entry["flops"], also, 100 * entry["retrieval"],
                     100 * entry["norm"], cost)
        self.history.append(entry)

    def _within(self, fraction: float | None = None, kept: np.ndarray | None = None) -> bool:
        """Whether the cost (current masks, or ``kept`` widths) is within ``fraction`` (default: the target)."""
        limit = self.target if fraction is None else fraction
        return self.budget.fraction(kept) <= limit * (1 + 1e-9)

    def _push(self, name: str, feats: torch.Tensor) -> None:
        feats = feats.detach().float()
        bank = self.banks.get(name)
        bank = feats if bank is None else torch.cat([bank, feats])
        self.banks[name] = bank[-self.bank_size:]

    @torch.no_grad()
    def observe(self, student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]) -> bool:
        """Feed one batch of pooled features (group name -> (B, C)); update masks when due.

        With ``neighbours="student"`` the bank is updated after the batch's queries are scored,
        so a sample never finds its own teacher feature; with ``"teacher"`` before, and the
        teacher features rank it. Returns True if masks were updated.
        """
        self.steps += 1
        official = self.neighbours == "teacher"
        if official:
            self._push_all(teacher)
        due = self.steps >= self.warmup and (self.steps - self.warmup) % self.interval == 0
        if due:
            self.update(student, teacher if official else None)
            if self.deadline is not None:
                span = max(1, self.deadline - self.warmup)
                progress = min(1.0, (self.steps - self.warmup) / span)
                self.top_up(1.0 - (1.0 - self.target) * progress)
            self._record()
        if not official:
            self._push_all(teacher)
        return due

    def _push_all(self, teacher: dict[str, torch.Tensor]) -> None:
        for g in self.cm.groups:
            if g.name in teacher:
                self._push(g.name, teacher[g.name])

    def _finish(self, group: ChannelGroup, kept_units: torch.Tensor, fresh: torch.Tensor) -> None:
        """Set the mask, un-masking the strongest of this update's ``fresh`` units to an allowed width."""
        n = int(kept_units.sum())
        extra = self.cm.allowed_units(group, n, floor=0) - n
        if extra > 0:
            norms = group.unit_norms().masked_fill(~fresh, float("-inf"))
            kept_units[norms.argsort(descending=True)[:extra]] = True
        group.set_mask(group.units_to_mask(kept_units))

    @torch.no_grad()
    def update(self, student: dict[str, torch.Tensor], rank_by: dict[str, torch.Tensor] | None = None) -> None:
        """Mask the always-low units of every group, weakest first, until the FLOPs cap is reached.

        ``rank_by`` (group name -> (B, C) teacher features) chooses the neighbours instead of the
        student features (the authors' search)."""
        self._tracked("retrieval", self._update, student, rank_by or {})

    def _update(self, student: dict[str, torch.Tensor], rank_by: dict[str, torch.Tensor]) -> None:
        for g in self.cm.groups:
            if self._within():
                return
            bank = self.banks.get(g.name)
            if bank is None or g.name not in student or len(bank) == 0:
                continue
            low = low_contribution_units(student[g.name], bank, self.k, self.ratio, g.spec.period,
                                         rank_by.get(g.name)).cpu()
            kept_units = g.kept_units()
            fresh = torch.zeros_like(kept_units)
            floor = self.cm.min_units(g)
            for u in g.unit_norms().argsort().tolist():
                if not (low[u] and kept_units[u]) or int(kept_units.sum()) - 1 < floor:
                    continue
                kept_units[u] = False
                fresh[u] = True
                g.set_mask(g.units_to_mask(kept_units))
                if self._within():
                    break
            self._finish(g, kept_units, fresh)

    @torch.no_grad()
    def top_up(self, fraction: float | None = None) -> None:
        """Reach ``fraction`` (default: the target) of the budget by norm ranking (per unit of cost
        saved, under a latency budget) when retrieval guidance alone did not (masks only grow)."""
        self._tracked("norm", self._top_up, fraction)

    def _top_up(self, fraction: float | None) -> None:
        if self._within(fraction):
            return
        groups = self.cm.groups
        kept = [g.kept_units() for g in groups]
        fresh = [torch.zeros_like(k) for k in kept]
        floors = [self.cm.min_units(g) for g in groups]
        sizes = [g.spec.unit_size for g in groups]
        norms = [np.where(k.numpy(), g.unit_norms().numpy(), -np.inf) for g, k in zip(groups, kept, strict=True)]
        scores = ranking_scores(norms, self.budget.unit_savings(), self.cm.config.allocation == "uniform")
        candidates = sorted((float(n), gi, u) for gi, g in enumerate(groups)
                            for u, n in enumerate(scores[gi].tolist()) if kept[gi][u])
        for _, gi, u in candidates:
            if int(kept[gi].sum()) - 1 < floors[gi]:
                continue
            kept[gi][u] = False
            fresh[gi][u] = True
            widths = [self.cm.allowed_units(g, int(k.sum()), floor=0) * s
                      for g, k, s in zip(groups, kept, sizes, strict=True)]
            if self._within(fraction, np.array(widths, dtype=float)):
                break
        for g, k, f in zip(groups, kept, fresh, strict=True):
            self._finish(g, k, f)
