"""NeuroBench's inference metrics on our layers: hand counts, footprint, and equality with ``neurobench`` itself."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_local.analysis.cost import CostCounter, connection_sparsity, footprint_bytes
from lightning_local.models import NetworkOutput, SpikingNetwork
from lightning_local.neurons import LIFParameters


def tiny_net(architecture: str = "ff") -> SpikingNetwork:
    net = SpikingNetwork(3, [2], 2, architecture)
    with torch.no_grad():
        net.layers[0].synapse.weight.copy_(torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]))  # column nnz: 2, 1, 2
        net.layers[1].synapse.weight.fill_(0.5)
        if architecture == "rec":
            net.layers[0].recurrent.weight.copy_(torch.tensor([[0.0, 1.0], [0.0, 1.0]]))  # only neuron 1 feeds back
    return net


def known_output() -> tuple[torch.Tensor, NetworkOutput]:
    frames = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])  # [B=1, T=2, 3]
    hidden = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])  # [T, B, 2]
    out = torch.tensor([[[0.0, 1.0]], [[0.0, 0.0]]])
    return frames, NetworkOutput(spikes=[hidden, out], output_membrane=torch.zeros(2, 1, 2))


def test_synaptic_operations_equal_a_hand_count():
    frames, output = known_output()
    counter = CostCounter(["hidden1", "output"])
    counter.update(tiny_net(), frames, output)
    layers = counter.per_layer().set_index("layer")
    # layer 0: t0 inputs 0, 1 -> 2 + 1 connections; t1 input 2 -> 2; layer 1: t0 one spike x 2, t1 two x 2
    assert layers.effective_acs.tolist() == [5, 6] and layers.effective_macs.tolist() == [0, 0]
    assert layers.dense_ops.tolist() == [2 * 6, 2 * 4]
    totals = counter.totals()
    assert totals["effective_acs"] == 11 and totals["dense_ops"] == 20
    assert totals["activation_sparsity"] == 0.5  # 4 of 8 spike entries are 1
    assert totals["membrane_updates"] == (2 + 2) * 2


def test_recurrent_synapse_counts_the_previous_steps_spikes():
    frames, output = known_output()
    counter = CostCounter(["hidden1", "output"])
    counter.update(tiny_net("rec"), frames, output)
    # V sees the hidden spikes of t-1: nothing at t0; at t1 [1, 0] -> neuron 0's column of V has no weight
    assert counter.per_layer().effective_acs.tolist() == [5 + 0, 6]
    assert counter.per_layer().dense_ops.tolist() == [12 + 2 * 4, 8]
    hidden = torch.tensor([[[0.0, 1.0]], [[1.0, 1.0]]])  # neuron 1 fires at t0: its column has 2 weights
    counter = CostCounter(["hidden1", "output"])
    counter.update(tiny_net("rec"), frames, NetworkOutput([hidden, output.spikes[1]], output.output_membrane))
    assert counter.per_layer().effective_acs.tolist()[0] == 5 + 2


def test_dense_inputs_count_as_macs():
    frames, output = known_output()
    counter = CostCounter(["hidden1", "output"])
    counter.update(tiny_net(), frames * 0.5, output)
    assert counter.per_layer().effective_macs.tolist() == [5, 0] and counter.per_layer().effective_acs.tolist() == [0, 6]


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_footprint_is_the_parameter_bytes_and_sparsity_counts_zero_weights(architecture):
    net = tiny_net(architecture)
    weights = 3 * 2 + 2 * 2 + (2 * 2 if architecture == "rec" else 0)
    assert footprint_bytes(net) == 4 * weights  # float32, no buffers
    zeros = 1 + (2 if architecture == "rec" else 0)
    assert connection_sparsity(net) == pytest.approx(zeros / weights)


class SnnTorchTwin(nn.Module):
    """The same net as snnTorch layers NeuroBench can hook: bias-free ``nn.Linear`` and ``Synaptic``/``RSynaptic``."""

    def __init__(self, net: SpikingNetwork) -> None:
        super().__init__()
        p = net.params
        common = dict(alpha=p.alpha, beta=p.beta, threshold=p.v_th, reset_mechanism="subtract", init_hidden=True)
        self.linears = nn.ModuleList()
        self.neurons = nn.ModuleList()
        for l, layer in enumerate(net.layers):
            linear = nn.Linear(layer.in_features, layer.out_features, bias=False)
            linear.weight = nn.Parameter(layer.synapse.weight.detach().clone())
            self.linears.append(linear)
            last = l == len(net.layers) - 1
            if layer.recurrent is None:
                self.neurons.append(snn.Synaptic(**common, output=last))
            else:
                neuron = snn.RSynaptic(**common, all_to_all=True, linear_features=layer.out_features, output=last)
                neuron.recurrent = nn.Linear(layer.out_features, layer.out_features, bias=False)
                neuron.recurrent.weight = nn.Parameter(layer.recurrent.weight.detach().clone())
                self.neurons.append(neuron)

    def forward(self, x):
        for linear, neuron in zip(self.linears, self.neurons):
            x = neuron(linear(x))
        spikes, _, membrane = x
        return spikes, membrane


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_our_metrics_equal_neurobench_on_a_snntorch_twin(architecture):
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
    from neurobench.models import SNNTorchModel

    torch.manual_seed(0)
    net = SpikingNetwork(40, [16, 12], 5, architecture, params=LIFParameters(v_th=0.5), recurrent_init_gain=0.5)
    with torch.no_grad():
        net.layers[0].synapse.weight[:, :5] = 0  # some pruned connections
    frames = (torch.rand(24, 30, 40) < 0.2).float()
    output = net(frames)
    assert all(s.sum() > 0 for s in output.spikes), "every layer must fire for the comparison to mean something"
    counter = CostCounter(["hidden1", "hidden2", "output"])
    for batch in frames.split(8):
        counter.update(net, batch, net(batch))
    ours = counter.totals()

    spikes = SNNTorchModel(SnnTorchTwin(net))(frames).transpose(0, 1)
    assert torch.equal(spikes, output.spikes[-1]), "the twin must spike exactly as our net"
    # a fresh twin and one batch: snnTorch's reset between batches leaves Synaptic's current behind (NeuroBench's SNNTorchModel says so)
    loader = DataLoader(TensorDataset(frames, torch.zeros(24, dtype=torch.long)), batch_size=24)
    theirs = Benchmark(SNNTorchModel(SnnTorchTwin(net)), loader, [], [],
                       [[Footprint, ConnectionSparsity], [ActivationSparsity, SynapticOperations]]).run(quiet=True)
    assert ours["effective_acs"] == theirs["SynapticOperations"]["Effective_ACs"]
    assert ours["effective_macs"] == theirs["SynapticOperations"]["Effective_MACs"] == 0
    assert ours["dense_ops"] == theirs["SynapticOperations"]["Dense"]
    assert ours["activation_sparsity"] == pytest.approx(theirs["ActivationSparsity"], abs=1e-12)
    # snnTorch keeps each neuron's constants (alpha, beta, threshold, ...) as tensors; ours are Python floats
    constants = sum(b.numel() * b.element_size() for b in SnnTorchTwin(net).neurons.buffers())
    assert constants > 0 and footprint_bytes(net) == theirs["Footprint"] - constants
    assert connection_sparsity(net) == pytest.approx(theirs["ConnectionSparsity"], abs=1e-3)  # theirs: 3 decimals
