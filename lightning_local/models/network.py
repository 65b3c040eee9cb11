"""Fully connected LIF networks: feed-forward (FF) and explicitly recurrent (REC).

A network is a stack of :class:`LIFLayer`. In REC networks every *hidden*
layer has its own recurrent weights ``V``; the output layer never does.

Readout (documented choice): the output layer is made of the same LIF neurons;
its membrane potential ``u^t`` is read out at every step. The training loss is
the mean over time of the per-step cross-entropy of ``u^t`` (so every step has
its own learning signal, which online rules such as e-prop and DECOLLE need),
and the prediction is ``argmax_c sum_t u_c^t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import torch
from torch import Tensor, nn

from ..neurons import LIFParameters, LIFState, lif_sequence, lif_step
from ..neurons.backends import check_backend

Architecture = Literal["ff", "rec"]

#: Default gain of the output layer's initial weights (see :class:`SpikingNetwork`). At
#: tau 5/10 steps it scales ``nn.Linear``'s initialisation by 0.086, close to the 0.1 that made
#: feedback alignment learn on N-MNIST; being relative to the neuron's gain it keeps the output
#: unsaturated at any decay factors (Table VII's 0.99/0.95 -> scale 0.0025).
DEFAULT_OUTPUT_INIT_GAIN = 5.0


class LIFLayer(nn.Module):
    """One fully connected layer of LIF neurons (eq. 1), bias-free like the paper.

    Args:
        in_features: size of the presynaptic layer.
        out_features: number of LIF neurons.
        params: neuron constants.
        recurrent: add recurrent weights ``V`` (REC hidden layers).
        recurrent_init_gain: ``V`` starts as ``nn.Linear``'s uniform initialisation times this gain.
        weight_init_gain: ``None``: ``W`` keeps ``nn.Linear``'s initialisation. A number ``g``:
            that initialisation is scaled by ``g (1 - alpha)(1 - beta)``, so a constant input
            drive reaches the membrane with gain ``g`` instead of the neuron's steady-state gain
            ``1 / ((1 - alpha)(1 - beta))`` (58 at tau 5/10 steps, 2,000 at decays 0.99/0.95).
        backend: implementation of the scan (see :mod:`lightning_local.neurons.backends`).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        params: LIFParameters,
        recurrent: bool = False,
        recurrent_init_gain: float = 0.1,
        weight_init_gain: Optional[float] = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.params = params
        self.backend = check_backend(backend)
        self.recurrent_init_gain = recurrent_init_gain
        self.weight_init_gain = weight_init_gain
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.recurrent_weight: Optional[nn.Parameter] = (
            nn.Parameter(torch.empty(out_features, out_features)) if recurrent else None
        )
        self.reset_parameters()

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def reset_parameters(self) -> None:
        # nn.Linear's default initialisation for W. V gets the same, scaled down: at full
        # scale a REC layer starts at ~10x FF's firing rate (N-MNIST: 34 % vs 3.4 % in the
        # first layer) and trains far worse; at 0.1 it starts close to FF and learns V.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.weight_init_gain is not None:
            with torch.no_grad():
                self.weight.mul_(self.weight_init_gain / self.params.steady_state_gain)
        if self.recurrent_weight is not None:
            nn.init.kaiming_uniform_(self.recurrent_weight, a=math.sqrt(5))
            with torch.no_grad():
                self.recurrent_weight.mul_(self.recurrent_init_gain)

    def forward(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Whole sequence: ``inputs`` ``[T, B, in]`` -> ``(spikes, membrane)`` ``[T, B, out]``."""
        # One matmul projects all time steps at once; the scan does the rest.
        currents = inputs @ self.weight.t()
        return lif_sequence(currents, self.params, self.recurrent_weight, backend=self.backend)

    def step(self, inputs: Tensor, state: LIFState) -> LIFState:
        """One time step: ``inputs`` ``[B, in]``; returns the new state (with spikes)."""
        return lif_step(inputs @ self.weight.t(), state, self.params, self.recurrent_weight)

    def initial_state(self, batch: int, like: Tensor) -> LIFState:
        """Zero state for a batch, on ``like``'s device and dtype."""
        return LIFState.zeros(batch, self.out_features, like)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, recurrent={self.recurrent_weight is not None}"


@dataclass
class NetworkOutput:
    """What a forward pass produced, all time-major.

    Attributes:
        spikes: spikes of every layer (hidden layers first, output last), each ``[T, B, n_l]``.
        output_membrane: membrane potential of the output layer ``[T, B, classes]``.
    """

    spikes: list[Tensor]
    output_membrane: Tensor

    @property
    def logits(self) -> Tensor:
        """Class scores ``[B, classes]``: output membrane averaged over time."""
        return self.output_membrane.mean(dim=0)

    @property
    def frame_logits(self) -> Tensor:
        """Class scores of every step ``[B, classes, T]`` (sequence labelling; torchmetrics' layout)."""
        return self.output_membrane.permute(1, 2, 0)

    def scores_for(self, labels: Tensor) -> Tensor:
        """The scores that ``labels`` grade: :attr:`logits` for ``[B]`` labels, :attr:`frame_logits` for ``[B, T]``."""
        return self.logits if labels.dim() == 1 else self.frame_logits


class SpikingNetwork(nn.Module):
    """FF or REC fully connected SNN of LIF neurons.

    Args:
        num_inputs: input features per time step.
        hidden_sizes: neurons per hidden layer (paper: N-MNIST 120-84, DVS Gesture 512, TIMIT 400).
        num_classes: output neurons.
        architecture: ``"ff"`` (feed-forward) or ``"rec"`` (recurrent weights on hidden layers).
        params: neuron constants shared by all layers.
        recurrent_init_gain: scale of the initial recurrent weights (REC only).
        output_init_gain: the output layer's ``weight_init_gain`` (see :class:`LIFLayer`). The
            output neuron integrates its input with the steady-state gain ``1/((1-alpha)(1-beta))``,
            so with ``nn.Linear``'s initialisation it starts saturated (logit std ~6 at tau 5/10,
            initial loss 7 against chance 2.3), and random-feedback rules then never align.
            ``None`` keeps ``nn.Linear``'s scale.
        hidden_init_gain: the hidden layers' ``weight_init_gain`` (``None``: ``nn.Linear``'s scale).
        backend: implementation of the LIF scan in every layer (``auto``: Triton on CUDA, else
            the fused scan; see :mod:`lightning_local.neurons.backends`).
    """

    def __init__(
        self,
        num_inputs: int,
        hidden_sizes: Sequence[int],
        num_classes: int,
        architecture: Architecture = "ff",
        params: LIFParameters = LIFParameters(),
        recurrent_init_gain: float = 0.1,
        output_init_gain: Optional[float] = DEFAULT_OUTPUT_INIT_GAIN,
        hidden_init_gain: Optional[float] = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if architecture not in ("ff", "rec"):
            raise ValueError(f"Unknown architecture {architecture!r}: use 'ff' or 'rec'.")
        sizes = [num_inputs, *hidden_sizes, num_classes]
        self.architecture = architecture
        self.params = params
        hidden = len(hidden_sizes)
        self.layers = nn.ModuleList(
            LIFLayer(
                n_in,
                n_out,
                params,
                recurrent=architecture == "rec" and i < hidden,
                recurrent_init_gain=recurrent_init_gain,
                weight_init_gain=hidden_init_gain if i < hidden else output_init_gain,
                backend=backend,
            )
            for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))
        )

    @property
    def num_inputs(self) -> int:
        return self.layers[0].in_features

    def forward(self, frames: Tensor) -> NetworkOutput:
        """Run a batch ``frames`` ``[B, T, num_inputs]`` through all layers."""
        x = frames.transpose(0, 1)  # time-major for the scan
        spikes: list[Tensor] = []
        membrane = x
        for layer in self.layers:
            x, membrane = layer(x)
            spikes.append(x)
        return NetworkOutput(spikes=spikes, output_membrane=membrane)

    def initial_state(self, batch: int, like: Tensor) -> list[LIFState]:
        """Zero state of every layer (for step-by-step simulation)."""
        return [layer.initial_state(batch, like) for layer in self.layers]

    def step(self, frame: Tensor, states: list[LIFState]) -> list[LIFState]:
        """Advance every layer by one step on ``frame`` ``[B, num_inputs]``."""
        new_states = []
        x = frame
        for layer, state in zip(self.layers, states):
            state = layer.step(x, state)
            new_states.append(state)
            x = state.spk
        return new_states


#: Label of a time step (or sample) without a target: padding, TIMIT's ``q`` (torch's ``ignore_index``).
IGNORE_INDEX = -100


def per_step_cross_entropy(output_membrane: Tensor, labels: Tensor) -> Tensor:
    """Mean over all targeted (time step, sample) pairs of the cross-entropy of ``u^t`` (the training loss).

    ``labels`` is ``[B]`` (one class per sequence, the target of every step) or ``[B, T]`` (one
    class per step); entries equal to :data:`IGNORE_INDEX` are left out of the sum and the count
    (0 when nothing is targeted).
    """
    steps, batch, classes = output_membrane.shape
    targets = labels.repeat(steps) if labels.dim() == 1 else labels.t().reshape(steps * batch)  # time-major
    total = nn.functional.cross_entropy(
        output_membrane.reshape(steps * batch, classes), targets, ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return total / (targets != IGNORE_INDEX).sum().clamp(min=1)
