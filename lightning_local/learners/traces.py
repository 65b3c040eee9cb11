"""Forward-in-time helpers shared by the trace-based learning rules (e-prop, DECOLLE) and SLTT.

With the detached reset, the LIF layer of :mod:`lightning_local.neurons.lif` is
*linear* in its weights given its presynaptic spikes::

    iota^t = alpha iota^{t-1} + W x^t + V s^{t-1}
    u^t    = beta  u^{t-1}    + iota^t - V_th s^{t-1}          (reset: no gradient)

so the derivative of the membrane with respect to one synapse ``W_ji`` only
depends on the presynaptic neuron ``i``:

    d iota_j^t / d W_ji = z1_i^t,   z1^t = alpha z1^{t-1} + x^t
    d u_j^t    / d W_ji = z2_i^t,   z2^t = beta  z2^{t-1} + z1^t

(for ``V`` the presynaptic input is the layer's own ``s^{t-1}``). These are the
two components of e-prop's eligibility vector and DECOLLE's ``P`` trace; they
cost ``O(batch x presynaptic neurons)`` per layer, whatever the sequence
length. A rule that knows ``g^t = dE/du^t`` of a layer accumulates that layer's
weight update ``dW += (g^t)^T z2^t`` - one matmul per layer and step.

The first layer is special: its presynaptic population (the sensor input, e.g.
2,312 N-MNIST pixels) is by far the largest, so :class:`OnlineSimulation`
handles it in blocks of :data:`BLOCK_STEPS` steps. Within a block the trace is
a known linear filter of the block's input (see :class:`BlockInputTrace`), so
``sum_t (g^t)^T z2^t`` over the block is computed *exactly* with one large
matmul instead of one per step, and the input projection ``W_0 x^t`` of the
block with one more. Working memory is one block (``BLOCK_STEPS x batch x
inputs``), independent of T.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional, Sequence, Union

import torch
from torch import Tensor

from ..models import SpikingNetwork
from ..models.network import IGNORE_INDEX
from ..neurons import LIFState, heaviside, lif_sequence_from, lif_update
from ..synapses import Synapse

#: Time steps of the first layer processed together (input projection and exact
#: block-wise update): working memory O(BLOCK_STEPS), not O(T).
BLOCK_STEPS = 32


class PresynapticTrace:
    """The two low-pass filters ``z1`` (synaptic) and ``z2`` (membrane) of one presynaptic population.

    Args:
        batch: batch size.
        neurons: shape of the presynaptic population (``(n,)``, or ``(C, H, W)`` for spike maps).
        like: tensor whose device and dtype the traces take.
        alpha: synaptic decay of the *postsynaptic* layer.
        beta: membrane decay of the *postsynaptic* layer.
    """

    __slots__ = ("z1", "z2", "alpha", "beta")

    def __init__(self, batch: int, neurons: Union[int, Sequence[int]], like: Tensor, alpha: float, beta: float) -> None:
        shape = (neurons,) if isinstance(neurons, int) else tuple(neurons)
        self.z1 = like.new_zeros(batch, *shape)
        self.z2 = like.new_zeros(batch, *shape)
        self.alpha, self.beta = alpha, beta

    def update(self, x: Tensor) -> Tensor:
        """Feed this step's presynaptic spikes; returns ``z2`` (updated in place)."""
        # alpha/beta as the ``alpha=`` Scalar argument: no per-step scalar-to-tensor conversion.
        torch.add(x, self.z1, alpha=self.alpha, out=self.z1)
        torch.add(self.z1, self.z2, alpha=self.beta, out=self.z2)
        return self.z2

    def nbytes(self) -> int:
        return self.z1.numel() * self.z1.element_size() * 2


