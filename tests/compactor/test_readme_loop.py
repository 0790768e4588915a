"""The README's own-training-loop snippet, run as printed, reaches its FLOPs target."""

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision

from capdist.compactor.cost import fvcore_by_module
from capdist.data import open_dataset

README = Path(__file__).resolve().parents[2] / "README.md"


def _snippet() -> str:
    text = README.read_text()
    section = text[text.index("**Your own training loop**"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_loop_reaches_its_target_on_digits_with_resnet18():
    torch.manual_seed(0)
    digits = open_dataset("digits")
    images, labels = digits.train.images, digits.train.pids
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=64,
                                         shuffle=True, drop_last=True)
    model = torchvision.models.resnet18(num_classes=digits.num_classes)
    scope = {"torch": torch, "model": model, "example_inputs": images[:2], "loader": loader,
             "criterion": F.cross_entropy, "epochs": 4, "real_batch": images[:32]}
    code = _snippet()
    assert "until=" in code and "schedule.check_reached()" in code
    exec(compile(code, str(README), "exec"), scope)  # noqa: S102 - the README's snippet, as printed
    res = scope["res"]
    original = fvcore_by_module(torchvision.models.resnet18(num_classes=digits.num_classes), (images[:1],))[""]
    pruned = fvcore_by_module(res.model, (images[:1],))[""]
    assert scope["schedule"].reached() and pruned <= 0.35 * original * 1.001
    assert res.rel_diff < 1e-4
