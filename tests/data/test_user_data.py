"""A user's datasets and loaders are taken as given."""

import json

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from capdist.data.user import LabeledImages, from_datasets


class Counted(Dataset):
    """Images 3x8x8 with labels in ``targets`` (as torchvision datasets have); counts decoded items."""

    def __init__(self, labels, camids=None):
        self.targets = list(labels)
        if camids is not None:
            self.camids = list(camids)
        self.decoded = 0

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        self.decoded += 1
        return torch.full((3, 8, 8), float(i)), self.targets[i]


def test_labels_come_from_targets_without_decoding_any_image():
    data = Counted([7, 3, 7, 9])
    images = LabeledImages(data)
    assert data.decoded == 0 and images.pids.tolist() == [1, 0, 1, 2]


def test_separate_query_and_gallery_with_cameras_is_the_reid_protocol():
    train, query, gallery = Counted([0, 1, 0, 1]), Counted([5, 6], [0, 1]), Counted([6, 5, 8], [0, 1, 1])
    data = from_datasets(train, query, gallery)
    assert data.protocol == "reid" and not data.leave_one_out
    assert data.query.pids.tolist() == [0, 1] and data.gallery.pids.tolist() == [1, 0, 2]  # one id space
    assert data.gallery.camids.tolist() == [0, 1, 1] and from_datasets(train, query).protocol == "class"


def test_a_loader_trains_with_its_own_batches_and_labels_remapped():
    x, y = torch.randn(12, 3, 8, 8), torch.tensor([4, 9] * 6)
    loader = DataLoader(TensorDataset(x, y), batch_size=5, shuffle=False)
    data = from_datasets(loader)
    batches = list(data.train_loader)
    assert len(data.train_loader) == 3 and [len(b[1]) for b in batches] == [5, 5, 2]
    assert torch.equal(batches[0][0], x[:5]) and batches[0][1].tolist() == [0, 1, 0, 1, 0]
    data.train_loader.set_epoch(0, start=2)  # a resumed run skips what it saw
    assert [len(b[1]) for b in data.train_loader] == [2]


def test_the_python_api_trains_on_the_users_loader_as_given(tmp_path):
    import capdist
    from capdist.data import open_dataset
    from capdist.testing import TinyResNet

    digits = open_dataset("digits")
    train = TensorDataset(digits.train.images[:96], digits.train.pids[:96])
    loader = DataLoader(train, batch_size=24, shuffle=True, generator=torch.Generator().manual_seed(0))
    model = torch.nn.Sequential(TinyResNet(width=8), torch.nn.Flatten())
    capdist.prune(model, loader, "magnitude", 0.6, test_data=TensorDataset(digits.query.images[:60],
                                                                           digits.query.pids[:60]),
                  finetune_epochs=2, log_every=1, out=tmp_path / "run", latency_repeats=1, device="cpu")
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "finetune" / "metrics.jsonl").open()]
    assert steps == list(range(1, 2 * len(loader) + 1))  # 4 batches of 24 per epoch, not capdist's P x K
