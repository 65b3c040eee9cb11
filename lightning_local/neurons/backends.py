"""Which implementation runs the LIF scan (``lif_sequence(..., backend=...)``, ``--model.backend``).

* ``scan`` - the fused scan of :mod:`.lif` (torch ops, hand-written backward; any device).
* ``triton`` - the Triton kernels of :mod:`.triton_lif` (CUDA; on CPU only under
  ``TRITON_INTERPRET=1``). For REC layers it picks the persistent kernel up to 512
  neurons and the per-step cuBLAS + fused element-wise kernel above;
  ``triton_step`` / ``triton_persistent`` force one of the two.
* ``reference`` - :func:`~lightning_local.neurons.lif.lif_step` over time under
  autograd: slow, for checking the others.
* ``auto`` - ``triton`` on CUDA tensors when Triton is installed (and the layer's
  recurrence, if any, is dense), else ``scan``.
"""

from __future__ import annotations

import functools
import importlib.util

import torch

BACKENDS = ("auto", "scan", "triton", "triton_step", "triton_persistent", "reference")


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """Whether the ``triton`` package can be imported (checked once)."""
    return importlib.util.find_spec("triton") is not None


def check_backend(name: str) -> str:
    """Return ``name`` if it is a known backend, else raise a ``ValueError`` that lists them."""
    if name not in BACKENDS:
        raise ValueError(f"Unknown LIF backend {name!r}: choose one of {', '.join(BACKENDS)}.")
    return name


def resolve_backend(name: str, device: torch.device, dense_recurrence: bool = True) -> str:
    """The concrete backend for tensors on ``device`` (``auto`` resolved; Triton checked).

    ``dense_recurrence``: the layer has no recurrence or a dense ``V`` (the Triton REC
    kernels fuse a matrix product; a recurrent convolution runs on the scan).
    """
    check_backend(name)
    if name == "auto":
        return "triton" if device.type == "cuda" and triton_available() and dense_recurrence else "scan"
    if name.startswith("triton") and not triton_available():
        raise ValueError(f"backend {name!r} needs the triton package: pip install 'lightning-local[gpu]', or use backend 'scan'.")
    if name.startswith("triton") and not dense_recurrence:
        raise ValueError(f"backend {name!r} has no kernel for a recurrent convolution: use backend 'auto' or 'scan'.")
    return name
