"""Shared fixtures of the data tests: real N-MNIST recordings, event builders, layouts."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lightning_local.data.events import NMNIST_DTYPE, write_nmnist_bin

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def nmnist_small() -> Path:
    """The 800 real N-MNIST training recordings (``Train/<digit>/*.bin``), or skip."""
    root = (SHARED_DATA / "nmnist_small").resolve()
    if not any(root.glob("Train/*/*.bin")):
        pytest.skip(f"real N-MNIST recordings not found at {root} (expected Train/<digit>/*.bin)")
    return root


@pytest.fixture
def make_events() -> Callable[..., np.ndarray]:
    """Build a time-sorted N-MNIST structured event array from coordinate lists or at random."""

    def build(x=None, y=None, t=None, p=None, n: int = 500, seed: int = 0, size: int = 34) -> np.ndarray:
        rng = np.random.default_rng(seed)
        if x is None:
            x, y, p = rng.integers(0, size, n), rng.integers(0, size, n), rng.integers(0, 2, n)
            t = np.sort(rng.integers(0, 300_000, n))
        events = np.zeros(len(x), dtype=NMNIST_DTYPE)
        events["x"], events["y"], events["t"], events["p"] = x, y, t, p
        return events

    return build


@pytest.fixture
def nmnist_layout(tmp_path: Path, make_events) -> Callable[..., Path]:
    """Write a small N-MNIST layout (random events) and return its root."""

    def write(per_class: int = 4, splits: tuple[str, ...] = ("Train", "Test"), base: Path | None = None) -> Path:
        root = base or tmp_path / "nmnist"
        for split in splits:
            for digit in range(10):
                for i in range(per_class):
                    events = make_events(seed=digit * 1000 + i + (7 if split == "Test" else 0))
                    write_nmnist_bin(root / split / str(digit) / f"{i:05d}.bin", events)
        return root

    return write


@pytest.fixture
def real_subset(nmnist_small, tmp_path) -> Path:
    """40 real N-MNIST recordings (4 per digit) copied into a writable layout."""
    root = tmp_path / "real"
    for digit in range(10):
        (root / "Train" / str(digit)).mkdir(parents=True)
        for file in sorted((nmnist_small / "Train" / str(digit)).glob("*.bin"))[:4]:
            shutil.copy2(file, root / "Train" / str(digit) / file.name)
    return root
