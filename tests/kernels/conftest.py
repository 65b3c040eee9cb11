"""Kernel tests run Triton's interpreter on CPU tensors unless a GPU is present.

``TRITON_INTERPRET`` is read when ``@triton.jit`` decorates a kernel, i.e. when
:mod:`lightning_local.neurons.triton_lif` is first imported, so the top-level
``tests/conftest.py`` sets it before any test is collected.
``benchmarks/device_check.sh`` sets ``TRITON_INTERPRET=0`` to run the same tests on CUDA.
"""

from __future__ import annotations

import pytest
import torch

from lightning_local.neurons import triton_lif


@pytest.fixture(scope="session")
def device() -> torch.device:
    """Where the kernels run: CUDA when present and not interpreting, else the CPU interpreter."""
    if triton_lif.interpreting():
        return torch.device("cpu")
    if not torch.cuda.is_available():
        pytest.fail("TRITON_INTERPRET=0 without a CUDA device: the kernels have nowhere to run")
    return torch.device("cuda")
