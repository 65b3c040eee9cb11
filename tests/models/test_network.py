"""FF/REC networks and BPTT against the same network built from snnTorch neurons."""

import pytest
import torch

from lightning_local.models import SpikingNetwork, per_step_cross_entropy
from lightning_local.models.snntorch_reference import SnnTorchReference
from lightning_local.neurons import LIFParameters

STEPS, BATCH, INPUTS, CLASSES = 40, 6, 30, 4


pytestmark = pytest.mark.usefixtures("float64")


def make_network(architecture, seed=0):
    torch.manual_seed(seed)
    net = SpikingNetwork(INPUTS, [20, 12], CLASSES, architecture, LIFParameters.from_time_constants(5.0, 10.0), recurrent_init_gain=1.0)
    for layer in net.layers:  # stronger weights so every layer fires
        layer.weight.data *= 3.0
    return net


def make_batch(seed=1):
    generator = torch.Generator().manual_seed(seed)
    frames = (torch.rand(BATCH, STEPS, INPUTS, generator=generator) < 0.3).double()
    labels = torch.randint(0, CLASSES, (BATCH,), generator=generator)
    return frames, labels


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_forward_matches_snntorch_network(architecture):
    net = make_network(architecture)
    frames, _ = make_batch()
    ours = net(frames)
    reference = SnnTorchReference(net)(frames)
    for layer_spikes in ours.spikes:
        assert 0 < layer_spikes.mean() < 0.9, "every layer must fire for the comparison to mean something"
    for a, b in zip(ours.spikes, reference.spikes):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.output_membrane, reference.output_membrane, rtol=0, atol=1e-6)


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_bptt_gradients_equal_autograd_through_snntorch(architecture):
    net = make_network(architecture)
    frames, labels = make_batch()
    per_step_cross_entropy(net(frames).output_membrane, labels).backward()
    ours = {name: p.grad.clone() for name, p in net.named_parameters()}
    net.zero_grad()
    per_step_cross_entropy(SnnTorchReference(net)(frames).output_membrane, labels).backward()
    assert architecture == "ff" or any("recurrent" in name for name in ours)
    for name, p in net.named_parameters():
        assert ours[name].abs().max() > 0, f"{name} got no gradient"
        torch.testing.assert_close(ours[name], p.grad, rtol=1e-6, atol=1e-8, msg=name)


def test_recurrent_weights_only_on_hidden_layers():
    net = SpikingNetwork(10, [8, 6], 3, "rec")
    assert [layer.recurrent_weight is not None for layer in net.layers] == [True, True, False]
    assert all(layer.recurrent_weight is None for layer in SpikingNetwork(10, [8, 6], 3, "ff").layers)
    with pytest.raises(ValueError, match="architecture"):
        SpikingNetwork(10, [8], 3, "lstm")


def test_step_api_equals_sequence_forward():
    net = make_network("rec")
    frames, _ = make_batch()
    states = net.initial_state(BATCH, frames)
    membranes = []
    for t in range(STEPS):
        states = net.step(frames[:, t], states)
        membranes.append(states[-1].mem)
    torch.testing.assert_close(torch.stack(membranes), net(frames).output_membrane, rtol=0, atol=1e-10)
