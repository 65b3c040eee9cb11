"""LIF networks, fully connected or convolutional: feed-forward (FF) and explicitly recurrent (REC).

A network is a stack of :class:`LIFLayer`, each a synapse (:mod:`lightning_local.synapses`)
feeding LIF neurons. In REC networks every *hidden* layer has its own recurrent
synapse ``V``; the output layer never does.

Readout (documented choice): the output layer is made of the same LIF neurons;
its membrane potential ``u^t`` is read out at every step. The training loss is
the mean over time of the per-step cross-entropy of ``u^t`` (so every step has
its own learning signal, which online rules such as e-prop and DECOLLE need),
and the prediction is ``argmax_c sum_t u_c^t``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Literal, Optional, Sequence

import torch
from torch import Tensor, nn

from ..neurons import LIFParameters, LIFState, lif_sequence, lif_step
from ..neurons.backends import check_backend
from ..sparse_frames import SparseFrames
from ..synapses import ConvSynapse, LinearSynapse, Synapse

Architecture = Literal["ff", "rec"]

#: Default gain of the output layer's initial weights (see :class:`SpikingNetwork`). At
#: tau 5/10 steps it scales ``nn.Linear``'s initialisation by 0.086, close to the 0.1 that made
#: feedback alignment learn on N-MNIST; being relative to the neuron's gain it keeps the output
#: unsaturated at any decay factors (Table VII's 0.99/0.95 -> scale 0.0025).
DEFAULT_OUTPUT_INIT_GAIN = 5.0


#: Parameter names of a layer in checkpoints written before the synapse split -> their names now.
LEGACY_LAYER_KEYS = {"weight": "synapse.weight", "recurrent_weight": "recurrent.weight"}
_LEGACY_KEY = re.compile(r"(^|\.)layers\.(\d+)\.(" + "|".join(LEGACY_LAYER_KEYS) + r")$")


def upgrade_layer_keys(state_dict: dict) -> dict:
    """``state_dict`` with the old layer parameter names (``layers.N.weight``) renamed to today's."""
    return {_LEGACY_KEY.sub(lambda m: f"{m[1]}layers.{m[2]}.{LEGACY_LAYER_KEYS[m[3]]}", key): value for key, value in state_dict.items()}


