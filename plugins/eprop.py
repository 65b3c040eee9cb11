"""e-prop (Bellec et al. 2020) for the paper's two-variable LIF neuron."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Optional

import torch
from torch import Tensor

from lightning_local.learners import NEURON_SPACE, BatchUpdates, Learner
from lightning_local.learners.traces import (
    BLOCK_STEPS, BlockSimulation, OnlineSimulation, TaskReadout, blocks, fixed_uniform, single_thread, update_bytes,
    update_pairs, zero_updates,
)

if TYPE_CHECKING:  # pragma: no cover
    from lightning_local.models import SpikingNetwork

Feedback = Literal["symmetric", "random", "chained"]
FEEDBACK_MODES = ("symmetric", "random", "chained")
Schedule = Literal["block", "step"]
SCHEDULES = ("block", "step")


class EProp(Learner):
    r"""Eligibility propagation: forward-in-time traces times an online learning signal.

    **Eligibility traces.** Each LIF neuron has two state variables, the
    synaptic current ``iota`` and the membrane ``u``; the reset ``V_th s^{t-1}``
    carries no gradient (as in the network's BPTT), so the hidden-state
    dynamics are linear and e-prop's eligibility vector
    ``eps^t_{ji} = (d iota_j^t/dW_ji, d u_j^t/dW_ji)`` factorises into two
    *presynaptic* traces (see :mod:`lightning_local.learners.traces`)::

        z1^t = alpha z1^{t-1} + x^t          (= d iota_j^t / d W_ji)
        z2^t = beta  z2^{t-1} + z1^t         (= d u_j^t    / d W_ji)
        e^t_{ji} = psi_j^t z2_i^t            psi = surrogate ds/du (the pseudo-derivative)

    ``x`` is the layer's input spikes for ``W`` and the layer's own ``s^{t-1}``
    for the recurrent ``V`` (REC), which is therefore trained with its own traces.

    **Update.** ``Delta W = sum_t (L^t * psi^t)^T z2^t`` (summed over the batch by
    the matmul), accumulated at every step as one matmul per weight matrix.
    With ``schedule="step"`` the batch is simulated step by step under ``no_grad`` (the
    default ``"block"`` schedule computes the same in blocks of steps, see below); nothing of length T
    is stored (state and traces are ``O(batch x neurons)``), so memory is flat in
    T. The first layer, whose presynaptic population (the input) is by far the
    largest, is handled in blocks of ``BLOCK_STEPS`` (32) steps by
    :class:`~lightning_local.learners.traces.OnlineSimulation`: its input
    projection and its ``sum_t (L^t psi^t)^T z2^t`` over the block are each one
    matmul (the latter exact, from the closed form of the trace within the
    block); working memory is one block, independent of T.

    **Loss and output layer.** The loss is the network's training loss,
    ``E = 1/(T B) sum_{t,b} CE(u_out^t, y)``. The per-step output error is
    ``delta^t = dE/du_out^t = (softmax(u_out^t) - onehot(y)) / (T B)``. With
    per-step labels ``[B, T]`` (sequence labelling, e.g. TIMIT) ``y`` is ``y^t``, steps
    labelled ``-100`` get ``delta^t = 0`` and ``T B`` becomes the number of labelled
    steps (:class:`~lightning_local.learners.traces.TaskReadout`); the logits are then
    the predicted class of every step, ``[B, T]``. The
    output layer is read out through its membrane (no pseudo-derivative), so its
    update ``sum_t (delta^t)^T z2_out^t`` is the *exact* gradient of ``E`` with
    respect to ``W_out`` (identical to BPTT's).

    **Learning signal of hidden layers** (``feedback``). The paper (eq. 4) routes the
    per-step output error *directly* to every hidden layer, ``L_l^t = delta^t g_l``
    with a matrix ``g_l in R^{C x n_l}`` fixed during the sequence, and says e-prop "employs symmetric weights in
    the process of direct propagation":

    * ``"symmetric"`` (default; direct): ``g_l`` is the product of the forward weights
      above layer ``l``, ``g_l = W_L W_{L-1} ... W_{l+1}`` (``W_L = W_out``), read at
      the start of the batch. For the last hidden layer this is Bellec et al.'s
      symmetric e-prop, ``L^t = delta^t W_out``. For a lower layer (e.g. the first
      of N-MNIST's two) it is the same-step spatial path to the output with the
      intermediate layers *linearised* - their pseudo-derivatives replaced by 1.
      Why this choice: a direct route needs one ``C x n_l`` matrix per layer, and
      the product of the transposed forward weights is the only such matrix that
      is "symmetric" to the forward path; it does not depend on the activity of
      the layers in between, so (like DFA's ``B_l``) every layer's signal is a
      fixed linear map of ``delta^t``; and it is the ``"chained"`` signal below with the
      intermediate ``psi`` set to 1 (the fast-sigmoid's peak), so it points along the exact
      same-step gradient when those are uniform. What it gives up: the gating of
      the signal by the intermediate layers' ``psi`` (which ``"chained"`` keeps).
    * ``"random"`` (direct): ``g_l = B_l^T`` with a fixed random
      ``B_l in R^{n_l x C}`` per hidden layer, drawn ``U(-1/sqrt(n_l), 1/sqrt(n_l))``
      from ``seed + l`` and registered as buffer ``feedback_{l}`` (checkpointed,
      moved with the module, identical on all DDP ranks and broadcast by DDP).
    * ``"chained"`` (not direct): the same-time-step spatial path chained layer by
      layer *through the pseudo-derivatives* of the layers above: for the last
      hidden layer ``L^t = delta^t W_out``, for a lower layer
      ``L_l^t = (L_{l+1}^t * psi_{l+1}^t) W_{l+1}``. This is exactly ``dE_t/ds_l^t``
      with every temporal chain of the layers above cut (and the recurrent
      ``V s^t -> iota^{t+1}`` path cut). With one hidden layer it equals ``"symmetric"``.

    Each mode's updates equal an autograd reference with explicit stop-gradients
    (``tests/learners``).

    **What e-prop leaves out** relative to BPTT: errors that reach ``s_l^t``
    through any *later* time step (the temporal chains of the layers above and,
    in REC, the recurrent path ``s_l^t -> V_l -> iota_l^{t+1}``), and, in REC, the
    dependence of the presynaptic ``s_l^{t-1}`` on the layer's own weights.
    The layer's own synaptic/membrane chain is exact; the same-step spatial path
    is exact with ``"chained"`` and linearised (``"symmetric"``) or replaced by a
    random matrix (``"random"``) otherwise.

    The update is returned as :func:`~lightning_local.learners.update_objective`,
    so Lightning's optimizer applies it and DDP all-reduces (averages) it.

    Args:
        feedback: ``"symmetric"`` (direct, product of forward weights), ``"random"`` (direct,
            fixed random ``B_l``) or ``"chained"`` (same-step path through the layers above).
        seed: seed of the random feedback matrices (used only with ``"random"``).
        schedule: how the batch is simulated; both give the same updates (tested to rounding) and
            keep memory flat in T. ``"block"`` (default): every layer's own scan over blocks of
            ``BLOCK_STEPS`` steps, from the state carried over from the previous block (on a GPU
            the Triton kernels: one launch per layer and block, no Python work per step), then
            every layer's update of the block in one exact accumulation
            (:class:`~lightning_local.learners.traces.BlockSimulation`). ``"step"``: the
            simulation above, one time step at a time.
    """

    name = "eprop"
    memory_constant_in_T = True  # nothing of length T is kept
    linear_only = "the paper limits e-prop to linear layers."
    search_space = {**NEURON_SPACE, "learner.init_args.feedback": {"choices": ["symmetric", "random"]}}

    def __init__(self, feedback: Feedback = "symmetric", seed: int = 0, schedule: Schedule = "block") -> None:
        super().__init__()
        if feedback not in FEEDBACK_MODES:
            raise ValueError(f"Unknown e-prop feedback {feedback!r}: use one of {', '.join(FEEDBACK_MODES)}.")
        if schedule not in SCHEDULES:
            raise ValueError(f"Unknown e-prop schedule {schedule!r}: use one of {', '.join(SCHEDULES)}.")
        self.feedback = feedback
        self.seed = seed
        self.schedule = schedule
        self.num_hidden = 0

    def carried_state_bytes(self, network: "SpikingNetwork", frames: Tensor) -> int:
        simulation = OnlineSimulation if self.schedule == "step" else BlockSimulation
        block = min(BLOCK_STEPS, frames.shape[1])
        return simulation(network, frames.shape[0], frames, block=block).state_nbytes() + update_bytes(network)

    def attach(self, network: "SpikingNetwork") -> None:
        self.num_hidden = len(network.layers) - 1
        if self.feedback == "random":
            classes = network.layers[-1].out_features
            like = network.layers[-1].synapse.weight
            for l in range(self.num_hidden):
                n_l = network.layers[l].out_features
                self.register_buffer(f"feedback_{l}", fixed_uniform((n_l, classes), n_l, self.seed + l, like))

    def feedback_matrix(self, l: int) -> Tensor:
        """The random feedback ``B_l`` ``[n_l, classes]`` of hidden layer ``l``."""
        return getattr(self, f"feedback_{l}")

    def direct_feedback(self, network: "SpikingNetwork") -> Optional[list[Tensor]]:
        """``g_l`` ``[classes, n_l]`` of every hidden layer for the direct modes (``None`` for ``"chained"``)."""
        hidden = len(network.layers) - 1
        if self.feedback == "random":
            return [self.feedback_matrix(l).t() for l in range(hidden)]
        if self.feedback == "chained":
            return None
        g = [network.layers[-1].synapse.weight]  # g_{L-1} = W_out
        for l in range(hidden - 1, 0, -1):
            g.insert(0, network.layers[l].synapse.backward(g[0]))  # g_{l-1} = g_l W_l
        return g

    def hidden_errors(self, layers, delta: Tensor, membranes: list[Tensor], direct: Optional[list[Tensor]]):
        """``(l, g_l = L_l * psi_l)`` for the hidden layers, top down, from the output error ``delta``.

        Works on one step (``[B, n]``) or a block of steps (``[k, B, n]``) alike.
        """
        error = delta  # dE/du of the layer above ("chained" routing)
        for l in range(len(layers) - 2, -1, -1):
            signal = layers[l + 1].synapse.backward(error) if direct is None else delta @ direct[l]
            error = signal.mul_(layers[l].params.pseudo_derivative(membranes[l]))
            yield l, error

    @torch.no_grad()
    def updates(self, network: "SpikingNetwork", frames: Tensor, labels: Tensor) -> BatchUpdates:
        """Simulate the batch forward in time and return ``(loss, logits, [(param, update), ...])``."""
        steps = frames.shape[1]
        layers = list(network.layers)
        readout = TaskReadout(labels, layers[-1].out_features, steps, frames)
        d_w, d_v = zero_updates(layers)
        direct = self.direct_feedback(network)  # fixed for the batch: the weights change only after it
        if self.schedule == "block":
            self._block_updates(network, frames, readout, d_w, d_v, direct)
        else:
            self._step_updates(network, frames, readout, d_w, d_v, direct)
        updates = update_pairs(layers, d_w, d_v)
        return BatchUpdates(readout.loss, readout.logits, updates)

    def _step_updates(self, network, frames, readout, d_w, d_v, direct) -> None:
        """The ``step`` schedule: one simulation step at a time, state and traces O(batch x neurons)."""
        x_seq = frames.transpose(0, 1)
        layers = list(network.layers)
        sim = OnlineSimulation(network, frames.shape[0], frames)
        first_errors = sim.first_errors
        for start, stop in blocks(x_seq.shape[0], BLOCK_STEPS):
            sim.begin_block(x_seq[start:stop])  # W_0 is fixed during the batch
            with single_thread(frames.device):  # per-step ops are tiny
                for i in range(stop - start):
                    sim.step(i)
                    delta = readout.step(sim, d_w[-1])
                    for l, error in self.hidden_errors(layers, delta, sim.mem, direct):
                        if l == 0:
                            first_errors[i] = error  # accumulated exactly, per block, by end_block
                        else:
                            layers[l].synapse.weight_gradient(error, sim.inputs[l].z2, add_to=d_w[l])
                        if d_v[l] is not None:
                            layers[l].recurrent.weight_gradient(error, sim.recurrent[l].z2, add_to=d_v[l])
            sim.end_block(d_w[0])

    def _block_updates(self, network, frames, readout, d_w, d_v, direct) -> None:
        """The ``block`` schedule: :class:`BlockSimulation` - every layer's own scan per block, block-exact updates."""
        sim = BlockSimulation(network, frames.shape[0], frames)
        for start, stop in blocks(frames.shape[1], BLOCK_STEPS):
            sim.run_block(frames[:, start:stop])
            delta = readout.block(sim, d_w[-1])
            for l, error in self.hidden_errors(sim.layers, delta, sim.mems, direct):
                sim.accumulate(l, error, d_w[l], d_v[l])
