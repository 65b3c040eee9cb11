"""Peak memory and step time of every registered learning rule against the sequence length T.

One step = the learner's training step, backward of its objective and an Adam
step, on the N-MNIST FF net (2312-120-84-10) with random binary input (rate
``--rate``). Memory (MB), by device:

* CPU: bytes autograd saves for the backward pass (deduplicated by storage,
  :func:`measure.saved_tensor_bytes`) **plus** the state a rule carries from one
  time step to the next outside autograd (e-prop/DECOLLE/OTTT: neuron state,
  presynaptic traces and the accumulated updates, from
  :class:`~lightning_local.learners.traces.OnlineSimulation`, including the
  first layer's 32-step input block; SLTT: one block of
  :class:`~lightning_local.learners.traces.BlockSimulation` without traces;
  BPTT/FA keep their state in autograd's saved tensors). Deterministic, allocator-independent.
  The input batch itself (``B x T x 2312``, the same for every rule) is not counted.
* CUDA: ``torch.cuda.max_memory_allocated`` during the step minus what was
  allocated before it (weights, optimizer state, input batch).

Time is the median wall time per step (rules run interleaved, so machine
noise hits all alike).

    python benchmarks/memory_vs_T.py --threads 1          # CPU, batch 16, T = 50..800
    python benchmarks/memory_vs_T.py --device cuda --batch 128 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import add_run_arguments, run_device, saved_tensor_bytes, sync, time_interleaved  # noqa: E402

from lightning_local.files import atomic_write  # noqa: E402
from lightning_local.learners import LEARNER_GROUP, available  # noqa: E402
from lightning_local.module import SpikingClassifier  # noqa: E402

#: Contender -> learner spec: every registered rule under its defaults (``eprop``: its ``block`` schedule,
#: ``ottt``: OTTT_A), plus ``eprop_step`` (the step-by-step schedule) and ``ottt_o`` (OTTT_O, an optimizer
#: step every time step).
LEARNERS = {
    **{name: name for name in sorted(available(LEARNER_GROUP))},
    "eprop_step": {"class_path": "lightning_local.plugins.eprop.EProp", "init_args": {"schedule": "step"}},
    "ottt_o": {"class_path": "lightning_local.plugins.ottt.OTTT", "init_args": {"variant": "O"}},
}


def make_step(name: str, frames: torch.Tensor, labels: torch.Tensor, device: torch.device):
    torch.manual_seed(0)
    module = SpikingClassifier(2312, 10, learner=LEARNERS[name], hidden_sizes=[120, 84]).to(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
    module.optimizers = lambda *args, **kwargs: optimizer  # online rules step it themselves (no Trainer here)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        out = module.learner.training_step(module, frames, labels)
        if out.objective is not None:  # None: the rule already stepped the optimizer within the sequence
            out.objective.backward()
            optimizer.step()

    return module, step


def memory_mb(learner: str, module: SpikingClassifier, step, frames: torch.Tensor, device: torch.device) -> float:
    if device.type == "cuda":
        step()  # optimizer state exists from here on
        sync(device)
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with saved_tensor_bytes() as saved:
        step()
    return (saved["bytes"] + module.learner.carried_state_bytes(module.network, frames)) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 100, 200, 400, 800], help="values of T")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rate", type=float, default=0.02, help="input spike probability per bin")
    parser.add_argument("--learners", nargs="+", default=list(LEARNERS), choices=list(LEARNERS))
    add_run_arguments(parser, repeats=3)
    args = parser.parse_args()
    device = run_device(args)
    rows = []
    for steps in args.steps:
        generator = torch.Generator().manual_seed(steps)
        frames = (torch.rand(args.batch, steps, 2312, generator=generator) < args.rate).float().to(device)
        labels = torch.randint(0, 10, (args.batch,), generator=generator).to(device)
        made = {name: make_step(name, frames, labels, device) for name in args.learners}
        timings = time_interleaved({name: step for name, (_, step) in made.items()}, device, args.repeats, warmup=1)
        for name, (module, step) in made.items():
            rows.append({
                "learner": name, "T": steps, "batch": args.batch, "device": str(device),
                "memory_mb": round(memory_mb(name, module, step, frames, device), 3),
                "step_ms": round(timings[name], 1),
            })
        print(f"T={steps} done", file=sys.stderr, flush=True)
    print_table(rows, args.learners, args.steps)
    if args.json:
        atomic_write(args.json, lambda handle: handle.write(json.dumps(rows, indent=2) + "\n"))


def print_table(rows: list[dict], learners: list[str], steps: list[int]) -> None:
    cell = {(r["learner"], r["T"]): r for r in rows}
    print(f"device={rows[0]['device']} batch={rows[0]['batch']} threads={torch.get_num_threads()}  memory MB / step ms")
    print("learner    " + "".join(f"{'T=' + str(t):>18s}" for t in steps) + "   mem T_max/T_min")
    for name in learners:
        cells = "".join(f"{cell[(name, t)]['memory_mb']:9.2f}/{cell[(name, t)]['step_ms']:7.1f} " for t in steps)
        growth = cell[(name, steps[-1])]["memory_mb"] / cell[(name, steps[0])]["memory_mb"]
        print(f"{name:10s} {cells}   x{growth:.2f}")
    for eprop in ("eprop", "eprop_step"):
        if "bptt" in learners and eprop in learners and 100 in steps:
            ratio = cell[(eprop, 100)]["step_ms"] / cell[("bptt", 100)]["step_ms"]
            print(f"{eprop} / BPTT step time at T=100: x{ratio:.2f}")


if __name__ == "__main__":
    main()