class LIFLayer(nn.Module):
    """One layer: a synapse (dense or convolutional) feeding LIF neurons (eq. 1), bias-free like the paper.

    The neurons take their current from the synapse and never look at its weight,
    so any :class:`~lightning_local.synapses.Synapse` works; learning rules and
    analyses reach the weights only through the synapse's interface.

    Args:
        synapse: the feed-forward synapse (``W``); its ``out_shape`` is the neurons' shape.
        params: neuron constants.
        recurrent: optional recurrent synapse (``V``, REC hidden layers) from the layer's own
            spikes to its neurons (``out_shape -> out_shape``).
        recurrent_init_gain: ``V`` keeps its synapse's initialisation times this gain.
        weight_init_gain: ``None``: ``W`` keeps its synapse's initialisation (``nn.Linear``'s /
            ``nn.Conv2d``'s). A number ``g``: that initialisation is scaled by ``g (1 - alpha)(1 - beta)``,
            so a constant input drive reaches the membrane with gain ``g`` instead of the neuron's
            steady-state gain ``1 / ((1 - alpha)(1 - beta))`` (58 at tau 5/10 steps, 2,000 at decays 0.99/0.95).
        backend: implementation of the scan (see :mod:`lightning_local.neurons.backends`).
    """

    def __init__(
        self,
        synapse: Synapse,
        params: LIFParameters,
        recurrent: Optional[Synapse] = None,
        recurrent_init_gain: float = 0.1,
        weight_init_gain: Optional[float] = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if recurrent is not None and (recurrent.in_shape != synapse.out_shape or recurrent.out_shape != synapse.out_shape):
            raise ValueError(f"A recurrent synapse must map the layer's {synapse.out_shape} neurons onto themselves.")
        self.synapse = synapse
        self.recurrent = recurrent
        self.params = params
        self.backend = check_backend(backend)
        with torch.no_grad():
            if weight_init_gain is not None:
                synapse.weight.mul_(weight_init_gain / params.steady_state_gain)
            # At full scale a REC layer starts at ~10x FF's firing rate (N-MNIST: 34 % vs 3.4 % in the
            # first layer) and trains far worse; at 0.1 it starts close to FF and learns V.
            if recurrent is not None:
                recurrent.weight.mul_(recurrent_init_gain)

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Shape of the presynaptic input of one sample at one step."""
        return self.synapse.in_shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Shape of this layer's neurons (``(n,)`` dense, ``(C, H, W)`` convolutional)."""
        return self.synapse.out_shape

    @property
    def in_features(self) -> int:
        return self.synapse.in_features

    @property
    def out_features(self) -> int:
        return self.synapse.out_features

    @property
    def synapses(self) -> list[Synapse]:
        """The layer's trainable synapses: ``W``, then ``V`` if the layer is recurrent."""
        return [self.synapse] if self.recurrent is None else [self.synapse, self.recurrent]

    def forward(
        self, inputs: Tensor, synapse_input: Optional[Callable[[Tensor], Tensor]] = None, batch_first: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Whole sequence: ``inputs`` ``[T, B, *in_shape]`` -> ``(spikes, membrane)`` ``[T, B, *out_shape]``.

        ``synapse_input`` replaces the synapse's forward map (same values, other backward:
        feedback alignment). ``batch_first``: ``inputs`` are ``[B, T, *in_shape]`` (a network's
        input frames, dense or :class:`~lightning_local.sparse_frames.SparseFrames`); the outputs
        stay time-major.
        """
        # One matmul/convolution projects all time steps at once; the scan does the rest.
        currents = self.synapse(inputs) if synapse_input is None else synapse_input(inputs)
        if batch_first:
            # Projecting the frames as stored and transposing the currents copies B*T*n values
            # instead of the B*T*F input values a time-major view of the frames would cost.
            currents = currents.transpose(0, 1).contiguous()
        return lif_sequence(currents, self.params, self.recurrent, backend=self.backend)

    def step(self, inputs: Tensor, state: LIFState) -> LIFState:
        """One time step under autograd: ``inputs`` ``[B, *in_shape]``; returns the new state (with spikes)."""
        return lif_step(self.synapse(inputs), state, self.params, self.recurrent)

    def initial_state(self, batch: int, like: Tensor) -> LIFState:
        """Zero state for a batch, on ``like``'s device and dtype."""
        return LIFState.zeros(batch, self.out_shape, like)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: D401
        for old, new in LEGACY_LAYER_KEYS.items():
            if prefix + old in state_dict:
                state_dict[prefix + new] = state_dict.pop(prefix + old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # Read-only views kept for tests, references and user scripts.
    @property
    def weight(self) -> Tensor:
        """The feed-forward synapse's weight."""
        return self.synapse.weight

    @property
    def recurrent_weight(self) -> Optional[Tensor]:
        """The recurrent synapse's weight (``None`` for non-recurrent layers)."""
        return None if self.recurrent is None else self.recurrent.weight


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
    """A stack of :class:`LIFLayer` s, FF or REC: hidden layers, then an output layer read out by its membrane.

    Built by :meth:`fully_connected` (the paper's networks; also this class's own
    constructor) or :meth:`convolutional` (Appendix A). In REC networks every *hidden*
    layer has a recurrent synapse; the output layer never does.

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
        check_architecture(architecture)
        sizes = [num_inputs, *hidden_sizes, num_classes]
        hidden = [
            (LinearSynapse(n_in, n_out), LinearSynapse(n_out, n_out) if architecture == "rec" else None)
            for n_in, n_out in zip(sizes[:-2], sizes[1:-1])
        ]
        self._stack(hidden, LinearSynapse(sizes[-2], num_classes), architecture, params,
                    recurrent_init_gain, output_init_gain, hidden_init_gain, backend)

    @classmethod
    def fully_connected(cls, *args, **kwargs) -> "SpikingNetwork":
        """The fully connected network (same arguments as the constructor)."""
        return cls(*args, **kwargs)

    @classmethod
    def convolutional(
        cls,
        input_shape: Sequence[int],
        channels: Sequence[int],
        num_classes: int,
        architecture: Architecture = "ff",
        params: LIFParameters = LIFParameters(),
        kernel_size: int = 7,
        stride: int = 1,
        padding: int = 1,
        recurrent_kernel_size: int = 3,
        recurrent_init_gain: float = 0.1,
        output_init_gain: Optional[float] = DEFAULT_OUTPUT_INIT_GAIN,
        hidden_init_gain: Optional[float] = None,
        backend: str = "auto",
    ) -> "SpikingNetwork":
        """The paper's convolutional network (Appendix A): conv LIF layers, then a dense LIF readout.

        Appendix A: 3 layers of 64, 128 and 128 channels, kernel 7, stride 1, padding 1.
        REC (documented choice; the paper does not say): each conv layer's recurrent
        synapse is a *recurrent convolution* over the layer's own spike maps,
        ``C -> C`` channels, kernel ``recurrent_kernel_size`` (3) with "same" padding
        (``(k - 1) / 2``), so ``V`` is local and translation-invariant like ``W``.
        The output layer is dense over the last layer's flattened spike maps.

        Args:
            input_shape: ``(channels, height, width)`` of one input frame.
            channels: output channels of each conv layer.
            num_classes: output neurons.
        """
        check_architecture(architecture)
        if recurrent_kernel_size < 1 or recurrent_kernel_size % 2 == 0:
            raise ValueError(f"recurrent_kernel_size must be odd and positive (got {recurrent_kernel_size}).")
        network = cls.__new__(cls)
        nn.Module.__init__(network)
        hidden, shape = [], tuple(input_shape)
        for out_channels in channels:
            synapse = ConvSynapse(shape, out_channels, kernel_size, stride, padding)
            shape = synapse.out_shape
            recurrent = (
                ConvSynapse(shape, out_channels, recurrent_kernel_size, 1, recurrent_kernel_size // 2)
                if architecture == "rec" else None
            )
            hidden.append((synapse, recurrent))
        network._stack(hidden, LinearSynapse(shape, num_classes), architecture, params,
                       recurrent_init_gain, output_init_gain, hidden_init_gain, backend)
        return network

    def _stack(self, hidden, output, architecture, params, recurrent_init_gain, output_init_gain, hidden_init_gain, backend) -> None:
        """Build the layers from ``(synapse, recurrent synapse)`` pairs and the output synapse."""
        self.architecture = architecture
        self.params = params
        layers = [
            LIFLayer(synapse, params, recurrent, recurrent_init_gain, hidden_init_gain, backend) for synapse, recurrent in hidden
        ]
        layers.append(LIFLayer(output, params, None, recurrent_init_gain, output_init_gain, backend))
        self.layers = nn.ModuleList(layers)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input frame (``(N,)`` for dense networks, ``(C, H, W)`` for conv ones)."""
        return self.layers[0].in_shape

    @property
    def num_inputs(self) -> int:
        return self.layers[0].in_features

    @property
    def is_dense(self) -> bool:
        """Every synapse is a :class:`~lightning_local.synapses.LinearSynapse` (a fully connected network)."""
        return all(isinstance(s, LinearSynapse) for layer in self.layers for s in layer.synapses)

    def forward(self, frames: Tensor, synapse_inputs: Optional[Sequence] = None) -> NetworkOutput:
        """Run a batch ``frames`` ``[B, T, *input_shape]`` through all layers.

        ``frames`` may be :class:`~lightning_local.sparse_frames.SparseFrames` when the first
        synapse is dense (the CPU's fast path for binary event frames).

        ``synapse_inputs`` (one callable or ``None`` per layer) replaces layers' synapse maps
        (see :meth:`LIFLayer.forward`). The first layer's callable gets the frames as given,
        batch-major ``[B, T, ...]``, and returns batch-major currents; the others are time-major.
        """
        if isinstance(frames, SparseFrames) and not isinstance(self.layers[0].synapse, LinearSynapse):
            raise TypeError("sparse input frames feed a fully connected first layer; give this network dense frames")
        x = frames
        spikes: list[Tensor] = []
        membrane = frames
        for l, layer in enumerate(self.layers):
            x, membrane = layer(x, None if synapse_inputs is None else synapse_inputs[l], batch_first=l == 0)
            spikes.append(x)
        return NetworkOutput(spikes=spikes, output_membrane=membrane)

    def initial_state(self, batch: int, like: Tensor) -> list[LIFState]:
        """Zero state of every layer (for step-by-step simulation)."""
        return [layer.initial_state(batch, like) for layer in self.layers]

    def step(self, frame: Tensor, states: list[LIFState]) -> list[LIFState]:
        """Advance every layer by one step on ``frame`` ``[B, *input_shape]``."""
        new_states = []
        x = frame
        for layer, state in zip(self.layers, states):
            state = layer.step(x, state)
            new_states.append(state)
            x = state.spk
        return new_states


def check_architecture(architecture: str) -> None:
    """Reject anything but ``ff`` and ``rec``."""
    if architecture not in ("ff", "rec"):
        raise ValueError(f"Unknown architecture {architecture!r}: use 'ff' or 'rec'.")


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
