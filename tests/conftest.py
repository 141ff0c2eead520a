import os

import pytest
import torch

os.environ.setdefault("MI_PROGRESS", "0")
if "OMP_NUM_THREADS" not in os.environ:  # an explicit thread count (e.g. beside other jobs) wins
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
