"""Fixtures of the benchmark tests: tiny saccade-digit data (benchmark_helpers.py has the specs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning_local.data.saccade_digits import ensure_saccade_digits

@pytest.fixture(scope="session")
def tiny_digits(tmp_path_factory) -> Path:
    """100 saccade-digit recordings (10 per class) in their own folder (the user's cache is left alone)."""
    root = tmp_path_factory.mktemp("digits")
    ensure_saccade_digits(root, max_samples_per_class=10)
    return root
