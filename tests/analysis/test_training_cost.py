"""Measured training cost: memory over T flat for the rules that declare it, growing for BPTT-like rules."""

from __future__ import annotations

import pytest
import torch

from lightning_local.analysis.training_cost import cost_over_steps, probe_module, step_cost, with_steps
from lightning_local.learners.registry import LEARNER_GROUP, available, learner_class
from lightning_local.module import SpikingClassifier

STEPS = (40, 80, 160)  # past one 32-step block, so block rules carry the same block at every T


def module(name: str, architecture: str = "ff") -> SpikingClassifier:
    torch.manual_seed(0)
    return SpikingClassifier(50, 4, learner=name, hidden_sizes=[16, 8], architecture=architecture)


def batch(steps: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return (torch.rand(4, steps, 50, generator=generator) < 0.2).float(), torch.randint(0, 4, (4,), generator=generator)


@pytest.fixture(scope="module")
def bptt_slopes() -> dict:
    """BPTT's memory over T, the yardstick of every rule's (measured once)."""
    rows, slopes = cost_over_steps(module("bptt", "rec"), *batch(), STEPS, repeats=1, warmup=0)
    assert slopes["memory_bytes_per_step"] > 0 and rows[-1]["memory_bytes"] > 3 * rows[0]["memory_bytes"]
    return slopes


@pytest.mark.parametrize("name", sorted(available(LEARNER_GROUP)))
def test_memory_slope_over_T_is_what_the_rule_declares(name, bptt_slopes):
    learner = learner_class(name)
    rows, slopes = cost_over_steps(module(name, "rec"), *batch(), STEPS, repeats=1, warmup=0)
    if learner.memory_constant_in_T:
        assert abs(slopes["memory_bytes_per_step"]) < 0.01 * bptt_slopes["memory_bytes_per_step"], rows
        assert rows[0]["memory_bytes"] > 0  # it measured something
    else:
        assert slopes["memory_bytes_per_step"] > 0.2 * bptt_slopes["memory_bytes_per_step"], rows


def test_the_probe_leaves_the_run_untouched_and_counts_carried_state():
    trained = module("eprop")
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    cost = step_cost(trained, *batch(), repeats=2, warmup=1)
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    assert cost["carried_bytes"] > 0 and cost["memory_bytes"] == cost["saved_bytes"] + cost["carried_bytes"]
    assert cost["step_ms_mean"] > 0 and cost["step_ms_std"] >= 0
    bptt = step_cost(module("bptt"), *batch(), repeats=1, warmup=0)
    assert bptt["carried_bytes"] == 0 and bptt["saved_bytes"] > 0  # BPTT's state is in autograd's saved tensors
    probe, step = probe_module(trained)
    step(*batch())
    assert not torch.equal(probe.network.layers[0].synapse.weight, trained.network.layers[0].synapse.weight)


def test_with_steps_repeats_frames_and_per_step_labels_along_time():
    frames = torch.arange(6.0).reshape(1, 3, 2)
    longer, labels = with_steps(frames, torch.tensor([[0, 1, 2]]), 7)
    assert longer.shape == (1, 7, 2) and torch.equal(longer[0, 3], frames[0, 0]) and labels.tolist() == [[0, 1, 2, 0, 1, 2, 0]]
    shorter, same = with_steps(frames, torch.tensor([1]), 2)
    assert torch.equal(shorter, frames[:, :2]) and same.tolist() == [1]


def test_a_slice_of_a_larger_batch_costs_what_its_own_batch_costs():
    frames, labels = batch()
    big = torch.cat([frames] * 8)  # the probe takes the first examples of an evaluation batch
    sliced = step_cost(module("bptt"), big[:4], labels, repeats=1, warmup=0)
    own = step_cost(module("bptt"), frames, labels, repeats=1, warmup=0)
    assert sliced["memory_bytes"] == own["memory_bytes"]