class BlockInputTrace:
    r"""Presynaptic traces of one population advanced a block of ``k`` steps at a time.

    With ``a = z1`` and ``b = z2`` before the block and block-local steps
    ``t = 0 .. k-1``, unrolling the two recursions gives::

        z2^t = beta^{t+1} b + alpha kern(t) a + sum_{s<=t} kern(t-s) x^s,
        kern(n) = sum_{m=0}^{n} beta^{n-m} alpha^m

    so ``sum_t (g^t)^T z2^t = (H^T g)^T x + (sum_t beta^{t+1} g^t)^T b +
    (sum_t alpha kern(t) g^t)^T a`` with the lower-triangular Toeplitz
    ``H[t, s] = kern(t - s)``: one ``[n_out x kB] @ [kB x n_in]`` matmul plus two
    small ones, identical (up to rounding) to accumulating ``(g^t)^T z2^t`` step by step.
    The filter acts on the errors, so the same holds for any synapse whose weight
    gradient is bilinear in (error, presynaptic input) - a convolution's too: each
    product above is one :meth:`~lightning_local.synapses.Synapse.weight_gradient` call.
    """

    def __init__(self, batch: int, neurons: Union[int, Sequence[int]], like: Tensor, alpha: float, beta: float, block: int) -> None:
        self.trace = PresynapticTrace(batch, neurons, like, alpha, beta)
        self.alpha, self.beta = alpha, beta
        kern = [1.0]
        for n in range(1, block):
            kern.append(beta * kern[-1] + alpha**n)  # kern(n) = beta kern(n-1) + alpha^n
        kern_t = torch.tensor(kern, dtype=torch.float64)
        lag = torch.arange(block)[:, None] - torch.arange(block)[None, :]
        self.filter = torch.where(lag >= 0, kern_t[lag.clamp(min=0)], 0.0).to(like)  # H[t, s]
        self.kern = kern_t.to(like)
        self.beta_powers = (beta ** torch.arange(1, block + 1, dtype=torch.float64)).to(like)
        self.alpha_powers = (alpha ** torch.arange(block, dtype=torch.float64)).to(like)

    @property
    def z1(self) -> Tensor:
        return self.trace.z1

    @property
    def z2(self) -> Tensor:
        return self.trace.z2

    def accumulate(self, update: Tensor, errors: Tensor, inputs: Tensor, synapse: Synapse) -> None:
        """Add ``sum_t (g^t)^T z2^t`` over a block to ``update`` and advance the traces past it.

        Args:
            update: accumulator of the synapse's weight shape (changed in place).
            errors: ``g`` of the block, ``[k, batch, *out_shape]``.
            inputs: the block's presynaptic input, ``[k * batch, *in_shape]`` in (step, sample) order.
            synapse: the synapse whose weight the update is for.
        """
        k, batch = errors.shape[:2]
        if k == 1:  # e.g. online DECOLLE stepping every step: one product instead of three
            synapse.weight_gradient(errors[0], self.trace.update(inputs), add_to=update)
            return
        flat = errors.reshape(k, -1)
        filtered = (self.filter[:k, :k].t() @ flat).view(k * batch, *errors.shape[2:])
        synapse.weight_gradient(filtered, inputs, add_to=update)
        from_z2 = (self.beta_powers[:k] @ flat).view(batch, *errors.shape[2:])
        from_z1 = (self.kern[:k] @ flat).view(batch, *errors.shape[2:])
        synapse.weight_gradient(from_z2, self.z2, add_to=update)
        synapse.weight_gradient(from_z1, self.z1, add_to=update, alpha=self.alpha)
        # Traces at the block's last step (z2 first: it needs the old z1).
        x = inputs.reshape(k, -1).to(self.z2.dtype)
        last_kern = self.kern[:k].flip(0)  # kern(k-1-s)
        new_z2 = (last_kern @ x).view_as(self.z2)
        new_z2.add_(self.z2, alpha=self.beta**k).add_(self.z1, alpha=self.alpha * float(self.kern[k - 1]))
        new_z1 = (self.alpha_powers[:k].flip(0) @ x).view_as(self.z1)  # alpha^(k-1-s)
        new_z1.add_(self.z1, alpha=self.alpha**k)
        self.trace.z1, self.trace.z2 = new_z1, new_z2

    def nbytes(self) -> int:
        return self.trace.nbytes() + self.filter.numel() * self.filter.element_size()


