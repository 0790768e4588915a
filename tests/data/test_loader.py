"""The loader pipeline: P x K sampler (once per epoch, O(images), sharded), per-image keyed
augmentation independent of workers, lazy decoding equal to the cache, flip test-time augmentation."""

import statistics
import time

import pytest
import torch
from torch import nn

from capdist.data import Augment, IdentityBatchSampler, TensorImages, eval_loader, open_dataset, train_loader
from capdist.engine import TrainConfig, Trainer
from capdist.engine.evaluation import encode
from capdist.testing.folders import write_reid_folder


def test_ranks_take_disjoint_slices_of_the_same_global_batch_with_the_same_keys():
    pids = torch.arange(64) % 8
    whole = list(IdentityBatchSampler(pids, 16, seed=1, instances=4))
    parts = [list(IdentityBatchSampler(pids, 16, seed=1, instances=4, rank=r, world_size=2)) for r in (0, 1)]
    assert len(whole) == len(parts[0]) == len(parts[1]) == 4
    for batch, a, b in zip(whole, *parts, strict=True):
        assert a + b == batch


def test_set_epoch_start_resumes_inside_an_epoch():
    sampler = IdentityBatchSampler(torch.arange(60) % 6, 12, seed=2, instances=3)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_epoch(3, start=2)
    assert list(sampler) == full[2:]
    sampler.set_epoch(4)
    assert list(sampler) != full


def test_skewed_identities_still_give_batches_of_distinct_identities():
    pids = torch.tensor([0] * 90 + [1, 1, 2, 2, 3, 3, 4, 4])
    sampler = IdentityBatchSampler(pids, 8, seed=0, instances=2)
    batches = sampler.epoch(0)
    assert len(batches) == len(sampler) == (45 + 4) // 4
    for b in batches:
        assert len(b) == 8 and sorted(torch.bincount(pids[b], minlength=5).tolist())[-4:] == [2, 2, 2, 2]


def test_sampler_is_built_once_per_epoch_during_training(tmp_path):
    data = TensorImages(torch.randn(48, 3, 8, 8), torch.arange(48) % 6)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 6))
    cfg = TrainConfig(epochs=3, batch_size=12, instances=4, progress=False, warmup_epochs=0)
    trainer = Trainer(model, lambda m, x, y, s: {"loss": nn.functional.cross_entropy(m(x), y)}, data, cfg, tmp_path)
    trainer.fit()
    assert trainer.steps_per_epoch == 4 and trainer.step == 12
    assert trainer.sampler.builds == 3


def _build_seconds(pids: torch.Tensor) -> float:
    times = []
    for epoch in range(3):
        sampler = IdentityBatchSampler(pids, 64, seed=0, instances=4)
        t0 = time.perf_counter()
        sampler.epoch(epoch)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@pytest.mark.slow
def test_sampler_cost_follows_images_not_images_times_identities():
    """Side by side, same images: 100x the identities costs far less than 100x the time (the old
    plan scanned every image for every identity: 28x slower from 751 to 11,318 identities; alone on
    this machine the sampler's ratio is about 1.1, the bound leaves room for a busy one). Medians of
    interleaved rounds, so a load spike does not land on one case only."""
    n = 40_000
    cases = {"few": torch.arange(n) % 100, "many": torch.arange(n) % 10_000, "more images": torch.arange(8 * n) % 100}
    rounds = {name: [] for name in cases}
    for _ in range(3):
        for name, pids in cases.items():
            rounds[name].append(_build_seconds(pids))
    few, many, more = (statistics.median(rounds[name]) for name in cases)
    assert many < 8 * few, (few, many)
    assert more > 1.3 * few, (few, more)  # the timing sees the images: 8x of them cost more


def test_augmentation_does_not_depend_on_workers():
    data = TensorImages(torch.randn(32, 3, 12, 10), torch.arange(32) % 4)
    batches = {}
    for workers in (0, 2):
        sampler = IdentityBatchSampler(data.pids, 8, seed=5, instances=2)
        sampler.set_epoch(1)
        loader = train_loader(data, sampler, Augment(pad=2, flip=True, erase=0.5), workers=workers)
        batches[workers] = [images for images, _ in loader]
    assert len(batches[0]) == 4
    for a, b in zip(batches[0], batches[2], strict=True):
        assert torch.equal(a, b)
    raw = torch.stack([data[i][0] for i in sampler.epoch(1)[0].tolist()])
    assert not torch.equal(batches[0][0], raw)


def test_random_erasing_zeroes_a_rectangle_of_two_to_forty_percent():
    x = torch.ones(3, 32, 16)
    aug = Augment(erase=1.0)
    for key in range(20):
        out = aug(x, key)
        zero = (out == 0).all(0)
        rows, cols = zero.any(1).sum().item(), zero.any(0).sum().item()
        assert zero.sum() == rows * cols
        assert 0.02 * 512 * 0.5 <= zero.sum() <= 0.4 * 512 * 1.5


def test_lazy_folder_equals_cached_folder_and_resizes(tmp_path):
    root = write_reid_folder(tmp_path / "m", train_ids=3, test_ids=2, per_id=3, size=(40, 20))
    lazy = open_dataset(f"reid:{root}", image_size="24x12")
    cached = open_dataset(f"reid:{root}", image_size=(24, 12), cache_images=True)
    assert lazy.train.lazy and not cached.train.lazy
    assert lazy.image_shape == (3, 24, 12) and len(lazy.train) == 9
    for i in range(len(lazy.train)):
        a, b = lazy.train[i], cached.train[i]
        assert a[0].shape == (3, 24, 12) and torch.allclose(a[0], b[0]) and a[1:] == b[1:]


def test_in_memory_data_resizes_on_access():
    data = open_dataset("digits", image_size="20x12")
    assert data.image_shape == (3, 20, 12) and data.train[0][0].shape == (3, 20, 12)
    images = next(iter(eval_loader(data.query, batch_size=4)))[0]
    assert images.shape == (4, 3, 20, 12)


def test_flip_test_time_augmentation_averages_the_mirror():
    data = TensorImages(torch.randn(10, 3, 6, 6), torch.arange(10) % 2)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    plain, flipped = encode(net, data, batch_size=4), encode(net, data, batch_size=4, flip=True)
    with torch.no_grad():
        expected = (net(data.images) + net(data.images.flip(3))) / 2
    assert torch.allclose(flipped, expected, atol=1e-6) and not torch.allclose(plain, flipped)
