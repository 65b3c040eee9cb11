"""The ReLU ANN counterpart of a spiking network: the same weights on time-averaged input.

One definition, used by ANN->SNN conversion (which trains this ANN) and by the FGSM
analysis (which crafts the paper's perturbation on it, Table IV). For a network with
weights ``W_1 .. W_L`` and input frames ``x^1 .. x^T``::

    a_0 = mean_t x^t                      (input rates per step, in [0, 1] for binary frames)
    a_l = ReLU(W_l a_{l-1})               (hidden layers, bias-free like the SNN; W_l may be a convolution)
    logits = W_L a_{L-1}                  (no ReLU on the output)

Recurrent weights ``V`` have no counterpart: the ANN sees one time-averaged vector, so
there is no earlier step to recur from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional

import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # pragma: no cover
    from .network import SpikingNetwork


def ann_activations(network: "SpikingNetwork", rates: Tensor, weights: Optional[Sequence[Tensor]] = None) -> list[Tensor]:
    """Activations ``[a_1, ..., a_{L-1}, logits]`` of the bias-free ReLU ANN on input rates ``[B, *input_shape]``.

    Each layer applies its synapse (dense or convolutional) with the network's weights,
    or with ``weights`` (one tensor per layer, e.g. saved ANN weights) when given.
    """
    activations = []
    a = rates
    layers = network.layers
    for l, layer in enumerate(layers):
        a = layer.synapse.transmit(a, None if weights is None else weights[l])
        if l < len(layers) - 1:
            a = torch.relu(a)
        activations.append(a)
    return activations


class ANNCounterpart(nn.Module):
    """``frames [B, T, N] -> logits [B, C]`` of the ReLU ANN with a :class:`SpikingNetwork`'s weights.

    The weights are the network's own parameters (shared, not copied), so gradients
    and later weight changes are seen as they are. The input is ``frames.mean(dim=1)``.

    Args:
        network: the spiking network whose feed-forward weights ``W_l`` are used.
    """

    def __init__(self, network: "SpikingNetwork") -> None:
        super().__init__()
        self.network = network

    def forward(self, frames: Tensor) -> Tensor:
        """Logits of the ANN on the time-averaged ``frames``."""
        return ann_activations(self.network, frames.mean(dim=1))[-1]