class OnlineSimulation:
    """Step-by-step forward pass of a :class:`SpikingNetwork` with presynaptic traces.

    Usage (under ``torch.no_grad()``; the state is updated in place)::

        sim = OnlineSimulation(network, batch, frames)
        for start, stop in blocks(T, BLOCK_STEPS):
            sim.begin_block(x_seq[start:stop])         # time-major [k, batch, *input_shape]
            with single_thread(frames.device, network.is_dense):
                for i in range(stop - start):
                    sim.step(i)
                    ...                                # read sim.mem / sim.spk / traces
                    sim.first_errors[i] = dE/du_0      # the first layer's g^t
            sim.end_block(update_of_W0)                # exact sum_t g^t z2^t of the block

    After :meth:`step`, for each layer ``l``: ``mem[l]`` is ``u^t`` (before
    its reset) and ``spk[l]`` is ``s^t``; for ``l >= 1`` ``inputs[l].z2`` is the
    trace of its presynaptic input, and for REC hidden layers ``recurrent[l].z2``
    the trace of its own ``s^{t-1}`` (``None`` otherwise). The first layer's input
    trace is advanced per block (:class:`BlockInputTrace`, ``inputs[0]``). Every
    layer advances by :func:`~lightning_local.neurons.lif.lif_update` with its own
    constants and the current of its synapse, as in the network's fused scan, so the
    spikes equal the network's own forward pass. Synapses of any kind work (dense,
    convolutional); a rule turns an error ``g`` into a weight update with the
    synapse's ``weight_gradient(g, trace)``.

    The weights are read when used (``W_0`` once per block), so an optimizer may
    change them between blocks.

    Args:
        network: the network to simulate.
        batch: batch size.
        like: tensor giving device and dtype.
        block: steps per first-layer block (at most).
    """

    def __init__(self, network: SpikingNetwork, batch: int, like: Tensor, block: int = BLOCK_STEPS) -> None:
        self.network = network
        self.layers = list(network.layers)
        self.batch, self.block = batch, block
        self.fire = [heaviside(layer.params) for layer in self.layers]
        self.syn: list[Tensor] = []
        self.mem: list[Tensor] = []
        self.spk: list[Tensor] = []
        self.inputs: list = []
        self.recurrent: list[Optional[PresynapticTrace]] = []
        for l, layer in enumerate(self.layers):
            state = layer.initial_state(batch, like)
            self.syn.append(state.syn)
            self.mem.append(state.mem)
            self.spk.append(state.spk)
            # The traces filter with the *postsynaptic* layer's constants.
            alpha, beta = layer.params.alpha, layer.params.beta
            trace = BlockInputTrace(batch, layer.in_shape, like, alpha, beta, block) if l == 0 else (
                PresynapticTrace(batch, layer.in_shape, like, alpha, beta)
            )
            self.inputs.append(trace)
            self.recurrent.append(PresynapticTrace(batch, layer.out_shape, like, alpha, beta) if layer.recurrent is not None else None)
        #: ``g^t = dE/du_0^t`` of the first layer for each step of the current block (written by the rule).
        self.first_errors = like.new_zeros(block, batch, *self.layers[0].out_shape)
        self._block_inputs: Optional[Tensor] = None
        self._block_currents: Optional[Tensor] = None

    def begin_block(self, frames: Tensor) -> None:
        """Start a block of ``k <= block`` steps; ``frames`` is time-major ``[k, batch, *input_shape]``."""
        k = frames.shape[0]
        if k > self.block:
            raise ValueError(f"A block has at most {self.block} steps (got {k}).")
        self._block_inputs = frames.reshape(k * self.batch, *frames.shape[2:])  # (step, sample) rows; copies a view
        self._block_currents = self.layers[0].synapse(self._block_inputs).view(k, self.batch, *self.layers[0].out_shape)
        self.first_errors.zero_()

    def step(self, i: int) -> None:
        """Advance every layer by step ``i`` of the current block."""
        x: Optional[Tensor] = None
        for l, layer in enumerate(self.layers):
            previous = self.spk[l]
            if l == 0:
                current = self._block_currents[i]
            else:
                self.inputs[l].update(x)
                current = layer.synapse.transmit(x)  # not __call__: no module-hook overhead per step
            if layer.recurrent is not None:
                self.recurrent[l].update(previous)
            state = lif_update(current, LIFState(self.syn[l], self.mem[l], previous), layer.params, self.fire[l], layer.recurrent)
            self.syn[l], self.mem[l], self.spk[l] = state
            x = state.spk

    def end_block(self, first_update: Tensor) -> None:
        """Finish the block: add the first layer's ``sum_t (g^t)^T z2^t`` to ``first_update`` (``W_0``'s shape).

        ``g^t`` are the rows of :attr:`first_errors` written during the block.
        """
        k = self._block_currents.shape[0]
        self.inputs[0].accumulate(first_update, self.first_errors[:k], self._block_inputs, self.layers[0].synapse)
        self._block_inputs = self._block_currents = None

    def state_nbytes(self) -> int:
        """Bytes of the state kept from one step to the next: neurons, traces and one first-layer block."""
        size = lambda t: t.numel() * t.element_size()  # noqa: E731
        total = sum(size(t) for t in (*self.syn, *self.mem, *self.spk))
        total += sum(trace.nbytes() for trace in self.inputs)
        total += sum(trace.nbytes() for trace in self.recurrent if trace is not None)
        n_in = self.layers[0].in_features
        block = self.first_errors
        total += size(block) * (1 + 1)  # first-layer errors and block currents
        total += block.shape[0] * block.shape[1] * n_in * block.element_size()  # the copied input block
        return total


