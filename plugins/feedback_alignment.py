"""Feedback alignment (Lillicrap et al. 2016) and direct feedback alignment (Nokland 2016) through time."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lightning_local.learners import NEURON_SPACE, AutogradLearner
from lightning_local.learners.traces import fixed_uniform
from lightning_local.models import NetworkOutput, per_step_cross_entropy

if TYPE_CHECKING:  # pragma: no cover
    from lightning_local.models import SpikingNetwork


def _detached_input(synapse):
    """The synapse's map with its input cut from the graph (DFA: no gradient between layers)."""
    return lambda x: synapse(x.detach())


class FeedbackAlignment(AutogradLearner):
    r"""Feedback alignment through time (``direct=False``) or direct feedback alignment (``direct=True``).

    **FA** (``direct=False``). The forward pass is the network's own (the fused
    LIF scan of every layer), and errors travel backward layer by layer and
    through time exactly as in BPTT - surrogate derivatives, synaptic and
    membrane time constants, detached reset - except at the *input synapse*
    of every layer ``l >= 1``: the error reaching the presynaptic spikes is sent
    back through a fixed random ``B_l`` of ``W_l``'s shape instead of ``W_l``
    (:meth:`~lightning_local.synapses.Synapse.with_feedback`: ``dy B_l`` for a dense
    synapse, the transposed convolution with kernel ``B_l`` for a conv one). Weight
    gradients stay the usual ones (``sum_t dy^t (x^t)^T`` for dense synapses). Documented choice for REC
    networks: the recurrent path *inside* a layer (``s^{t-1} -> V -> iota^t``) keeps
    ``V^T`` in the backward pass (it is the temporal part of the layer's own
    dynamics, computed by the fused scan); only the spatial transport between
    layers is random, so for one-hidden-layer FF networks FA differs from BPTT
    only in the error sent to the hidden layer.

    **DFA** (``direct=True``). The per-step output error ``delta^t = dE/du_out^t``
    (``(softmax(u_out^t) - onehot)/N`` on targeted steps, ``N`` their number; zero on
    ``IGNORE_INDEX`` steps of ``[B, T]`` labels) is sent straight to every hidden layer:
    hidden layer ``l`` receives ``delta^t B_l^T`` (``B_l in R^{n_l x C}``) *as the
    error of its spikes* ``s_l^t`` at the *same* step ``t``. Time is handled by
    backpropagating these injected errors through the layer's own dynamics (its
    synaptic/membrane chains and, for REC, its own recurrent ``V``) with the fused
    scan - BPTT within a layer, nothing between layers: every layer's input is
    detached. The output layer gets the exact gradient of the task loss
    with respect to ``W_out`` (its input is detached too). The implementation
    back-propagates ``E + sum_{l,t} <s_l^t, sg(delta^t B_l^T)>`` (``sg`` = stop-gradient),
    whose gradient is exactly this update; the logged loss is ``E``.

    **Feedback matrices** are drawn once in :meth:`attach` as
    ``U(-1/sqrt(fan), 1/sqrt(fan))`` (``nn.Linear``'s default scale; ``fan`` = the fan-in
    of ``W_l`` for FA, the layer's neuron count ``n_l`` for DFA) from ``torch.Generator().manual_seed(seed + l)`` and
    registered as buffers ``feedback_{l}`` (checkpointed, moved with the module,
    identical on every DDP rank and broadcast by DDP). FA needs one per layer
    ``l >= 1``; DFA one per hidden layer ``l < L``.

    Memory and time are those of BPTT (it is BPTT with other transport matrices).

    Args:
        direct: use DFA instead of FA.
        seed: seed of the feedback matrices.
    """

    name = "fa"
    sparse_input = True  # the frames only meet the network's forward
    search_space = NEURON_SPACE

    def __init__(self, direct: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.direct = direct
        self.seed = seed

    def attach(self, network: "SpikingNetwork") -> None:
        layers = network.layers
        like = layers[0].synapse.weight
        if self.direct:
            classes = layers[-1].out_features
            for l in range(len(layers) - 1):
                n_l = layers[l].out_features
                self.register_buffer(f"feedback_{l}", fixed_uniform((n_l, classes), n_l, self.seed + l, like))
        else:
            for l in range(1, len(layers)):
                weight = layers[l].synapse.weight
                fan_in = weight[0].numel()
                self.register_buffer(f"feedback_{l}", fixed_uniform(tuple(weight.shape), fan_in, self.seed + l, like))

    def feedback_matrix(self, l: int) -> Tensor:
        """``B_l``: ``W_l``'s shape for FA (layers ``l >= 1``), ``[n_l, classes]`` for DFA (hidden layers)."""
        return getattr(self, f"feedback_{l}")

    def forward_fa(self, network: "SpikingNetwork", frames: Tensor) -> NetworkOutput:
        """Network forward whose backward is feedback alignment (values equal the network's)."""
        routes = [None] + [
            functools.partial(layer.synapse.with_feedback, feedback=self.feedback_matrix(l))
            for l, layer in enumerate(network.layers) if l > 0
        ]
        return network(frames, synapse_inputs=routes)

    def objective(self, network: "SpikingNetwork", frames: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if not self.direct:
            output = self.forward_fa(network, frames)
            loss = per_step_cross_entropy(output.output_membrane, labels)
            return loss, output.scores_for(labels), loss
        # DFA: every layer sees a detached input; hidden layers get the projected output error.
        output = network(frames, synapse_inputs=[_detached_input(layer.synapse) for layer in network.layers])
        hidden, membrane = output.spikes[:-1], output.output_membrane
        loss = per_step_cross_entropy(membrane, labels)
        # delta^t = dE/du_out^t, exact for [B] and masked [B, T] labels alike (the output's input is detached).
        (delta,) = torch.autograd.grad(loss, membrane, retain_graph=True)  # [T, B, C]
        objective = loss
        for l, spikes in enumerate(hidden):
            injected = (delta @ self.feedback_matrix(l).t()).view_as(spikes)  # [T, B, *out_shape_l]
            objective = objective + (spikes * injected).sum()
        return loss, output.scores_for(labels), objective


class DirectFeedbackAlignment(FeedbackAlignment):
    """Direct feedback alignment registered as a rule of its own (``--learner dfa``): ``FeedbackAlignment(direct=True)``.

    Its own name lets benchmark specs, tuned configs and reports list DFA beside FA.

    Args:
        seed: seed of the feedback matrices.
    """

    name = "dfa"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(direct=True, seed=seed)
