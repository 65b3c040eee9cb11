"""CPU time of one training step of the paper's convolutional SNN (Appendix A) next to the FC nets.

One step = the learner's training step over all T time steps, the backward of its
objective and an Adam step (online DECOLLE: its T within-sequence Adam steps). Nets:

* conv: Appendix A, 3 conv LIF layers of 64/128/128 channels, kernel 7, stride 1,
  padding 1, dense LIF readout; REC adds a 3x3 recurrent convolution per conv layer.
* FC: the paper's main nets (N-MNIST 120-84, DVS Gesture 512), for comparison.

Rules: BPTT, offline DECOLLE (``online=False``, one Adam step per batch) and online
DECOLLE (default, an Adam step at every time step). Inputs: (a) N-MNIST 2x34x34, T=100,
(b) DVS Gesture 2x32x32, T=60; random binary frames (rate ``--rate``; dense compute
does not depend on it). All configurations of one input run interleaved in one process
(median of ``--repeats``), so machine noise hits all alike. Two clocks: wall time and the
process's CPU time (all threads; less sensitive to other jobs on a shared machine).

A conv step at the paper's T takes tens of seconds on a 2-core CPU, so by default the conv
nets are timed at a shorter length (``--measure-steps``, 20) and the step at the paper's T is
that time scaled by ``T / measure_steps`` (``scaled: true`` in the JSON; every time step costs
the same convolutions, so the step is close to linear in T, and the scaling slightly
over-counts the per-batch Adam step of BPTT and offline DECOLLE). Two conv configurations
(N-MNIST FF, BPTT and online DECOLLE) are also run once at the paper's T to check it
(``full_T_check``). ``--full`` times every conv net at the paper's T instead. FC nets are
always timed at the paper's T.

Memory (MB) is ``memory_vs_T.py``'s deterministic CPU measure: bytes autograd saves for
the backward pass plus the state a trace rule carries between steps (not the process's
peak), at the T the step was run at (``memory_T``); the process's ``ru_maxrss`` is recorded too.

    OMP_NUM_THREADS=2 nice -n 10 python benchmarks/conv_step.py    # writes benchmarks/results/conv_step.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_vs_T import memory_mb  # noqa: E402

from lightning_local.files import write_text_atomic  # noqa: E402
from lightning_local.module import SpikingClassifier  # noqa: E402

#: name -> (input shape (C, H, W), the paper's T, classes, FC hidden sizes)
DATASETS = {
    "nmnist": ((2, 34, 34), 100, 10, [120, 84]),
    "dvsgesture": ((2, 32, 32), 60, 11, [512]),
}
#: name -> learner spec for SpikingClassifier
LEARNERS = {
    "bptt": "bptt",
    "decolle_offline": {"class_path": "lightning_local.plugins.decolle.Decolle", "init_args": {"online": False}},
    "decolle_online": "decolle",
}
CONV = {"synapse": "conv", "channels": [64, 128, 128], "kernel_size": 7, "stride": 1, "padding": 1, "recurrent_kernel_size": 3}
RESULT = Path(__file__).resolve().parent / "results" / "conv_step.json"
CPU = torch.device("cpu")
Key = tuple[str, str, str]  # (net, architecture, learner)


def make_step(net: str, architecture: str, learner: str, dataset: str, frames: torch.Tensor, labels: torch.Tensor):
    """``(module, step, frames)``: a fresh seeded model, a closure running one full training step, its input."""
    shape, _, classes, hidden = DATASETS[dataset]
    torch.manual_seed(0)
    kwargs = dict(CONV, input_shape=list(shape)) if net == "conv" else {"hidden_sizes": hidden}
    num_inputs = shape[0] * shape[1] * shape[2]
    module = SpikingClassifier(num_inputs, classes, learner=LEARNERS[learner], architecture=architecture, **kwargs)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
    module.optimizers = lambda: optimizer  # online DECOLLE steps it within the sequence (no Trainer here)
    if net == "fc":
        frames = frames.flatten(2)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        out = module.learner.training_step(module, frames, labels)
        if out.objective is not None:
            out.objective.backward()
            optimizer.step()

    return module, step, frames


def batch(dataset: str, steps: int, size: int, rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    shape, _, classes, _ = DATASETS[dataset]
    generator = torch.Generator().manual_seed(steps)
    frames = (torch.rand(size, steps, *shape, generator=generator) < rate).float()
    return frames, torch.randint(0, classes, (size,), generator=generator)


def time_both(steps: dict[Key, Callable[[], None]], repeats: int, warmup: int = 1) -> dict[Key, dict[str, float]]:
    """Median wall and process-CPU milliseconds of each step, run alternately (as ``measure.time_interleaved``)."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    wall: dict[Key, list[float]] = {key: [] for key in steps}
    cpu: dict[Key, list[float]] = {key: [] for key in steps}
    for _ in range(repeats):
        for key, step in steps.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            step()
            wall[key].append((time.perf_counter() - start_wall) * 1e3)
            cpu[key].append((time.process_time() - start_cpu) * 1e3)
    return {key: {"wall_ms": statistics.median(wall[key]), "cpu_ms": statistics.median(cpu[key])} for key in steps}


def rule_name(learner: str) -> str:
    """``memory_vs_T``'s name of the rule (it counts DECOLLE's carried state under ``decolle``)."""
    return "decolle" if learner.startswith("decolle") else learner


