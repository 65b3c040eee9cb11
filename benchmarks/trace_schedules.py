"""Block scans against the step-by-step simulation for the trace rules, side by side.

The same batch, the same updates (the tests hold them equal), two simulations:

* e-prop: ``schedule="block"`` (every layer's scan per 32-step block with the carried state)
  against ``schedule="step"``;
* DECOLLE offline (``online=False``; also what ``update_every > 1`` runs): its block scans
  against its step-by-step simulation, which it otherwise uses only for an update every step
  (forced here by handing the block path's generator the step path's).

One sequence = ``compute_updates``/``run`` on the N-MNIST FF or REC net (2312-120-84-10),
random binary input at ``--rate``; median ms, run interleaved.

    python benchmarks/trace_schedules.py --threads 1 --json benchmarks/results/trace_schedules.json
    python benchmarks/trace_schedules.py --device cuda --batch 128
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import add_run_arguments, run_device, time_interleaved  # noqa: E402

from lightning_local.files import atomic_write  # noqa: E402
from lightning_local.module import SpikingClassifier  # noqa: E402
from lightning_local.plugins.decolle import Decolle  # noqa: E402
from lightning_local.plugins.eprop import EProp  # noqa: E402


def decolle_run(module: SpikingClassifier, frames: torch.Tensor, labels: torch.Tensor, step_by_step: bool):
    learner = module.learner

    def run() -> None:
        if step_by_step:
            learner._scan_blocks = learner._step_blocks  # an instance attribute: this learner only
        try:
            learner.updates(module.network, frames, labels)
        finally:
            learner.__dict__.pop("_scan_blocks", None)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="time steps T")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rate", type=float, default=0.02, help="input spike probability per bin")
    add_run_arguments(parser, repeats=5)
    args = parser.parse_args()
    device = run_device(args)
    generator = torch.Generator().manual_seed(0)
    frames = (torch.rand(args.batch, args.steps, 2312, generator=generator) < args.rate).float().to(device)
    labels = torch.randint(0, 10, (args.batch,), generator=generator).to(device)
    rows = []
    for architecture in ("ff", "rec"):
        def module(learner):
            torch.manual_seed(0)
            return SpikingClassifier(2312, 10, learner=learner, architecture=architecture, hidden_sizes=[120, 84]).to(device)

        eprop = {name: module(EProp(schedule=name)) for name in ("block", "step")}
        decolle = module(Decolle(online=False))
        runs = {
            **{f"eprop_{name}": (lambda m=m: m.learner.updates(m.network, frames, labels)) for name, m in eprop.items()},
            "decolle_offline_block": decolle_run(decolle, frames, labels, step_by_step=False),
            "decolle_offline_step": decolle_run(decolle, frames, labels, step_by_step=True),
        }
        timings = time_interleaved(runs, device, args.repeats)
        row = {"architecture": architecture, "T": args.steps, "batch": args.batch, "device": str(device),
               "threads": torch.get_num_threads(), **{f"{name}_ms": round(ms, 1) for name, ms in timings.items()}}
        rows.append(row)
        print(f"{architecture.upper():3s} T={args.steps} B={args.batch} {device}: " + "  ".join(
            f"{name} {ms:.1f} ms" for name, ms in timings.items()))
    if args.json:
        atomic_write(args.json, lambda handle: handle.write(json.dumps(rows, indent=2) + "\n"))


if __name__ == "__main__":
    main()
