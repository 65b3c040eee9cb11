"""Linear centered kernel alignment (CKA) with the unbiased, minibatch HSIC estimator.

Kornblith et al. (2019) compare two representations ``X`` ``[n, p1]`` and
``Y`` ``[n, p2]`` of the same ``n`` examples through their linear Gram matrices
``K = X X^T`` and ``L = Y Y^T``. Nguyen et al. (2021) make this scale to many
examples by averaging the *unbiased* HSIC estimator over minibatches::

    HSIC_1(K, L) = 1 / (n (n - 3)) * [ tr(K~ L~)
                                       + (1^T K~ 1)(1^T L~ 1) / ((n - 1)(n - 2))
                                       - 2 / (n - 2) * 1^T K~ L~ 1 ]

    CKA = mean_i HSIC_1(K_i, L_i) / sqrt(mean_i HSIC_1(K_i, K_i) * mean_i HSIC_1(L_i, L_i))

where ``K~``, ``L~`` are the Gram matrices with zeroed diagonals and ``i`` runs
over minibatches (each needs ``n >= 4`` examples). With a single batch this is
plain (unbiased) linear CKA. The estimator needs no explicit centering and is
invariant to orthogonal transforms and isotropic scaling of either
representation. A representation that is constant over a batch has zero
self-HSIC; CKA against it is reported as NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

MIN_BATCH = 4
"""The unbiased estimator divides by ``n - 3``: minibatches need at least 4 examples."""


@dataclass(frozen=True)
class _GramStats:
    """A Gram matrix with zeroed diagonal plus the sums the estimator needs."""

    gram: Tensor  # K~ [n, n]
    row_sums: Tensor  # K~ 1 [n]
    total: Tensor  # 1^T K~ 1 []

    @classmethod
    def of(cls, features: Tensor) -> "_GramStats":
        x = features.reshape(features.shape[0], -1).to(torch.float64)
        gram = x @ x.t()
        gram.fill_diagonal_(0.0)
        row_sums = gram.sum(dim=1)
        return cls(gram, row_sums, row_sums.sum())


def _hsic_from_stats(k: _GramStats, l: _GramStats) -> Tensor:
    """Unbiased HSIC_1 of two prepared Gram matrices (both symmetric)."""
    n = k.gram.shape[0]
    trace_kl = (k.gram * l.gram).sum()  # tr(K~ L~) for symmetric matrices
    sums = k.total * l.total / ((n - 1) * (n - 2))
    cross = 2.0 / (n - 2) * (k.row_sums @ l.row_sums)  # 1^T K~ L~ 1
    return (trace_kl + sums - cross) / (n * (n - 3))


def hsic_unbiased(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased HSIC_1 estimate between features ``x`` ``[n, ...]`` and ``y`` ``[n, ...]`` (linear kernel)."""
    _check_batch(x.shape[0], y.shape[0])
    return _hsic_from_stats(_GramStats.of(x), _GramStats.of(y))


def linear_cka(x: Tensor, y: Tensor) -> Tensor:
    """Linear CKA of one batch of features ``x`` ``[n, ...]`` and ``y`` ``[n, ...]`` (float64 scalar)."""
    cka = MinibatchCKA(1, 1)
    cka.update([x], [y])
    return cka.compute()[0, 0]


def _check_batch(n_x: int, n_y: int) -> None:
    if n_x != n_y:
        raise ValueError(f"Both representations must describe the same examples (got {n_x} and {n_y} rows).")
    if n_x < MIN_BATCH:
        raise ValueError(f"The unbiased HSIC estimator needs at least {MIN_BATCH} examples per batch (got {n_x}).")


class MinibatchCKA:
    """Accumulates minibatch CKA between every layer of one model (X) and every layer of another (Y).

    Call :meth:`update` once per minibatch with the representations of the same
    examples; :meth:`compute` returns the ``[num_x, num_y]`` CKA matrix. The
    accumulators are plain sums (the 1/k of the batch mean cancels), so they can
    be summed across processes before :meth:`compute` (see :attr:`state`).

    Args:
        num_x: number of representations (layers) on the X side.
        num_y: number of representations (layers) on the Y side.
    """

    def __init__(self, num_x: int, num_y: int) -> None:
        self.num_x, self.num_y = num_x, num_y
        self.cross = torch.zeros(num_x, num_y, dtype=torch.float64)  # sum_i HSIC(K_i^a, L_i^b)
        self.self_x = torch.zeros(num_x, dtype=torch.float64)  # sum_i HSIC(K_i^a, K_i^a)
        self.self_y = torch.zeros(num_y, dtype=torch.float64)  # sum_i HSIC(L_i^b, L_i^b)
        self.batches = 0

    def update(self, xs: Sequence[Tensor], ys: Sequence[Tensor]) -> None:
        """Add one minibatch: ``xs[a]`` ``[n, p_a]`` and ``ys[b]`` ``[n, q_b]`` describe the same ``n`` examples."""
        if len(xs) != self.num_x or len(ys) != self.num_y:
            raise ValueError(f"Expected {self.num_x} X and {self.num_y} Y representations, got {len(xs)} and {len(ys)}.")
        for x in xs:
            _check_batch(x.shape[0], ys[0].shape[0])
        kx = [_GramStats.of(x) for x in xs]
        ky = [_GramStats.of(y) for y in ys]
        for a, k in enumerate(kx):
            self.self_x[a] += _hsic_from_stats(k, k).cpu()
            for b, l in enumerate(ky):
                self.cross[a, b] += _hsic_from_stats(k, l).cpu()
        for b, l in enumerate(ky):
            self.self_y[b] += _hsic_from_stats(l, l).cpu()
        self.batches += 1

    @property
    def state(self) -> list[Tensor]:
        """The sum accumulators (to be all-reduced with ``sum`` under DDP, in place)."""
        return [self.cross, self.self_x, self.self_y]

    def compute(self) -> Tensor:
        """The ``[num_x, num_y]`` CKA matrix (NaN where a representation had zero self-HSIC)."""
        if self.batches == 0:
            raise RuntimeError("MinibatchCKA.compute() called before any update().")
        denominator = torch.sqrt(self.self_x[:, None] * self.self_y[None, :])
        return torch.where(denominator > 0, self.cross / denominator, torch.full_like(self.cross, float("nan")))