def measure(keys: list[Key], dataset: str, steps: int, args) -> dict[Key, dict[str, float]]:
    """Step times and memory of every configuration at ``steps``, interleaved."""
    frames, labels = batch(dataset, steps, args.batch, args.rate)
    made = {key: make_step(*key, dataset, frames, labels) for key in keys}
    timings = time_both({key: step for key, (_, step, _) in made.items()}, args.repeats)
    for key, (module, step, x) in made.items():
        timings[key]["memory_mb"] = memory_mb(rule_name(key[2]), module, step, x, CPU)
    return timings


def full_length_check(args) -> list[dict]:
    """Run N-MNIST conv FF BPTT and online DECOLLE once at T=100 (time and memory in one step)."""
    steps = DATASETS["nmnist"][1]
    frames, labels = batch("nmnist", steps, args.batch, args.rate)
    rows = []
    for learner in ("bptt", "decolle_online"):
        module, step, x = make_step("conv", "ff", learner, "nmnist", frames, labels)
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        memory = memory_mb(rule_name(learner), module, step, x, CPU)  # runs the step once
        rows.append({"dataset": "nmnist", "net": "conv", "architecture": "ff", "learner": learner, "T": steps,
                     "wall_ms": round((time.perf_counter() - start_wall) * 1e3, 1),
                     "cpu_ms": round((time.process_time() - start_cpu) * 1e3, 1), "memory_mb": round(memory, 2)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.05, help="input spike probability per bin")
    parser.add_argument("--measure-steps", type=int, default=20, help="T the conv nets are timed at (scaled to the paper's T)")
    parser.add_argument("--full", action="store_true", help="time the conv nets at the paper's T (slow)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--json", type=Path, default=RESULT)
    args = parser.parse_args()
    started, load_before = time.perf_counter(), list(os.getloadavg())
    keys = lambda net: [(net, arch, learner) for arch in ("ff", "rec") for learner in LEARNERS]  # noqa: E731
    rows = []
    for dataset in args.datasets:
        paper_steps = DATASETS[dataset][1]
        conv_steps = paper_steps if args.full else args.measure_steps
        measured = {**measure(keys("conv"), dataset, conv_steps, args), **measure(keys("fc"), dataset, paper_steps, args)}
        print(f"{dataset} measured ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
        for key, cell in measured.items():
            net, architecture, learner = key
            run_steps = conv_steps if net == "conv" else paper_steps
            scale = paper_steps / run_steps
            rows.append({
                "dataset": dataset, "net": net, "architecture": architecture, "learner": learner, "T": paper_steps,
                "batch": args.batch, "wall_ms": round(cell["wall_ms"] * scale, 1), "cpu_ms": round(cell["cpu_ms"] * scale, 1),
                "scaled": scale != 1, "measured_T": run_steps,
                "measured_wall_ms": round(cell["wall_ms"], 1), "measured_cpu_ms": round(cell["cpu_ms"], 1),
                "memory_mb": round(cell["memory_mb"], 2), "memory_T": run_steps,
            })
    check = full_length_check(args) if not args.full and "nmnist" in args.datasets else []
    print_table(rows, check)
    report = {
        "what": "one training step (forward over T, backward, Adam; online DECOLLE: T Adam steps), random binary input",
        "device": "cpu", "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_average_at_start": load_before, "load_average_at_end": list(os.getloadavg()),
        "python": platform.python_version(), "torch": torch.__version__,
        "batch": args.batch, "repeats": args.repeats, "input_rate": args.rate, "conv_net": CONV,
        "conv_timed_at_T": "paper's T" if args.full else args.measure_steps,
        "memory_note": "memory_mb = saved-for-backward bytes + carried trace-rule state (memory_vs_T.py) at memory_T, "
                       "not process peak",
        "process_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "runtime_s": round(time.perf_counter() - started, 1),
        "rows": rows, "full_T_check": check,
    }
    write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")


def print_table(rows: list[dict], check: list[dict]) -> None:
    print(f"CPU, {torch.get_num_threads()} threads, batch {rows[0]['batch']}: step wall s / CPU s (memory MB at memory_T); "
          "* = scaled from a shorter T")
    cell = {(r["dataset"], r["net"], r["architecture"], r["learner"]): r for r in rows}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        print(f"{dataset} (T={DATASETS[dataset][1]})" + "".join(f"{name:>34s}" for name in LEARNERS))
        for net in ("conv", "fc"):
            for arch in ("ff", "rec"):
                cells = [cell[(dataset, net, arch, learner)] for learner in LEARNERS]
                text = "".join(
                    f"{c['wall_ms'] / 1e3:9.3f} /{c['cpu_ms'] / 1e3:8.3f}{'*' if c['scaled'] else ' '} "
                    f"({c['memory_mb']:7.1f} @{c['memory_T']:3d})"
                    for c in cells
                )
                print(f"  {net:4s} {arch:3s}      {text}")
    for c in check:
        scaled = cell[(c["dataset"], c["net"], c["architecture"], c["learner"])]
        print(f"check {c['dataset']} conv {c['architecture']} {c['learner']} T={c['T']}, run once: "
              f"wall {c['wall_ms'] / 1e3:.2f} s, "
              f"CPU {c['cpu_ms'] / 1e3:.2f} s, memory {c['memory_mb']:.1f} MB (scaled from T={scaled['measured_T']}: "
              f"wall {scaled['wall_ms'] / 1e3:.2f} s, CPU {scaled['cpu_ms'] / 1e3:.2f} s)")


if __name__ == "__main__":
    main()
