"""Backpropagation through time with surrogate gradients."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from lightning_local.learners import NEURON_SPACE, AutogradLearner
from lightning_local.models import per_step_cross_entropy

if TYPE_CHECKING:  # pragma: no cover
    from lightning_local.models import SpikingNetwork


class BPTT(AutogradLearner):
    """Exact gradient of the per-step cross-entropy through all layers and time steps.

    The network's fused LIF scan supplies the backward pass (surrogate spike
    derivative, detached reset); memory grows linearly with T.
    """

    name = "bptt"
    sparse_input = True  # the frames only meet the network's forward
    search_space = NEURON_SPACE

    def objective(self, network: "SpikingNetwork", frames: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        output = network(frames)
        loss = per_step_cross_entropy(output.output_membrane, labels)
        return loss, output.scores_for(labels), loss
