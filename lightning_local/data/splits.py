"""Seeded, class-stratified index splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_split(
    labels: Sequence[int], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split indices into (kept, carved) with ``fraction`` of every class carved out.

    Per class with ``n`` samples, ``round(fraction * n)`` samples are carved, but
    at least one when ``fraction > 0`` and the class has two or more samples, and
    always leaving at least one sample kept. Which ones is decided by a
    ``numpy.random.default_rng(seed)`` permutation per class (classes visited in
    sorted order), so one seed always gives the same split.

    Args:
        labels: Class label of each sample.
        fraction: Share of each class to carve out, in ``[0, 1)``.
        seed: Seed of the permutation.

    Returns:
        Two sorted index lists, ``kept`` and ``carved``; disjoint, together all indices.
    """
    labels_arr = np.asarray(labels)
    rng = np.random.default_rng(seed)
    kept: list[int] = []
    carved: list[int] = []
    for label in np.unique(labels_arr):
        members = np.flatnonzero(labels_arr == label)
        members = members[rng.permutation(len(members))]
        n_carved = int(round(fraction * len(members)))
        if fraction > 0 and len(members) >= 2:
            n_carved = min(max(n_carved, 1), len(members) - 1)
        carved.extend(members[:n_carved].tolist())
        kept.extend(members[n_carved:].tolist())
    return sorted(kept), sorted(carved)
