"""Lightning's own DDP strategy with learner plugins (2 CPU processes, run as subprocesses)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_local.learners import LEARNER_GROUP, available

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "support" / "ddp_train.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "tests")}

# every test launches DDP process groups of whole runs
pytestmark = pytest.mark.slow


def run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def load_ranks(directory: Path, count: int) -> list[dict[str, torch.Tensor]]:
    return [torch.load(directory / f"rank{k}.pt") for k in range(count)]


@pytest.mark.parametrize("sparse_input", ["false", "true"])
def test_cli_ddp_trains_and_ranks_agree(sparse_input, nmnist_small, tmp_path):
    """Every rank ends with the same weights, with dense frames and with sparse batches (``--data.sparse_input``)."""
    out = tmp_path / "weights"
    run([sys.executable, "-m", "lightning_local.cli.main", "fit", "--learner", "bptt",
         "--data", "nmnist", "--data.root", str(nmnist_small), "--data.n_time_bins", "20", "--data.batch_size", "16",
         "--data.sparse_input", sparse_input,
         "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
         "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
         "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false",
         "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
         "--trainer.callbacks+=support.callbacks.SaveRankWeights", f"--trainer.callbacks.directory={out}"], cwd=tmp_path)
    rank0, rank1 = load_ranks(out, 2)
    kinds = {(out / f"frames_rank{k}.txt").read_text() for k in range(2)}
    assert kinds == {"SparseFrames" if sparse_input == "true" else "Tensor"}
    assert rank0.keys() == rank1.keys()
    start = torch.load(out / "start_rank0.pt")
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"{name} differs between ranks"
        assert not torch.equal(rank0[name], start[name]), f"{name} never trained"


# Conversion's data-based normalisation averages per-rank percentiles, which is not
# the percentile of the global batch: its ranks must agree, not match one process.
RANKS_AGREE_ONLY = ["conversion"]
# Every other registered learner: its DDP update must equal one process's on the global batch.
LEARNERS = [name for name in sorted(available(LEARNER_GROUP)) if name not in RANKS_AGREE_ONLY]
ARCHITECTURES = ["ff", "rec"]


def test_ddp_equals_one_process_on_the_global_batch(tmp_path):
    learners = LEARNERS + RANKS_AGREE_ONLY
    common = [sys.executable, str(SCRIPT), "--learners", ",".join(learners), "--architectures", ",".join(ARCHITECTURES)]
    run([*common, "--devices", "2", "--batch", "4", "--out", str(tmp_path / "ddp")], cwd=tmp_path)
    run([*common, "--devices", "1", "--batch", "8", "--out", str(tmp_path / "single")], cwd=tmp_path)
    for learner in learners:
        for architecture in ARCHITECTURES:
            run_name = f"{learner}_{architecture}"
            rank0, rank1 = load_ranks(tmp_path / "ddp" / run_name, 2)
            (single,) = load_ranks(tmp_path / "single" / run_name, 1)
            start = torch.load(tmp_path / "single" / run_name / "start_rank0.pt")
            for name in single:
                assert torch.equal(rank0[name], rank1[name]), f"{run_name}: {name} differs between ranks"
                if learner in RANKS_AGREE_ONLY:
                    continue
                assert not torch.equal(single[name], start[name]), f"{run_name}: {name} never trained"
                torch.testing.assert_close(rank0[name], single[name], rtol=1e-4, atol=1e-5, msg=f"{run_name}: {name}")


def test_ddp_test_metrics_count_each_sample_once(nmnist_small, tmp_path):
    """161 test samples on 2 processes: 81 + 80, not 81 + 81 with one repeated (Lightning's padding)."""
    common = ["--data", "nmnist", "--data.root", str(nmnist_small), "--data.n_time_bins", "10", "--data.batch_size", "16",
              "--model.hidden_sizes", "[16]", "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"]
    run([sys.executable, "-m", "lightning_local.cli.main", "fit", *common, "--trainer.max_epochs", "1",
         "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "1", "--test_after_fit", "false",
         "--trainer.logger.init_args.save_dir", str(tmp_path / "fit")], cwd=tmp_path)
    (last,) = (tmp_path / "fit").rglob("last.ckpt")
    results = {}
    for devices in (1, 2):
        logs = tmp_path / f"test{devices}"
        run([sys.executable, "-m", "lightning_local.cli.main", "test", *common, "--ckpt_path", str(last),
             "--trainer.devices", str(devices), "--trainer.strategy", "ddp" if devices > 1 else "auto",
             "--trainer.logger.init_args.save_dir", str(logs)], cwd=tmp_path)
        (metrics,) = logs.rglob("metrics.csv")
        (row,) = list(csv.DictReader(metrics.open()))
        results[devices] = (float(row["test_acc"]), float(row["test_loss"]))
    correct = results[1][0] * 161
    assert abs(correct - round(correct)) < 1e-4  # one process: a count out of all 161 samples
    assert results[2][0] == results[1][0]
    assert abs(results[2][1] - results[1][1]) < 1e-5 * max(1.0, abs(results[1][1]))
