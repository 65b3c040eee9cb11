"""The Cost analysis on finished runs: test each run's best checkpoint again with only the ``Cost`` callback.

For run folders of a benchmark store (``OUTPUT/runs/train-...``) that were trained without the cost
analysis: each run's own ``run.yaml`` (its analyses left out), ``lightning-local test`` of its best
checkpoint with ``lightning_local.analysis.Cost``, one after another so the timings do not compete.

    python benchmarks/cost_of_runs.py /work/bench/ours/runs/train-nmnist-*-s0-* --json benchmarks/results/cost.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from lightning_local.benchmark.runner import best_checkpoint
from lightning_local.files import atomic_write


def cost_of(run_dir: Path, num_samples: int, scratch: Path) -> dict:
    """``lightning-local test`` of the run's best checkpoint with only the Cost callback; its results."""
    config = yaml.safe_load((run_dir / "run.yaml").read_text())
    config["trainer"]["callbacks"] = [{"class_path": "lightning_local.analysis.Cost", "init_args": {"num_samples": num_samples}}]
    config.pop("ckpt_path", None)
    logs = scratch / run_dir.name
    path = scratch / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    subprocess.run([sys.executable, "-m", "lightning_local.cli.main", "test", "--config", str(path), "--ckpt_path",
                    str(best_checkpoint(run_dir)), "--trainer.logger.init_args.save_dir", str(logs),
                    "--trainer.enable_progress_bar", "false"], check=True, capture_output=True)
    (result,) = logs.rglob("cost_test.json")
    return {"run": run_dir.name, **json.loads(result.read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with run.yaml and checkpoints/)")
    parser.add_argument("--num-samples", type=int, default=161, help="inference metrics over this many test examples")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        rows = [cost_of(run, args.num_samples, Path(scratch)) for run in args.runs]
    print("| run | train step MB | step ms | MB slope / step | ms slope / step | ACs / sample | act. sparsity |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['train_memory_bytes'] / 2**20:.2f} | {r['train_step_ms_mean']:.1f} ± {r['train_step_ms_std']:.1f} | "
              f"{r['memory_bytes_per_step'] / 2**20:.4f} | {r['step_ms_per_step']:.3f} | {r['effective_acs']:.4g} | "
              f"{r['activation_sparsity']:.3f} |")
    if args.json:
        atomic_write(args.json, lambda handle: handle.write(json.dumps(rows, indent=2) + "\n"))


if __name__ == "__main__":
    main()
