"""Regenerate the figures the README quotes: the main job's result and time, and the split sizes.

    python benchmarks/readme_figures.py [--out benchmarks/results/readme_figures.json] [--skip-main-job]

* main job: ``lightning-local fit --learner bptt`` (built-in saccade digits, defaults) run
  in a fresh temporary folder; reports the test metrics from its ``metrics.csv`` (same
  column names), the wall time, and whether the dataset cache had to be generated first.
* split sizes: train / validation / test recordings of each data module as set up with
  its defaults (the real ``../shared/data/nmnist_small`` when present).

The numbers are written as JSON (and printed), so the README never holds typed-in figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NMNIST_SMALL = REPO.parent / "shared" / "data" / "nmnist_small"


def split_sizes() -> dict[str, dict[str, int]]:
    """Train / val / test sizes of the built-in dataset and of nmnist_small, with default settings."""
    from lightning_local.data import NMNIST, SaccadeDigits

    modules = {"saccade_digits": SaccadeDigits()}
    if (NMNIST_SMALL / "Train").is_dir():
        modules["nmnist_small"] = NMNIST(root=str(NMNIST_SMALL), download=False)
    sizes = {}
    for name, module in modules.items():
        module.prepare_data()
        module.setup("fit")
        sizes[name] = {split: len(getattr(module, f"{split}_dataset")) for split in ("train", "val", "test")}
    return sizes


def main_job() -> dict:
    """Run the README's main job in a temporary folder and read its metrics.csv."""
    from lightning_local.data.saccade_digits import MARKER_NAME, default_root

    cached = (default_root() / MARKER_NAME).is_file()
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "lightning_local.cli.main", "fit", "--learner", "bptt",
             "--trainer.enable_progress_bar", "false"],
            cwd=work, capture_output=True, text=True,
        )
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"the main job failed:\n{result.stderr[-3000:]}")
        (metrics,) = Path(work).rglob("metrics.csv")
        rows = list(csv.DictReader(metrics.open()))
    test = next(row for row in rows if row.get("test_acc"))
    last_val = [row for row in rows if row.get("val_acc")][-1]
    return {
        "command": "lightning-local fit --learner bptt",
        "epochs": int(last_val["epoch"]) + 1,
        "test_acc": float(test["test_acc"]),
        "test_loss": float(test["test_loss"]),
        "val_acc_last_epoch": float(last_val["val_acc"]),
        "wall_seconds": round(seconds, 1),
        "dataset_cache_generated_first": not cached,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "readme_figures.json")
    parser.add_argument("--skip-main-job", action="store_true", help="only the split sizes (seconds, not minutes)")
    args = parser.parse_args()
    figures = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "split_sizes": split_sizes(),
    }
    if not args.skip_main_job:
        figures["main_job"] = main_job()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(figures, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
