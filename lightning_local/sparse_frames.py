"""Binary input frames held sparse, and the first layer's projection of them.

Event frames are mostly zeros (N-MNIST at T = 100: 1.7 % ones). On a CPU the dense input
projection ``X W^T`` and its weight gradient ``G^T X`` over ``X = [B*T, F]`` then cost
most of a BPTT step, although only the ones contribute. :class:`SparseFrames` keeps a
batch as two compressed sparse row (CSR) index sets:

* ``X`` itself, ``[B*T, F]``, rows in (sample, step) order -- the forward projection
  ``X W^T`` is one sparse-dense matmul;
* ``X^T``, ``[F, B*T]`` -- the weight gradient ``(X^T G)^T`` is another.

PyTorch's CSR matmuls (MKL on CPU, cuSPARSE on CUDA) do both. Measured on this project's
2-core CPU (``benchmarks/bptt_step.py``), a CSR product of real N-MNIST frames costs a
fraction of the dense one, while torch's own dense-to-CSR conversion or CSR transpose costs
more than the dense product; so both index sets are built once per batch, by the data pipeline,
from each sample's sorted list of ones (:meth:`SparseFrames.from_sample_indices`). The
values are all one and are not stored.

On a GPU the dense projection is fast enough that this buys nothing; the sparse input
exists for CPU training.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

_INT32_MAX = 2**31 - 1


class SparseFrames:
    """A batch of binary frames ``[B, T, F]`` stored as the CSR indices of ``X`` and ``X^T``.

    ``X = frames.reshape(B * T, F)`` (row ``b * T + t`` is step ``t`` of sample ``b``).
    Build one with :meth:`from_sample_indices` (the data pipeline) or :meth:`from_dense`;
    move it with :meth:`to` (Lightning does so for a batch); project it with
    :meth:`project`. It stands in for a dense float tensor only where a learner says it
    accepts sparse input (``Learner.sparse_input``); :meth:`to_dense` gives the frames back.

    Args:
        row_pointers: ``X``'s CSR row pointers, ``[B*T + 1]``.
        row_columns: ``X``'s column index of each one, ``[nnz]``, sorted within each row.
        column_pointers: ``X^T``'s CSR row pointers, ``[F + 1]``.
        column_rows: ``X^T``'s column index (a row of ``X``) of each one, ``[nnz]``.
        batch: ``B``.
        steps: ``T``.
        features: ``F``.
    """

    def __init__(
        self, row_pointers: Tensor, row_columns: Tensor, column_pointers: Tensor, column_rows: Tensor,
        batch: int, steps: int, features: int,
    ) -> None:
        self.row_pointers, self.row_columns = row_pointers, row_columns
        self.column_pointers, self.column_rows = column_pointers, column_rows
        self.batch, self.steps, self.features = batch, steps, features
        self._values: dict[torch.dtype, Tensor] = {}

    # ------------------------------------------------------------ construction
    @classmethod
    def from_sample_indices(cls, samples: Sequence[np.ndarray], steps: int, features: int) -> "SparseFrames":
        """A batch from each sample's ones, given as sorted flat indices ``t * F + f`` into its ``[T, F]`` frames.

        Raises:
            ValueError: an index is out of range or a sample's indices are not strictly increasing.
        """
        batch = len(samples)
        counts = np.fromiter((len(s) for s in samples), dtype=np.int64, count=batch)
        flat = np.concatenate(samples).astype(np.int64, copy=False) if batch else np.zeros(0, np.int64)
        if flat.size:
            if flat.min() < 0 or flat.max() >= steps * features:
                raise ValueError(f"sparse frame indices must lie in [0, {steps * features}) for T={steps}, F={features}")
            increasing = np.diff(flat) > 0
            starts = np.cumsum(counts)[:-1]  # where samples 1.. begin in ``flat``
            increasing[starts[(counts[1:] > 0) & (starts > 0)] - 1] = True  # a new sample may start lower
            if not increasing.all():
                raise ValueError("each sample's sparse frame indices must be sorted and free of repeats")
        step, column = np.divmod(flat, features)
        row = np.repeat(np.arange(batch, dtype=np.int64) * steps, counts) + step
        # X^T's order: by column, rows ascending within a column (a stable sort keeps them so).
        # numpy sorts 16-bit keys by radix, in linear time.
        keys = column.astype(np.uint16) if features <= 2**16 else column
        order = np.argsort(keys, kind="stable")
        index = np.int32 if max(flat.size, batch * steps, features) <= _INT32_MAX else np.int64
        return cls(
            torch.from_numpy(_pointers(row, batch * steps, index)),
            torch.from_numpy(column.astype(index)),
            torch.from_numpy(_pointers(column, features, index)),
            torch.from_numpy(row[order].astype(index)),
            batch, steps, features,
        )

    @classmethod
    def from_dense(cls, frames: Tensor) -> "SparseFrames":
        """The sparse form of binary frames ``[B, T, F]`` (0/1 values; anything else is a ``ValueError``)."""
        if frames.dim() != 3:
            raise ValueError(f"sparse frames need dense frames [batch, time, features], got shape {tuple(frames.shape)}")
        array = frames.detach().cpu().numpy()
        if not np.isin(array, (0, 1)).all():
            raise ValueError("sparse frames hold binary frames: the frames have values other than 0 and 1")
        batch, steps, features = array.shape
        samples = [np.flatnonzero(sample) for sample in array]
        return cls.from_sample_indices(samples, steps, features).to(frames.device)

    # ------------------------------------------------------------ tensor-like
    @property
    def shape(self) -> torch.Size:
        """``[B, T, F]``, the shape of the dense frames."""
        return torch.Size((self.batch, self.steps, self.features))

    @property
    def device(self) -> torch.device:
        return self.row_columns.device

    @property
    def nnz(self) -> int:
        """Number of ones."""
        return self.row_columns.numel()

    def _indices(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.row_pointers, self.row_columns, self.column_pointers, self.column_rows

    def to(self, device: Union[str, torch.device], non_blocking: bool = False) -> "SparseFrames":
        """The same frames on ``device`` (indices only; the values are rebuilt there)."""
        moved = (t.to(device, non_blocking=non_blocking) for t in self._indices())
        return SparseFrames(*moved, self.batch, self.steps, self.features)

    def pin_memory(self) -> "SparseFrames":
        """Page-locked copies of the indices (DataLoader's ``pin_memory`` calls this)."""
        return SparseFrames(*(t.pin_memory() for t in self._indices()), self.batch, self.steps, self.features)

    def detach(self) -> "SparseFrames":
        """The frames themselves (they never carry gradients)."""
        return self

    def _ones(self, dtype: torch.dtype) -> Tensor:
        if dtype not in self._values:
            self._values[dtype] = torch.ones(self.nnz, dtype=dtype, device=self.device)
        return self._values[dtype]

    def rows(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """``X`` ``[B*T, F]`` as a torch sparse CSR tensor of ``dtype``."""
        return _csr(self.row_pointers, self.row_columns, self._ones(dtype), (self.batch * self.steps, self.features))

    def to_dense(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The dense frames ``[B, T, F]``."""
        return self.rows(dtype).to_dense().view(self.batch, self.steps, self.features)

    def project(self, weight: Tensor) -> Tensor:
        """``X W^T`` as ``[B, T, N]`` for ``weight`` ``[N, F]``, differentiable in ``weight``."""
        if weight.dim() != 2 or weight.shape[1] != self.features:
            raise ValueError(f"a weight [N, {self.features}] projects these frames, got {tuple(weight.shape)}")
        return _SparseProjection.apply(weight, self).view(self.batch, self.steps, weight.shape[0])

    def __repr__(self) -> str:
        return f"SparseFrames(shape={list(self.shape)}, nnz={self.nnz}, device={self.device})"


def _csr(pointers: Tensor, indices: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    """A CSR tensor from indices built (and checked) by :class:`SparseFrames`."""
    with warnings.catch_warnings():  # torch calls its CSR layout "beta" once per process
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(pointers, indices, values, size, check_invariants=False)


def _pointers(keys: np.ndarray, length: int, dtype: type) -> np.ndarray:
    """CSR pointers ``[length + 1]`` of entries grouped by ``keys`` (values in ``[0, length)``)."""
    pointers = np.zeros(length + 1, dtype=dtype)
    np.cumsum(np.bincount(keys, minlength=length), out=pointers[1:])
    return pointers


class _SparseProjection(torch.autograd.Function):
    """``X W^T`` and its weight gradient ``(X^T G)^T``, each one CSR matmul (no gradient for ``X``)."""

    @staticmethod
    def forward(ctx, weight: Tensor, frames: SparseFrames) -> Tensor:  # type: ignore[override]
        # Saved as tensors, so memory accounting of what backward keeps sees the X^T indices.
        ctx.save_for_backward(frames.column_pointers, frames.column_rows)
        ctx.frames = frames
        # In the weight's own dtype even under autocast: the sparse kernels have no bfloat16 (and
        # a sum of weights loses nothing in float32).
        with torch.autocast(weight.device.type, enabled=False):
            return frames.rows(weight.dtype) @ weight.t()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Optional[Tensor], None]:  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            return None, None
        pointers, rows = ctx.saved_tensors
        frames: SparseFrames = ctx.frames
        x_t = _csr(pointers, rows, frames._ones(grad.dtype), (frames.features, frames.batch * frames.steps))
        with torch.autocast(grad.device.type, enabled=False):
            return (x_t @ grad.contiguous()).t(), None