class BlockSimulation:
    """Forward pass of a :class:`SpikingNetwork` a block of steps at a time, with block-exact traces.

    Usage (under ``torch.no_grad()``)::

        sim = BlockSimulation(network, batch, frames)
        for start, stop in blocks(T, BLOCK_STEPS):
            sim.run_block(frames[:, start:stop])        # batch-major [B, k, *input_shape]
            ...                                          # read sim.spikes[l] / sim.mems[l], [k, B, *out_shape]
            sim.accumulate(l, g, d_w, d_v)               # exact sum_t g^t z2^t of the block for W_l (and V_l)

    Each layer's block is one projection by its synapse and one scan
    (:func:`~lightning_local.neurons.lif_sequence_from`, the layer's backend: the Triton
    kernels on GPUs) from the state carried over from the previous block, so the spikes equal
    the network's own forward pass; the presynaptic traces (:class:`BlockInputTrace`) are
    advanced per block. Python work is per block and layer, never per step, and memory is one
    block. The weights are read per block, so an optimizer may change them between blocks.

    Args:
        network: the network to simulate.
        batch: batch size.
        like: tensor giving device and dtype.
        block: steps per block (at most).
        synaptic_filter: ``True`` (default): the traces are ``z2``, the exact ``d u / d W`` of the
            two-variable neuron. ``False``: one exponential filter with the membrane decay,
            ``z2^t = beta z2^{t-1} + x^t`` (``alpha = 0`` in the recursions above: OTTT's
            presynaptic trace, exact only for a neuron without synaptic-current memory).
        traces: keep the presynaptic traces (needed by :meth:`accumulate`); ``False`` for rules
            whose updates use the block's own inputs only (SLTT), which then skip their cost.
    """

    def __init__(
        self, network: SpikingNetwork, batch: int, like: Tensor, block: int = BLOCK_STEPS, synaptic_filter: bool = True,
        traces: bool = True,
    ) -> None:
        self.layers = list(network.layers)
        self.batch, self.block, self.element_size = batch, block, like.element_size()
        self.states = network.initial_state(batch, like)

        def trace(shape, params) -> BlockInputTrace:
            return BlockInputTrace(batch, shape, like, params.alpha if synaptic_filter else 0.0, params.beta, block)

        self.traces: Optional[list[BlockInputTrace]] = (
            [trace(layer.in_shape, layer.params) for layer in self.layers] if traces else None)
        self.own: Optional[list[Optional[BlockInputTrace]]] = (
            [trace(layer.out_shape, layer.params) if layer.recurrent is not None else None for layer in self.layers]
            if traces else None)
        #: Per layer, for the current block: its input rows ``[k * B, *in_shape]`` ((step, sample) order),
        #: spikes and membranes ``[k, B, *out_shape]``, and (REC) its own ``s^{t-1}`` rows.
        self.inputs: list[Tensor] = []
        self.spikes: list[Tensor] = []
        self.mems: list[Tensor] = []
        self.previous: list[Optional[Tensor]] = []

    def run_block(self, frames: Tensor) -> None:
        """Advance every layer over the block ``frames`` (batch-major ``[B, k, *input_shape]``, ``k <= block``)."""
        if frames.shape[1] > self.block:
            raise ValueError(f"A block has at most {self.block} steps (got {frames.shape[1]}).")
        x = frames.transpose(0, 1).contiguous()  # one time-major copy of the block
        self.inputs, self.spikes, self.mems, self.previous = [], [], [], []
        for l, layer in enumerate(self.layers):
            self.inputs.append(_rows(x))
            before = self.states[l].spk  # V's presynaptic input at the block's first step
            spikes, mems, self.states[l] = lif_sequence_from(
                layer.synapse.transmit(x), self.states[l], layer.params, layer.recurrent, backend=layer.backend
            )
            shifted = torch.cat([before.unsqueeze(0).to(spikes.dtype), spikes[:-1]]) if layer.recurrent is not None else None
            self.previous.append(None if shifted is None else _rows(shifted))
            self.spikes.append(spikes)
            self.mems.append(mems)
            x = spikes

    def accumulate(self, l: int, error: Tensor, weight_update: Tensor, recurrent_update: Optional[Tensor] = None) -> None:
        """Add layer ``l``'s ``sum_t (g^t)^T z2^t`` over the block to ``weight_update`` (and, REC, to ``recurrent_update``).

        ``error`` is ``g = dE/du_l`` of the block, ``[k, B, *out_shape]``.
        """
        if self.traces is None:
            raise RuntimeError("BlockSimulation(traces=False) keeps no traces to accumulate an update with.")
        layer = self.layers[l]
        self.traces[l].accumulate(weight_update, error, self.inputs[l], layer.synapse)
        if self.own[l] is not None and recurrent_update is not None:
            self.own[l].accumulate(recurrent_update, error, self.previous[l], layer.recurrent)

    def state_nbytes(self) -> int:
        """Bytes kept per block: carried neuron states, traces (if kept), one block of every layer's spikes,
        membranes (and shifted spikes, REC) and the copied input block."""
        size, batch = self.element_size, self.batch
        total = self.block * batch * self.layers[0].in_features * size
        for l, layer in enumerate(self.layers):
            neurons = layer.out_features
            total += 3 * batch * neurons * size + self.block * batch * neurons * size * (3 if layer.recurrent is not None else 2)
            if self.traces is not None:
                own = self.own[l]
                total += self.traces[l].nbytes() + (own.nbytes() if own is not None else 0)
        return total


