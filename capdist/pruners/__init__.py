"""Baseline structured pruners on torch-pruning behind one interface, with a FLOPs-target search."""

from .baselines import METHODS, PruneResult, prune_to_flops, replay_history

__all__ = ["METHODS", "PruneResult", "prune_to_flops", "replay_history"]
