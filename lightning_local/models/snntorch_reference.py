"""The same network built from snnTorch neurons in a Python time loop.

This is the independent reference our fused implementation is checked against
(tests) and timed against (``benchmarks/``): snnTorch's ``Synaptic`` neuron for
FF layers and ``RSynaptic`` for recurrent hidden layers, subtractive reset,
weights copied from a :class:`SpikingNetwork`.
"""

from __future__ import annotations

import snntorch as snn
import torch
from snntorch import surrogate as snn_surrogate
from torch import Tensor, nn

from .network import NetworkOutput, SpikingNetwork


class _CastingLinear(nn.Module):
    """Bias-free linear map that casts snnTorch's float32 spikes to the weight's dtype."""

    def __init__(self, weight: nn.Parameter) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, spikes: Tensor) -> Tensor:
        return spikes.to(self.weight.dtype) @ self.weight.t()


def _snntorch_surrogate(name: str, scale: float):
    if name == "fast_sigmoid":
        return snn_surrogate.fast_sigmoid(slope=scale)
    if name == "atan":
        return snn_surrogate.atan(alpha=scale)
    raise ValueError(f"No snnTorch counterpart for surrogate {name!r}.")


class SnnTorchReference(nn.Module):
    """A :class:`SpikingNetwork`'s twin made of snnTorch neurons (shares its weights).

    Args:
        network: the network whose parameters (same tensors, not copies) it uses.
    """

    def __init__(self, network: SpikingNetwork) -> None:
        super().__init__()
        p = network.params
        common = dict(
            alpha=p.alpha,
            beta=p.beta,
            threshold=p.v_th,
            reset_mechanism="subtract",
            spike_grad=_snntorch_surrogate(p.surrogate, p.surrogate_scale),
        )
        self.projections = nn.ModuleList(_CastingLinear(layer.synapse.weight) for layer in network.layers)
        neurons = []
        for layer in network.layers:
            if layer.recurrent is None:
                neurons.append(snn.Synaptic(**common))
            else:
                neuron = snn.RSynaptic(**common, all_to_all=True, linear_features=layer.out_features)
                neuron.recurrent = _CastingLinear(layer.recurrent.weight)
                neurons.append(neuron)
        self.neurons = nn.ModuleList(neurons)

    def forward(self, frames: Tensor) -> NetworkOutput:
        """Same contract as :meth:`SpikingNetwork.forward`."""
        batch = frames.shape[0]
        states = []
        for projection, neuron in zip(self.projections, self.neurons):
            zeros = frames.new_zeros(batch, projection.weight.shape[0])
            states.append([zeros, zeros, zeros] if isinstance(neuron, snn.RSynaptic) else [zeros, zeros])
        spikes: list[list[Tensor]] = [[] for _ in self.neurons]
        membranes: list[Tensor] = []
        for t in range(frames.shape[1]):
            x = frames[:, t]
            for i, (projection, neuron) in enumerate(zip(self.projections, self.neurons)):
                current = projection(x)
                if isinstance(neuron, snn.RSynaptic):
                    spk, syn, mem = neuron(current, *states[i])
                    states[i] = [spk, syn, mem]
                else:
                    spk, syn, mem = neuron(current, *states[i])
                    states[i] = [syn, mem]
                spikes[i].append(spk.to(frames.dtype))
                x = spk
            membranes.append(mem)
        return NetworkOutput(spikes=[torch.stack(s) for s in spikes], output_membrane=torch.stack(membranes))
