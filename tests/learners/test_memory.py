"""Every rule that declares ``memory_constant_in_T`` keeps nothing of length T: saved-for-backward bytes do not grow
with T (BPTT's do)."""

from __future__ import annotations

import pytest
import torch

from lightning_local.learners import LEARNER_GROUP, available, learner_class
from lightning_local.learners.traces import BlockSimulation, OnlineSimulation, blocks
from lightning_local.module import SpikingClassifier

INPUTS, CLASSES, BATCH = 64, 10, 4


def saved_bytes_of_training_step(learner, architecture, steps):
    torch.manual_seed(0)
    module = SpikingClassifier(INPUTS, CLASSES, learner=learner, architecture=architecture, hidden_sizes=[32, 16])
    frames = (torch.rand(BATCH, steps, INPUTS) < 0.2).float()
    labels = torch.randint(0, CLASSES, (BATCH,))
    seen, total = set(), [0]

    def pack(tensor):
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in seen:
            seen.add(key)
            total[0] += storage.nbytes()
        return tensor

    optimizer = torch.optim.SGD(module.parameters(), lr=1e-3)
    module.optimizers = lambda: optimizer  # online DECOLLE and OTTT_O step it within the sequence
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step = module.learner.training_step(module, frames, labels)
        if step.objective is not None:
            step.objective.backward()
    return total[0]


# The registered rules that declare it, and the options that change how they step.
CONSTANT_IN_T = [name for name in sorted(available(LEARNER_GROUP)) if learner_class(name).memory_constant_in_T]
OPTION_VARIANTS = [
    {"class_path": "lightning_local.plugins.eprop.EProp", "init_args": {"feedback": "chained"}},
    {"class_path": "lightning_local.plugins.decolle.Decolle", "init_args": {"online": False}},  # default: online
    {"class_path": "lightning_local.plugins.ottt.OTTT", "init_args": {"variant": "O"}},  # a step per time step
    {"class_path": "lightning_local.plugins.sltt.SLTT", "init_args": {"k": 5}},
    {"class_path": "lightning_local.plugins.ostl.OSTL", "init_args": {"reset": "detached"}},
]


def test_the_online_rules_declare_it():
    assert {"eprop", "decolle", "ottt", "sltt", "ostl"} <= set(CONSTANT_IN_T) and "bptt" not in CONSTANT_IN_T


@pytest.mark.parametrize("architecture", ["ff", "rec"])
@pytest.mark.parametrize("learner", CONSTANT_IN_T + OPTION_VARIANTS, ids=str)
def test_saved_bytes_do_not_grow_with_T(learner, architecture):
    short, long = (saved_bytes_of_training_step(learner, architecture, steps) for steps in (20, 160))
    assert short == long
    assert long <= 2 * sum(p.numel() * 4 for p in SpikingClassifier(INPUTS, CLASSES, architecture=architecture,
                                                                        hidden_sizes=[32, 16]).parameters())


def test_bptt_saved_bytes_grow_with_T():
    short, long = (saved_bytes_of_training_step("bptt", "ff", steps) for steps in (20, 160))
    assert long > 6 * short


def test_carried_state_is_independent_of_T():
    torch.manual_seed(0)
    module = SpikingClassifier(INPUTS, CLASSES, architecture="rec", hidden_sizes=[32, 16])
    like = torch.zeros(BATCH, 5, INPUTS)
    assert OnlineSimulation(module.network, BATCH, like).state_nbytes() == OnlineSimulation(
        module.network, BATCH, torch.zeros(BATCH, 500, INPUTS)).state_nbytes()


@pytest.mark.parametrize("traces", [True, False])  # e-prop's block schedule; SLTT's (no traces)
def test_block_state_is_independent_of_T(traces):
    torch.manual_seed(0)
    module = SpikingClassifier(INPUTS, CLASSES, architecture="rec", hidden_sizes=[32, 16])
    nbytes = [BlockSimulation(module.network, BATCH, torch.zeros(BATCH, steps, INPUTS), traces=traces).state_nbytes()
              for steps in (5, 500)]
    assert nbytes[0] == nbytes[1]


def test_blocks_cover_the_sequence_and_respect_update_boundaries():
    assert list(blocks(70, 32)) == [(0, 32), (32, 64), (64, 70)]
    assert list(blocks(10, 32, boundary=4)) == [(0, 4), (4, 8), (8, 10)]
    assert list(blocks(70, 32, boundary=40)) == [(0, 32), (32, 40), (40, 70)]


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("boundary", [20, 1])  # blocks of 16, 4, 16, 4, 5 steps; or single steps
def test_block_input_trace_equals_step_by_step_accumulation(boundary, kind):
    from lightning_local.learners.traces import BlockInputTrace, PresynapticTrace
    from lightning_local.synapses import ConvSynapse, LinearSynapse

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        alpha, beta, batch = 0.8, 0.9, 3
        synapse = LinearSynapse(7, 5) if kind == "linear" else ConvSynapse((2, 6, 6), 3, kernel_size=3, padding=1)
        in_shape, out_shape = synapse.in_shape, synapse.out_shape
        generator = torch.Generator().manual_seed(0)
        x = (torch.rand(45, batch, *in_shape, generator=generator) < 0.4).double()
        g = torch.randn(45, batch, *out_shape, generator=generator)
        like = torch.zeros(())
        step_trace = PresynapticTrace(batch, in_shape, like, alpha, beta)
        block_trace = BlockInputTrace(batch, in_shape, like, alpha, beta, 16)
        expected, ours = torch.zeros_like(synapse.weight), torch.zeros_like(synapse.weight)
        for t in range(45):  # the definition: sum_t g^t (x) z2^t, one step at a time
            expected += synapse.weight_gradient(g[t], step_trace.update(x[t]))
        for start, stop in blocks(45, 16, boundary=boundary):
            block_trace.accumulate(ours, g[start:stop], x[start:stop].reshape(-1, *in_shape), synapse)
        assert expected.abs().max() > 1.0
        torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(block_trace.z1, step_trace.z1, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(block_trace.z2, step_trace.z2, rtol=1e-12, atol=1e-12)
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_online_simulation_reproduces_the_network_over_several_blocks(architecture):
    torch.manual_seed(0)
    module = SpikingClassifier(INPUTS, CLASSES, architecture=architecture, hidden_sizes=[32, 16])
    frames = (torch.rand(BATCH, 75, INPUTS) < 0.3).float()
    with torch.no_grad():
        output = module.network(frames)
        sim = OnlineSimulation(module.network, BATCH, frames)
        x_seq = frames.transpose(0, 1)
        for start, stop in blocks(75, 32):
            sim.begin_block(x_seq[start:stop])
            for i in range(stop - start):
                sim.step(i)
                for l in range(3):
                    assert torch.equal(sim.spk[l], output.spikes[l][start + i])
                torch.testing.assert_close(sim.mem[-1], output.output_membrane[start + i])
            sim.end_block(torch.zeros_like(module.network.layers[0].weight))
