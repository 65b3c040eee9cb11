"""Time one BPTT training step of our fused LIF network against snnTorch, side by side.

One step = forward over T, backward, Adam step, on the N-MNIST nets
(2312-120-84-10, FF and REC). Both implementations share the same weights and
run interleaved in one process, so the printed ratio is robust to machine noise.

    python benchmarks/bptt_step.py                 # CPU defaults: T=100, batch 32
    python benchmarks/bptt_step.py --device cuda --batch 128
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import peak_memory_mb, time_interleaved  # noqa: E402

from lightning_local.models import SpikingNetwork, per_step_cross_entropy  # noqa: E402
from lightning_local.models.snntorch_reference import SnnTorchReference  # noqa: E402


def make_step(model: torch.nn.Module, frames: torch.Tensor, labels: torch.Tensor):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = per_step_cross_entropy(model(frames).output_membrane, labels)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=100, help="time steps T")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    frames = (torch.rand(args.batch, args.steps, 2 * 34 * 34, device=device) < 0.05).float()
    labels = torch.randint(0, 10, (args.batch,), device=device)
    rows = []
    for architecture in ("ff", "rec"):
        ours = SpikingNetwork(2 * 34 * 34, [120, 84], 10, architecture).to(device)
        reference = SnnTorchReference(ours).to(device)
        ours_step, ref_step = make_step(ours, frames, labels), make_step(reference, frames, labels)
        timings = time_interleaved({"ours": ours_step, "snntorch": ref_step}, device, args.repeats)
        ours_ms, ref_ms = timings["ours"], timings["snntorch"]
        row = {
            "architecture": architecture,
            "T": args.steps,
            "batch": args.batch,
            "device": str(device),
            "lightning_local_ms": round(ours_ms, 2),
            "snntorch_ms": round(ref_ms, 2),
            "speedup": round(ref_ms / ours_ms, 2),
            "lightning_local_mem_mb": round(peak_memory_mb(ours_step, device), 2),
            "snntorch_mem_mb": round(peak_memory_mb(ref_step, device), 2),
        }
        rows.append(row)
        print(
            f"{architecture.upper():3s} T={args.steps} B={args.batch} {device}: "
            f"lightning-local {ours_ms:8.1f} ms  snnTorch {ref_ms:8.1f} ms  speed-up x{ref_ms / ours_ms:.2f}  "
            f"memory {row['lightning_local_mem_mb']:.1f} MB vs {row['snntorch_mem_mb']:.1f} MB"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
