"""Training-epoch wall time through `lightning-local fit`: dense frames against `--data.sparse_input`.

The whole loop as a user runs it - data loader (frames from the cache, unpacked to float32, or
sparse batches from its ones index), BPTT step, Adam, Lightning's bookkeeping - on the real
N-MNIST recordings. The two settings alternate; each run trains ``--epochs`` epochs and the
median epoch time after the first (cache build, warm-up) is kept.

    python benchmarks/fit_epoch.py --root ../shared/data/nmnist_small --json benchmarks/results/fit_epoch.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl

from lightning_local.cli.main import build_cli
from lightning_local.files import atomic_write


class EpochTimer(pl.Callback):
    """Wall time of every training epoch (seconds)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def epoch_seconds(root: Path, sparse: bool, args: argparse.Namespace, folder: Path) -> list[float]:
    cli = build_cli([
        "fit", "--learner", "bptt", "--model.architecture", args.architecture, "--data", "nmnist",
        "--data.root", str(root), "--data.n_time_bins", str(args.steps), "--data.batch_size", str(args.batch),
        "--data.sparse_input", str(sparse).lower(), "--trainer.max_epochs", str(args.epochs),
        "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false", "--test_after_fit", "false",
        "--trainer.logger.init_args.save_dir", str(folder), "--trainer.callbacks+=__main__.EpochTimer",
    ])
    (timer,) = [c for c in cli.trainer.callbacks if isinstance(c, EpochTimer)]
    return timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="N-MNIST folder (Train/<digit>/*.bin)")
    parser.add_argument("--architecture", default="ff", choices=["ff", "rec"])
    parser.add_argument("--steps", type=int, default=100, help="time bins T")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"dense": [], "sparse": []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for name in times:
                times[name] += epoch_seconds(args.root, name == "sparse", args, Path(folder))[1:]
    result = {
        "root": str(args.root), "architecture": args.architecture, "T": args.steps, "batch": args.batch,
        **{f"{name}_epoch_s": round(statistics.median(values), 3) for name, values in times.items()},
        "epochs_timed": {name: len(values) for name, values in times.items()},
    }
    result["speedup"] = round(result["dense_epoch_s"] / result["sparse_epoch_s"], 2)
    print(json.dumps(result, indent=2))
    if args.json:
        atomic_write(args.json, lambda handle: handle.write(json.dumps(result, indent=2) + "\n"))


if __name__ == "__main__":
    sys.exit(main())
