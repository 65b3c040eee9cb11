"""Learner tests use tiny tensors: one intra-op thread avoids oversubscribing shared CPUs."""

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
