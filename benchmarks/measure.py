"""Shared timing and memory measurement for the benchmark scripts.

Memory on a CPU is measured as the bytes of tensors autograd saves for the
backward pass (deduplicated by storage) - a deterministic number that does not
depend on the allocator - and, on a GPU, as ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from lightning_local.analysis.training_cost import saved_tensor_bytes  # noqa: F401 (the scripts import it from here)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(step: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``step()`` in milliseconds."""
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def time_interleaved(steps: dict[str, Callable[[], object]], device: torch.device, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median wall time (ms) of each named step, run alternately so noise hits all alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            sync(device)
            start = time.perf_counter()
            step()
            sync(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory_mb(step: Callable[[], object], device: torch.device) -> float:
    """Peak memory of one ``step()`` in MB: CUDA peak allocation, or saved-for-backward bytes on CPU."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        step()
        sync(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    with saved_tensor_bytes() as saved:
        step()
    return saved["bytes"] / 2**20


def add_run_arguments(parser: argparse.ArgumentParser, repeats: int) -> None:
    """The options every benchmark shares: ``--device``, ``--repeats``, ``--threads``, ``--json``."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the results here")


def run_device(args: argparse.Namespace) -> torch.device:
    """Apply ``--threads`` and return the ``--device`` to run on."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return torch.device(args.device)
