"""Shared fixtures: where the real recordings live, and a quiet, fast CLI run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

# Triton reads TRITON_INTERPRET when @triton.jit decorates a kernel, i.e. at the first import of
# lightning_local.neurons.triton_lif, which any test may trigger: set it before any test module
# is collected, so the kernels run in Triton's CPU interpreter wherever there is no GPU.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Under pytest-xdist (`-n logical`) every core runs a worker: one torch thread per worker, and the same
# for the runs tests start as subprocesses, so workers never oversubscribe the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# Helper modules for tests (callbacks, scripts) are importable as `support.*`.
sys.path.insert(0, str(REPO / "tests"))


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Keep the tests' caches (generated datasets, file-check verdicts) out of the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIGHTNING_LOCAL_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def nmnist_small() -> Path:
    """The 800 real N-MNIST recordings in ../shared (skip with a clear message if absent)."""
    root = SHARED_DATA / "nmnist_small"
    if not (root / "Train").is_dir():
        pytest.skip(f"real N-MNIST recordings not found at {root}: this test needs the workplace's ../shared/data folder")
    return root


@pytest.fixture
def fast_trainer_args(tmp_path: Path) -> list[str]:
    """Trainer flags for a short, quiet CLI run that logs under tmp_path."""
    return [
        "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "3",
        "--trainer.limit_val_batches", "2",
        "--trainer.limit_test_batches", "2",
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
    ]


@pytest.fixture
def single_thread():
    """One intra-op thread: tiny tensors (convolutions above all) only pay thread barriers on shared CPUs."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def float64():
    """Run a test with float64 as torch's default dtype (exactness checks against references)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(scope="session")
def tiny_digits(tmp_path_factory) -> Path:
    """100 saccade-digit recordings (10 per class) in their own folder (the user's cache is left alone)."""
    from lightning_local.data.saccade_digits import ensure_saccade_digits

    root = tmp_path_factory.mktemp("digits")
    ensure_saccade_digits(root, max_samples_per_class=10)
    return root
