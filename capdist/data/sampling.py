"""Deterministic batches (shuffled, or P x K: P identities of K images) as a ``torch.utils.data``
batch sampler.

The batch order of an epoch derives from ``(seed, epoch)`` alone and each item carries an
augmentation key derived from ``(seed, step, position in the global batch)``, so a run resumed
at any step sees exactly the batches and augmentations an uninterrupted one would, whatever the
number of loader workers, and DDP ranks take disjoint slices of the same global batch.

Building an epoch costs O(images): identities are grouped once, and the P x K batches are
dealt from a shuffled list of K-image groups.

Example:
    >>> import torch
    >>> sampler = IdentityBatchSampler(torch.tensor([0, 0, 1, 1, 2, 2]), batch_size=4, seed=0, instances=2)
    >>> len(sampler), len(sampler.epoch(0)[0])
    (1, 4)
"""

from __future__ import annotations

from collections import deque

import torch
from torch.utils.data import Sampler

KEY_SLOTS = 1 << 16


def augmentation_key(seed: int, step: int, slot: int) -> int:
    """The seed of one item's augmentation: run seed, global step, position in the global batch."""
    return ((seed * 1_000_003 + step) * KEY_SLOTS) + slot


class IdentityBatchSampler(Sampler[list[tuple[int, int]]]):
    """Global batches for each epoch: shuffled, or identity-balanced P x K, sliced per rank.

    With fewer identities than P (class-level data such as Fashion-MNIST), P is the number of
    identities and K grows to fill the batch. An identity with fewer than K images is topped up
    by drawing its images again; each identity contributes ``max(1, n_images // K)`` groups per
    epoch and an epoch has ``groups // P`` batches.

    Iterating yields this rank's share of each batch as ``(index, augmentation key)`` pairs,
    starting at the batch given to :meth:`set_epoch`.

    Args:
        pids: identity (class) of every training item.
        batch_size: global batch size (all ranks together).
        seed: base seed.
        instances: K for P x K sampling (0 = plain shuffling).
        rank: this process's rank.
        world_size: number of processes sharing each global batch.

    Raises:
        ValueError: the batch is not a multiple of K or cannot be split across the ranks.
    """

    def __init__(self, pids: torch.Tensor, batch_size: int, seed: int = 0, instances: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        self.pids = torch.as_tensor(pids).long()
        self.batch_size = batch_size
        self.seed = seed
        self.instances = instances
        self.rank, self.world_size = rank, world_size
        if instances and batch_size % instances:
            raise ValueError(f"batch size {batch_size} is not a multiple of K={instances}")
        if batch_size < world_size:
            raise ValueError(f"batch size {batch_size} is smaller than the {world_size} processes")
        self._epoch, self._start = 0, 0
        self._cache: tuple[int, list[torch.Tensor]] | None = None
        self.builds = 0
        if instances:
            order = torch.argsort(self.pids, stable=True)
            ids, counts = torch.unique_consecutive(self.pids[order], return_counts=True)
            self._ids, self._counts = ids, counts
            self._starts = torch.cumsum(counts, 0) - counts
            self._members = torch.split(order, counts.tolist())
            self.p = min(batch_size // instances, len(ids))
            self.k = batch_size // self.p
            groups = int(torch.clamp(counts // self.k, min=1).sum())
            self._len = max(1, groups // self.p)
        else:
            n = len(self.pids)
            self._len = max(1, n // batch_size)

    def __len__(self) -> int:
        return self._len

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate ``epoch`` from its batch ``start`` next (what a resumed run needs)."""
        self._epoch, self._start = epoch, start

    def epoch(self, epoch: int) -> list[torch.Tensor]:
        """The global batches of ``epoch`` as index tensors (built once per epoch, then reused)."""
        if self._cache is None or self._cache[0] != epoch:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            batches = self._pk(gen) if self.instances else self._shuffled(gen)
            self._cache = (epoch, batches)
            self.builds += 1
        return self._cache[1]

    def __iter__(self):
        batches = self.epoch(self._epoch)
        per_rank = len(batches[0]) // self.world_size
        lo, hi = self.rank * per_rank, (self.rank + 1) * per_rank
        for i in range(self._start, len(batches)):
            step = self._epoch * self._len + i
            yield [(int(idx), augmentation_key(self.seed, step, slot))
                   for slot, idx in enumerate(batches[i][lo:hi].tolist(), start=lo)]

    def _shuffled(self, gen: torch.Generator) -> list[torch.Tensor]:
        order = torch.randperm(len(self.pids), generator=gen)
        if len(order) < self.batch_size:
            return [order]
        return list(order[:self._len * self.batch_size].view(self._len, self.batch_size))

    def _groups(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """K-image groups of this epoch: (G, K) indices, their identity and their rank within it."""
        k = self.k
        perm = torch.randperm(len(self.pids), generator=gen)
        shuffled = perm[torch.argsort(self.pids[perm], stable=True)]     # each identity's images, shuffled
        per_id = self._counts // k
        owner = torch.repeat_interleave(torch.arange(len(per_id)), per_id)
        rank = torch.arange(len(owner)) - torch.repeat_interleave(torch.cumsum(per_id, 0) - per_id, per_id)
        offsets = self._starts[owner] + rank * k
        groups = shuffled[offsets.unsqueeze(1) + torch.arange(k)]
        small = torch.nonzero(per_id == 0).flatten().tolist()            # fewer than K images: draw again
        if small:
            extra = torch.stack([self._members[i][torch.randint(int(self._counts[i]), (k,), generator=gen)]
                                 for i in small])
            groups = torch.cat([groups, extra])
            owner = torch.cat([owner, torch.tensor(small, dtype=torch.long)])
            rank = torch.cat([rank, torch.zeros(len(small), dtype=torch.long)])
        return groups, owner, rank

    def _pk(self, gen: torch.Generator) -> list[torch.Tensor]:
        k, p = self.k, self.p
        groups, owner_t, rank = self._groups(gen)
        owners = owner_t.tolist()
        # Deal groups in rounds (the j-th group of every identity in round j, rounds shuffled
        # inside), so consecutive groups belong to different identities; a group whose identity
        # is already in the batch waits for the next batch.
        key = rank.double() + torch.rand(len(groups), generator=gen, dtype=torch.double)
        batches: list[torch.Tensor] = []
        batch: list[int] = []
        waiting: deque[int] = deque()

        def place(g: int) -> bool:
            if any(owners[b] == owners[g] for b in batch):
                return False
            batch.append(g)
            if len(batch) == p:
                batches.append(groups[batch].flatten())
                batch.clear()
            return True

        for g in torch.argsort(key).tolist():
            if not place(g):
                waiting.append(g)
            elif not batch:
                for _ in range(len(waiting)):
                    w = waiting.popleft()
                    if not place(w):
                        waiting.append(w)
        # Skewed data (one identity owning most groups) can leave groups that no batch of
        # distinct identities takes: the remaining batches draw P identities afresh.
        while len(batches) < self._len:
            chosen = torch.randperm(len(self._members), generator=gen)[:p].tolist()
            batches.append(torch.cat([self._members[c][torch.randint(len(self._members[c]), (k,), generator=gen)]
                                      for c in chosen]))
        return batches[:self._len]
