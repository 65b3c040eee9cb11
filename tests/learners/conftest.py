"""Learner tests use tiny tensors: every one of them runs on one intra-op thread (see tests/conftest.py)."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Apply the shared ``single_thread`` fixture to every learner test."""
    yield
