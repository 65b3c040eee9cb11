"""One BPTT training step (forward over T, backward, Adam) per LIF implementation, side by side.

Contenders, all in one process on the same data: our network with the fused scan
(``scan``) and with the Triton kernels (``triton``, CUDA only; for REC also the two
recurrent variants ``triton_step`` and ``triton_persistent``), snnTorch's neurons
in a Python time loop (same weights), and SpikingJelly 2.0's multi-step LIF node
(optional import; its LIF has no synaptic current and no recurrence, so it runs
the FF shapes as Linear -> LIFNode with subtractive, detached reset).

    python benchmarks/gpu_step.py --device cuda                  # every shape of issue 11
    python benchmarks/gpu_step.py --device cpu --shapes nmnist_ff nmnist_rec --batch 128
    python benchmarks/gpu_step.py --json out.json

Prints ms per step (median of --repeats, interleaved), the ratio to snnTorch, peak
memory (CUDA: max allocated; CPU: bytes saved for backward) and the first-step
warm-up (compilation/autotuning included).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import peak_memory_mb, sync, time_interleaved  # noqa: E402

from lightning_local.models import SpikingNetwork, per_step_cross_entropy  # noqa: E402
from lightning_local.models.snntorch_reference import SnnTorchReference  # noqa: E402

#: name -> (inputs, hidden sizes, classes, architecture, T, batch); issue 11's shapes.
SHAPES = {
    "nmnist_ff": (2312, [120, 84], 10, "ff", 100, 128),
    "nmnist_rec": (2312, [120, 84], 10, "rec", 100, 128),
    "dvs_ff": (2048, [512], 11, "ff", 60, 64),
    "dvs_rec": (2048, [512], 11, "rec", 60, 64),
    "large_layer": (2048, [], 16384, "ff", 500, 16),
}


def make_step(model: torch.nn.Module, frames: torch.Tensor, labels: torch.Tensor, readout: Callable) -> Callable[[], None]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        per_step_cross_entropy(readout(model, frames), labels).backward()
        optimizer.step()

    return step


def spikingjelly_model(ours: SpikingNetwork) -> Optional[tuple[torch.nn.Module, Callable]]:
    """SpikingJelly's FF twin (same weights), or None when SpikingJelly is absent or the net is REC."""
    if ours.architecture != "ff":
        return None
    try:
        from spikingjelly.activation_based import functional, layer, neuron
    except ImportError:
        return None
    # LIFNode: H = V + (X - V)/tau; decay beta = 1 - 1/tau. No synaptic current: a timing stand-in.
    tau = 1.0 / (1.0 - ours.params.beta)
    modules = []
    for lif in ours.layers:
        linear = layer.Linear(lif.in_features, lif.out_features, bias=False, step_mode="m")
        linear.weight = lif.weight
        modules += [linear, neuron.LIFNode(tau=tau, v_reset=None, detach_reset=True, step_mode="m", store_v_seq=True)]
    net = torch.nn.Sequential(*modules)

    def readout(model: torch.nn.Module, frames: torch.Tensor) -> torch.Tensor:
        functional.reset_net(model)
        model(frames.transpose(0, 1))
        return model[-1].v_seq

    return net, readout


def first_step_seconds(step: Callable[[], None], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - start


def run_shape(name: str, device: torch.device, repeats: int, batch: Optional[int], steps: Optional[int], snntorch: bool) -> list[dict]:
    inputs, hidden, classes, architecture, T, B = SHAPES[name]
    T, B = steps or T, batch or B
    torch.manual_seed(0)
    frames = (torch.rand(B, T, inputs, device=device) < 0.05).float()
    labels = torch.randint(0, classes, (B,), device=device)
    backends = ["scan"]
    if device.type == "cuda":
        backends += ["triton_step", "triton_persistent"] if architecture == "rec" and max(hidden) <= 512 else ["triton"]
    contenders: dict[str, Callable[[], None]] = {}
    network = lambda model, x: model(x).output_membrane  # noqa: E731
    for backend in backends:
        torch.manual_seed(1)
        model = SpikingNetwork(inputs, hidden, classes, architecture, backend=backend).to(device)
        contenders[backend] = make_step(model, frames, labels, network)
    if snntorch:
        contenders["snntorch"] = make_step(SnnTorchReference(model).to(device), frames, labels, network)
    twin = spikingjelly_model(model)
    if twin is not None:
        contenders["spikingjelly"] = make_step(twin[0].to(device), frames, labels, twin[1])
    warmup = {label: first_step_seconds(step, device) for label, step in contenders.items()}
    times = time_interleaved(contenders, device, repeats)
    reference = times.get("snntorch")
    rows = []
    for label, step in contenders.items():
        row = {
            "shape": name, "implementation": label, "T": T, "batch": B, "device": str(device),
            "ms_per_step": round(times[label], 3),
            "speedup_vs_snntorch": None if reference is None else round(reference / times[label], 2),
            "peak_memory_mb": round(peak_memory_mb(step, device), 1),
            "first_step_s": round(warmup[label], 2),
        }
        rows.append(row)
        ratio = "" if reference is None else f"  x{row['speedup_vs_snntorch']:.2f} vs snnTorch"
        print(f"{name:12s} {label:18s} T={T} B={B} {device}: {row['ms_per_step']:9.3f} ms/step{ratio}  "
              f"peak {row['peak_memory_mb']:.1f} MB  first step {row['first_step_s']:.2f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--batch", type=int, help="override every shape's batch size")
    parser.add_argument("--steps", type=int, help="override every shape's T")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-snntorch", action="store_true", help="skip snnTorch (slow on large shapes)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for name in args.shapes:
        snntorch = not args.no_snntorch and not (name == "large_layer" and device.type == "cpu")
        rows += run_shape(name, device, args.repeats, args.batch, args.steps, snntorch)
        if args.json:  # rewritten after every shape: a timeout still leaves the finished ones
            tmp = args.json.with_suffix(".tmp")
            tmp.write_text(json.dumps(rows, indent=2))
            tmp.replace(args.json)


if __name__ == "__main__":
    main()
