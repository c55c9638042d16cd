"""Scoring tests use tiny arrays: one intra-op thread avoids OpenMP spin-waits on a loaded machine."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
