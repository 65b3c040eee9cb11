"""Fixtures of the analysis tests (helpers live in analysis_helpers.py; ``nmnist_small`` comes from tests/conftest.py)."""

from __future__ import annotations

import pytest

from analysis_helpers import TinyEvents


@pytest.fixture
def tiny_data() -> TinyEvents:
    data = TinyEvents()
    data.setup("fit")
    return data
