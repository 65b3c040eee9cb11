"""Learners the tests name by class path."""

from __future__ import annotations

from lightning_local.plugins.bptt import BPTT


class NoSearchSpace(BPTT):
    """BPTT as a third-party rule that declares no search space (``tune`` must ask for ``--space``)."""

    name = "no_space"
    search_space = {}
