"""Deterministic batches and augmentation (CDD, CVPR 2023 trains with P x K identity batches).

Every random choice derives from ``(seed, epoch)`` for the batch order and from
``(seed, step)`` for augmentation, so a run resumed at any step sees exactly the
batches and augmentations an uninterrupted run would, and DDP ranks take disjoint
slices of the same global batch.

Example:
    >>> import torch
    >>> plan = BatchPlan(torch.tensor([0, 0, 1, 1, 2, 2]), batch_size=4, seed=0)
    >>> len(plan.epoch(0))
    1
"""

from __future__ import annotations

import torch


class BatchPlan:
    """Global batches for each epoch: shuffled, or identity-balanced P x K.

    With fewer identities than P (class-level data such as Fashion-MNIST), P is the
    number of identities and K grows to fill the batch. Every epoch has
    ``len(pids) // (P * K)`` batches; identities whose images run out are refilled.

    Args:
        pids: identity (class) of every training item.
        batch_size: global batch size (all ranks together).
        seed: base seed.
        instances: K for P x K sampling (0 = plain shuffling).
        drop_last: drop an incomplete final batch.
    """

    def __init__(self, pids: torch.Tensor, batch_size: int, seed: int = 0, instances: int = 0,
                 drop_last: bool = True) -> None:
        self.pids = pids.long()
        self.batch_size = batch_size
        self.seed = seed
        self.instances = instances
        self.drop_last = drop_last
        if instances and batch_size % instances:
            raise ValueError(f"batch size {batch_size} is not a multiple of K={instances}")

    def epoch(self, epoch: int) -> list[torch.Tensor]:
        """The global batches of ``epoch`` (index tensors)."""
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        if not self.instances:
            order = torch.randperm(len(self.pids), generator=gen)
            return self._chunks(order)
        ids = torch.unique(self.pids)
        p = min(self.batch_size // self.instances, len(ids))
        k = self.batch_size // p
        def groups_of(pid: int) -> list[torch.Tensor]:
            idx = torch.nonzero(self.pids == pid).flatten()
            idx = idx[torch.randperm(len(idx), generator=gen)]
            if len(idx) < k:
                idx = idx[torch.randint(len(idx), (k,), generator=gen)]
            return [idx[i:i + k] for i in range(0, len(idx) - k + 1, k)]

        pools = {int(pid): groups_of(int(pid)) for pid in ids}
        batches = []
        for _ in range(max(1, len(self.pids) // (p * k))):
            avail = [pid for pid, groups in pools.items() if groups]
            if len(avail) < p:
                for pid in pools:
                    if not pools[pid]:
                        pools[pid] = groups_of(pid)
                avail = list(pools)
            chosen = [avail[i] for i in torch.randperm(len(avail), generator=gen)[:p].tolist()]
            batches.append(torch.cat([pools[pid].pop() for pid in chosen]))
        return batches

    def _chunks(self, order: torch.Tensor) -> list[torch.Tensor]:
        n = len(order)
        end = n - n % self.batch_size if self.drop_last else n
        chunks = [order[i:i + self.batch_size] for i in range(0, end, self.batch_size)]
        return chunks if chunks else [order]

    def steps_per_epoch(self) -> int:
        return len(self.epoch(0))


def augment(images: torch.Tensor, step: int, seed: int = 0, pad: int = 2, flip: bool = True,
            erase: float = 0.0) -> torch.Tensor:
    """Pad-and-crop, horizontal flip and random erasing on a batch, seeded by ``step``.

    Args:
        images: (B, C, H, W) float batch.
        step: global step (seeds the generator).
        seed: run seed.
        pad: zero padding before the random crop back to (H, W).
        flip: flip half the images horizontally.
        erase: probability of erasing one random rectangle per image.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    b, _, h, w = images.shape
    out = images
    if pad:
        padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        rows = (dy.view(b, 1) + torch.arange(h)).view(b, 1, h, 1).expand(b, images.shape[1], h, w + 2 * pad)
        out = padded.gather(2, rows)
        cols = (dx.view(b, 1) + torch.arange(w)).view(b, 1, 1, w).expand(b, images.shape[1], h, w)
        out = out.gather(3, cols)
    if flip:
        mask = torch.rand(b, generator=gen) < 0.5
        out = torch.where(mask.view(b, 1, 1, 1), out.flip(3), out)
    if erase > 0:
        out = out.clone()
        hit = torch.rand(b, generator=gen) < erase
        eh = torch.randint(h // 4, h // 2 + 1, (b,), generator=gen)
        ew = torch.randint(w // 4, w // 2 + 1, (b,), generator=gen)
        y0 = (torch.rand(b, generator=gen) * (h - eh + 1)).long()
        x0 = (torch.rand(b, generator=gen) * (w - ew + 1)).long()
        for i in torch.nonzero(hit).flatten().tolist():
            out[i, :, y0[i]:y0[i] + eh[i], x0[i]:x0[i] + ew[i]] = 0.0
    return out
