"""Time one BPTT training step of our fused LIF network against snnTorch, side by side.

One step = forward over T, backward, Adam step, on the N-MNIST nets
(2312-120-84-10, FF and REC). The contenders share the same weights and run
interleaved in one process, so the printed ratios are robust to machine noise:

* ``dense``: our network on dense float frames ``[B, T, 2312]``;
* ``sparse``: the same network on :class:`~lightning_local.sparse_frames.SparseFrames`
  of the same frames, as the data pipeline delivers them with ``--data.sparse_input``
  (built outside the timed step; the time to build one batch from per-sample indices,
  which the loader spends, is reported as ``sparse_batch_build_ms``);
* ``snntorch``: snnTorch's neurons in a Python time loop, on the dense frames.

The frames are random binary at ``--density`` (default 0.05), or with ``--nmnist-root`` the
first training batch of real N-MNIST recordings (``nmnist_small`` at T = 100: 1.7 % ones).

    python benchmarks/bptt_step.py                 # CPU defaults: T=100, batch 32
    python benchmarks/bptt_step.py --batch 128 --json benchmarks/results/bptt_step_b128.json
    python benchmarks/bptt_step.py --batch 128 --nmnist-root ../shared/data/nmnist_small
    python benchmarks/bptt_step.py --device cuda --batch 128
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import peak_memory_mb, time_call, time_interleaved  # noqa: E402

from lightning_local.models import SpikingNetwork, per_step_cross_entropy  # noqa: E402
from lightning_local.data import NMNIST  # noqa: E402
from lightning_local.files import atomic_write  # noqa: E402
from lightning_local.models.snntorch_reference import SnnTorchReference  # noqa: E402
from lightning_local.sparse_frames import SparseFrames  # noqa: E402


def make_step(model: torch.nn.Module, frames: torch.Tensor, labels: torch.Tensor):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = per_step_cross_entropy(model(frames).output_membrane, labels)
        loss.backward()
        optimizer.step()

    return step


def real_batch(root: Path, batch: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first shuffled training batch of N-MNIST recordings under ``root`` (full 34x34 resolution)."""
    data = NMNIST(root=str(root), n_time_bins=steps, downsample=1, batch_size=batch, frame_cache=False)
    data.setup("fit")
    return next(iter(data.train_dataloader()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=100, help="time steps T")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--density", type=float, default=0.05, help="share of ones in the input frames")
    parser.add_argument("--nmnist-root", type=Path, help="use real N-MNIST frames from this folder instead")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.nmnist_root:
        frames, labels = real_batch(args.nmnist_root, args.batch, args.steps)
        frames, labels = frames.to(device), labels.to(device)
        args.density = round(float(frames.mean()), 4)
    else:
        frames = (torch.rand(args.batch, args.steps, 2 * 34 * 34, device=device) < args.density).float()
        labels = torch.randint(0, 10, (args.batch,), device=device)
    per_sample = [np.flatnonzero(sample) for sample in frames.cpu().numpy()]
    build = lambda: SparseFrames.from_sample_indices(per_sample, args.steps, frames.shape[2])  # noqa: E731
    sparse = build().to(device)
    build_ms = time_call(build, torch.device("cpu"), args.repeats)
    rows = []
    for architecture in ("ff", "rec"):
        ours = SpikingNetwork(2 * 34 * 34, [120, 84], 10, architecture).to(device)
        reference = SnnTorchReference(ours).to(device)
        steps = {
            "dense": make_step(ours, frames, labels),
            "sparse": make_step(ours, sparse, labels),
            "snntorch": make_step(reference, frames, labels),
        }
        timings = time_interleaved(steps, device, args.repeats)
        memory = {name: peak_memory_mb(step, device) for name, step in steps.items()}
        row = {
            "architecture": architecture, "T": args.steps, "batch": args.batch, "density": args.density,
            "device": str(device), "threads": torch.get_num_threads(),
            **{f"{name}_ms": round(ms, 2) for name, ms in timings.items()},
            "speedup_dense": round(timings["snntorch"] / timings["dense"], 2),
            "speedup_sparse": round(timings["snntorch"] / timings["sparse"], 2),
            **{f"{name}_mem_mb": round(mb, 2) for name, mb in memory.items()},
            "sparse_batch_build_ms": round(build_ms, 2),
        }
        rows.append(row)
        print(
            f"{architecture.upper():3s} T={args.steps} B={args.batch} {device} density {args.density}: "
            f"dense {timings['dense']:7.1f} ms  sparse {timings['sparse']:7.1f} ms  snnTorch {timings['snntorch']:7.1f} ms  "
            f"speed-up x{row['speedup_dense']:.2f} (dense) x{row['speedup_sparse']:.2f} (sparse)  "
            f"saved for backward {memory['dense']:.1f} / {memory['sparse']:.1f} / {memory['snntorch']:.1f} MB"
        )
    print(f"building one sparse batch from per-sample indices (the loader's work): {build_ms:.1f} ms")
    if args.json:
        atomic_write(args.json, lambda handle: handle.write(json.dumps(rows, indent=2) + "\n"))


if __name__ == "__main__":
    main()
