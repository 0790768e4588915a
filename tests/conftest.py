import warnings

import pytest
import torch

warnings.filterwarnings("ignore", category=UserWarning, module="torch_pruning")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    torch.set_num_threads(2)
