"""The dataset tests run their small models on one thread: on a loaded 2-core machine two OpenMP threads
per tiny LSTM step cost ten times more than they save (the numbers agree to 1e-7 either way)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
