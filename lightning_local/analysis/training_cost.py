"""Training cost of a learning rule, measured: memory of one training step and step time, at several T.

Memory of a step (device-independent, allocator-independent) = the bytes autograd saves for the
backward pass (:func:`saved_tensor_bytes`, each storage once) + what the rule carries from one
time step to the next outside autograd and its accumulated updates
(:meth:`~lightning_local.learners.base.Learner.carried_state_bytes`; 0 for BPTT/FA, whose state
autograd saves). The input batch, the weights and the optimizer state - the same for every rule -
are not counted. The process's peak resident memory is reported beside it (it only grows). Step
time = forward, the rule's update and an Adam step, on a copy of the trained module, timed after
warm-up. Over T (the batch's frames repeated along time) the slopes of memory and time are the
measured form of the paper's Table I.
"""

from __future__ import annotations

import inspect
import math
import resource
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor


@contextmanager
def saved_tensor_bytes() -> Iterator[dict]:
    """Count the bytes autograd saves for backward inside the block (``result["bytes"]``), each storage once."""
    seen: set = set()
    result = {"bytes": 0}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in seen:
            seen.add(key)
            result["bytes"] += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield result


def probe_module(module):
    """A copy of a trained :class:`~lightning_local.module.SpikingClassifier` with its own Adam optimizer, so
    probing never changes the run's weights; returns ``(copy, step)`` where ``step(frames, labels)`` is one
    training step (the rule's update and an optimizer step)."""
    accepted = inspect.signature(type(module).__init__).parameters  # hparams may hold more (LightningCLI's _instantiator)
    probe = type(module)(**{k: v for k, v in module.hparams.items() if k in accepted}).to(module.device)
    probe.load_state_dict(module.state_dict())
    probe.train()
    optimizer = probe.configure_optimizers()
    probe.optimizers = lambda *args, **kwargs: optimizer  # rules that step within the sequence ask for it

    def step(frames: Tensor, labels: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        out = probe.learner.training_step(probe, frames, labels)
        if out.objective is not None:  # None: the rule stepped the optimizer itself
            out.objective.backward()
            optimizer.step()

    return probe, step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_cost(module, frames: Tensor, labels: Tensor, repeats: int = 5, warmup: int = 2) -> dict[str, float]:
    """Memory (bytes) of one training step of ``module``'s rule on ``(frames, labels)`` and its time (ms, mean and
    sample std over ``repeats`` steps after ``warmup``), on a probe copy (:func:`probe_module`)."""
    # a batch of its own: a slice of a larger batch shares that batch's storage, which the saved-tensor count
    # would charge in full wherever autograd saves the input
    frames, labels = frames.clone(), labels.clone()
    probe, step = probe_module(module)
    for _ in range(warmup):
        step(frames, labels)
    with saved_tensor_bytes() as saved:
        step(frames, labels)
    carried = probe.learner.carried_state_bytes(probe.network, frames)
    times = []
    for _ in range(repeats):
        _sync(frames.device)
        start = time.perf_counter()
        step(frames, labels)
        _sync(frames.device)
        times.append(1000 * (time.perf_counter() - start))
    return {"memory_bytes": float(saved["bytes"] + carried), "saved_bytes": float(saved["bytes"]),
            "carried_bytes": float(carried), "step_ms_mean": float(np.mean(times)),
            "step_ms_std": float(np.std(times, ddof=1)) if len(times) > 1 else 0.0,
            "process_peak_bytes": float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}


def with_steps(frames: Tensor, labels: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """The batch at ``steps`` time steps: its frames (and per-step labels) repeated along time, then cut."""
    repeats = math.ceil(steps / frames.shape[1])
    frames = frames.repeat(1, repeats, *([1] * (frames.dim() - 2)))[:, :steps]
    if labels.dim() == 2:  # one label per step (speech)
        labels = labels.repeat(1, repeats)[:, :steps]
    return frames.contiguous(), labels


def cost_over_steps(module, frames: Tensor, labels: Tensor, steps: Sequence[int], repeats: int = 3,
                    warmup: int = 1) -> tuple[list[dict], dict[str, float]]:
    """:func:`step_cost` at every T in ``steps`` and the least-squares slopes: memory bytes and ms per time step."""
    rows = []
    for t in steps:
        rows.append({"T": int(t), **step_cost(module, *with_steps(frames, labels, t), repeats=repeats, warmup=warmup)})
    if len(rows) < 2:
        return rows, {}
    ts = np.array([r["T"] for r in rows], dtype=np.float64)
    slopes = {"memory_bytes_per_step": float(np.polyfit(ts, [r["memory_bytes"] for r in rows], 1)[0]),
              "step_ms_per_step": float(np.polyfit(ts, [r["step_ms_mean"] for r in rows], 1)[0])}
    return rows, slopes