def _rows(x: Tensor) -> Tensor:
    """``[k, B, *shape] -> [k * B, *shape]`` in (step, sample) order."""
    return x.reshape(-1, *x.shape[2:])


class TaskReadout:
    """Task loss, logits and the exact output-layer update of a step-by-step simulation.

    Shared by the online rules (e-prop, DECOLLE, SLTT). The loss is the network's
    training loss (:func:`~lightning_local.models.per_step_cross_entropy`),
    ``E = 1/N sum_{(t,b) targeted} CE(u_out^t, y_b^t)`` with ``N`` the number of
    targeted (step, sample) pairs (``T B`` for ``[B]`` labels); each step's error
    ``delta^t = dE/du_out^t`` times the output layer's presynaptic trace is the
    exact gradient for ``W_out`` (the readout is the membrane: no pseudo-derivative).

    Sequence labelling (``[B, T]`` labels): each step's target is ``labels[:, t]``;
    rows equal to :data:`~lightning_local.models.network.IGNORE_INDEX` (padding, TIMIT's
    ``q``) get a zero error in :meth:`step` and :meth:`error`. ``N`` is counted
    on this rank only, so under DDP ranks with different numbers of targeted
    frames average to the global batch's update only approximately.

    Args:
        labels: ``[batch]`` class labels or ``[batch, steps]`` per-step labels.
        classes: number of output neurons.
        steps: sequence length ``T``.
        like: tensor giving device and dtype.
    """

    def __init__(self, labels: Tensor, classes: int, steps: int, like: Tensor) -> None:
        self.labels, self.classes, self.steps = labels, classes, steps
        self.per_step = labels.dim() == 2
        targeted = labels != IGNORE_INDEX
        count = int(targeted.sum()) * (1 if self.per_step else steps)
        self.scale = 1.0 / max(count, 1)  # per_step_cross_entropy's mean (0 loss when nothing is targeted)
        # Fixed for [B] labels; built each step from labels[:, t] otherwise (nothing [B, T, C]).
        self.onehot, self.mask = (None, None) if self.per_step else self._targets(labels, like)
        self.t = 0
        self.loss_sum = like.new_zeros(())
        batch = labels.shape[0]
        # [B, T] labels: the predicted class of every step (as large as the labels); [B]: summed membrane.
        self.predictions = labels.new_empty(batch, steps) if self.per_step else None
        self.membrane_sum = None if self.per_step else like.new_zeros(batch, classes)

    def _targets(self, labels: Tensor, like: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """One-hot targets of ``labels`` ``[B]`` or ``[k, B]`` (zero rows where ignored) and the mask
        ``[..., 1]`` (None: all targeted)."""
        targeted = labels != IGNORE_INDEX
        onehot = torch.nn.functional.one_hot(labels.clamp(min=0), self.classes).to(like.dtype)
        if not self.per_step and bool(targeted.all()):  # checked once per batch: no per-step device sync
            return onehot, None
        mask = targeted.to(like.dtype).unsqueeze(-1)
        return onehot.mul_(mask), mask

    def _error(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        delta, loss = softmax_error(logits, self.onehot, self.scale)
        if self.mask is not None:
            delta.mul_(self.mask)  # the one-hot rows are zero already, so the loss needs no mask
        return delta, loss

    def step(self, sim: "OnlineSimulation", output_update: Tensor) -> Tensor:
        """Account this step of ``sim``: add the output layer's update, return ``delta^t``."""
        delta = self.account(sim.mem[-1])
        sim.layers[-1].synapse.weight_gradient(delta, sim.inputs[-1].z2, add_to=output_update)
        return delta

    def block(self, sim: "BlockSimulation", output_update: Tensor) -> Tensor:
        """Account the current block of ``sim`` (``k`` steps) at once; returns ``delta`` ``[k, B, C]``.

        The block form of :meth:`step`: the same loss, logits and errors, and the output
        layer's update ``sum_t (delta^t)^T z2^t`` added to ``output_update``.
        """
        delta = self.account(sim.mems[-1])
        sim.accumulate(len(sim.layers) - 1, delta, output_update)
        return delta

    def account(self, u_out: Tensor) -> Tensor:
        """Loss, logits and ``delta`` of the output membrane of one step ``[B, C]`` or of ``k`` steps ``[k, B, C]``.

        For rules that form the output layer's update themselves (SLTT: from the block's inputs,
        not from a trace); :meth:`step` and :meth:`block` call it and add the trace-based update.
        """
        block = u_out.dim() == 3
        steps = u_out.shape[0] if block else 1
        if self.per_step:
            labels = self.labels[:, self.t : self.t + steps]  # [B, k]
            self.onehot, self.mask = self._targets(labels.t() if block else labels[:, 0], u_out)
            self.predictions[:, self.t : self.t + steps] = u_out.argmax(dim=-1).t().reshape(labels.shape)
        else:
            self.membrane_sum.add_(u_out.sum(dim=0) if block else u_out)
        self.t += steps
        delta, loss = self._error(u_out)
        self.loss_sum.add_(loss)
        return delta

    def error(self, logits: Tensor) -> Tensor:
        """``dE/dlogits`` of a per-step CE with this step's labels, mask and scale (DECOLLE's local losses)."""
        return self._error(logits)[0]

    @property
    def loss(self) -> Tensor:
        """The mean task loss over the targeted steps."""
        return self.loss_sum * self.scale

    @property
    def logits(self) -> Tensor:
        """``[B]`` labels: the output membrane averaged over time (the network's logits).
        ``[B, T]`` labels: the predicted class of every step, int64 ``[B, T]`` (torchmetrics accepts both)."""
        return self.predictions if self.per_step else self.membrane_sum / self.steps


@contextmanager
def single_thread(device: torch.device, small_steps: bool = True) -> Iterator[None]:
    """Run the block with one CPU intra-op thread (no-op on other devices, when already 1, or for large steps).

    The per-step operations of the trace rules on dense networks act on ``[batch, neurons]``
    tensors: too small to gain from threads, while every multi-threaded BLAS
    call pays a thread barrier, which on a busy machine costs up to a scheduler
    time slice per call. The per-block matmuls run outside with all threads.
    ``small_steps=False`` (convolutional networks, whose per-step convolutions are
    large) keeps all threads: one thread made conv DECOLLE's step use one core.
    """
    previous = torch.get_num_threads()
    if device.type != "cpu" or previous == 1 or not small_steps:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def blocks(steps: int, size: int, boundary: int = 0) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive blocks of at most ``size`` steps covering ``range(steps)``.

    With ``boundary > 0`` no block crosses a multiple of ``boundary`` (so weights
    that change every ``boundary`` steps are constant within a block).
    """
    start = 0
    while start < steps:
        stop = min(start + size, steps)
        if boundary:
            stop = min(stop, (start // boundary + 1) * boundary)
        yield start, stop
        start = stop


def softmax_error(logits: Tensor, onehot: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """``(dE/dlogits, summed CE)`` of ``E = scale * sum_b CE(logits_b, y_b)``.

    The error is ``scale * (softmax(logits) - onehot)``; the returned loss is the
    *unscaled* sum over the batch (callers average it themselves).
    """
    log_p = torch.log_softmax(logits, dim=-1)
    loss = torch.sum(log_p * onehot)  # minus the CE sum
    error = log_p.exp_().sub_(onehot)
    return torch.mul(error, scale, out=error), loss.neg_()


def optimizer_step(optimizer, updates: Sequence[tuple[Tensor, Tensor]]) -> None:
    """One step of ``optimizer`` on hand-computed ``(param, update)`` pairs, averaged across DDP ranks.

    For rules that step within a sequence (manual optimization): the updates become the
    parameters' ``.grad`` (copies, so the caller may reset its accumulators).
    """
    grads = [update.clone() for _, update in updates]
    all_reduce_mean_(grads)
    optimizer.zero_grad()
    for (param, _), grad in zip(updates, grads):
        param.grad = grad
    optimizer.step()


def all_reduce_mean_(tensors: list[Tensor]) -> None:
    """Average ``tensors`` in place across ranks when ``torch.distributed`` is initialised (no-op otherwise)."""
    if not tensors or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    world = torch.distributed.get_world_size()
    if world == 1:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    torch.distributed.all_reduce(flat)
    flat.div_(world)
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def fixed_uniform(shape: tuple[int, ...], fan_in: int, seed: int, like: Tensor) -> Tensor:
    """Deterministic ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` matrix (nn.Linear's default scale).

    Drawn on the CPU from ``torch.Generator().manual_seed(seed)`` so every
    process (and every DDP rank) builds the identical matrix, then moved to
    ``like``'s device and dtype.
    """
    generator = torch.Generator().manual_seed(seed)
    bound = 1.0 / fan_in**0.5
    values = torch.rand(shape, generator=generator, dtype=torch.float64) * (2 * bound) - bound
    return values.to(device=like.device, dtype=like.dtype)


def same_step_errors(layers: Sequence, mems: Sequence[Tensor], delta: Tensor) -> list[Tensor]:
    """``g_l = dL^t/du_l^t`` of every layer (output last) through space only, within each step (temporal paths cut,
    as OTTT and SLTT do): the output error ``delta`` sent down through each synapse's ``backward`` and multiplied by
    the pseudo-derivative of the layer below at its membranes ``mems[l]`` (one step or a block of steps)."""
    errors = [delta]
    for l in range(len(layers) - 2, -1, -1):
        errors.insert(0, layers[l + 1].synapse.backward(errors[0]).mul_(layers[l].params.pseudo_derivative(mems[l])))
    return errors


def zero_updates(layers: Sequence) -> tuple[list[Tensor], list[Optional[Tensor]]]:
    """Zeroed accumulators of a trace rule's updates: one per ``W_l``, and one per ``V_l`` (``None`` for FF layers)."""
    d_w = [torch.zeros_like(layer.synapse.weight) for layer in layers]
    d_v = [torch.zeros_like(layer.recurrent.weight) if layer.recurrent is not None else None for layer in layers]
    return d_w, d_v


def update_pairs(layers: Sequence, d_w: Sequence[Tensor], d_v: Sequence[Optional[Tensor]]) -> list[tuple[Tensor, Tensor]]:
    """``(parameter, update)`` pairs of :func:`zero_updates`' accumulators: every ``W_l``, then every ``V_l``."""
    pairs = [(layer.synapse.weight, d) for layer, d in zip(layers, d_w)]
    return pairs + [(layer.recurrent.weight, d) for layer, d in zip(layers, d_v) if d is not None]


def update_bytes(network: SpikingNetwork) -> int:
    """Bytes of one accumulated update per parameter (what a trace rule adds up over the sequence)."""
    return sum(p.numel() * p.element_size() for p in network.parameters())
