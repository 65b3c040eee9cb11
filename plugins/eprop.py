"""e-prop (Bellec et al. 2020) for the paper's two-variable LIF neuron."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from lightning_local.learners import Learner, LearnerStep, update_objective
from lightning_local.learners.traces import BLOCK_STEPS, OnlineSimulation, TaskReadout, blocks, fixed_uniform, single_thread

if TYPE_CHECKING:  # pragma: no cover
    from lightning_local.models import SpikingNetwork
    from lightning_local.module import SpikingClassifier

Feedback = Literal["symmetric", "random"]


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
    The batch is simulated step by step under ``no_grad``; nothing of length T
    is stored (state and traces are ``O(batch x neurons)``), so memory is flat in
    T. The first layer, whose presynaptic population (the input) is by far the
    largest, is handled in blocks of ``BLOCK_STEPS`` (32) steps by
    :class:`~lightning_local.learners.traces.OnlineSimulation`: its input
    projection and its ``sum_t (L^t psi^t)^T z2^t`` over the block are each one
    matmul (the latter exact, from the closed form of the trace within the
    block); working memory is one block, independent of T.

    **Loss and output layer.** The loss is the network's training loss,
    ``E = 1/(T B) sum_{t,b} CE(u_out^t, y)``. The per-step output error is
    ``delta^t = dE/du_out^t = (softmax(u_out^t) - onehot(y)) / (T B)``. The
    output layer is read out through its membrane (no pseudo-derivative), so its
    update ``sum_t (delta^t)^T z2_out^t`` is the *exact* gradient of ``E`` with
    respect to ``W_out`` (identical to BPTT's).

    **Learning signal of hidden layers** (``feedback``):

    * ``"symmetric"`` (the paper's choice; default): only the *same-time-step
      spatial* path from ``s_l^t`` to ``u_out^t`` is kept, through the transposed
      forward weights. For the last hidden layer ``L^t = delta^t W_out``; for a
      lower layer ``L_l^t = (L_{l+1}^t * psi_{l+1}^t) W_{l+1}`` - i.e. through the
      layers above at the same step *including their pseudo-derivatives*. This is
      exactly ``dE_t/ds_l^t`` with every temporal chain of the layers above cut
      (and the recurrent ``V s^t -> iota^{t+1}`` path cut), which is what the tests
      check against autograd. (For a single hidden layer it is Bellec's
      ``B = W_out^T``.)
    * ``"random"``: ``L_l^t = delta^t B_l^T`` with a fixed random
      ``B_l in R^{n_l x C}`` per hidden layer, drawn ``U(-1/sqrt(n_l), 1/sqrt(n_l))``
      from ``seed + l`` and registered as buffer ``feedback_{l}`` (checkpointed,
      moved with the module, identical on all DDP ranks and broadcast by DDP).

    **What e-prop leaves out** relative to BPTT: errors that reach ``s_l^t``
    through any *later* time step (the temporal chains of the layers above and,
    in REC, the recurrent path ``s_l^t -> V_l -> iota_l^{t+1}``), and, in REC, the
    dependence of the presynaptic ``s_l^{t-1}`` on the layer's own weights.
    The layer's own synaptic/membrane chain and the same-step spatial path are exact.

    The update is returned as :func:`~lightning_local.learners.update_objective`,
    so Lightning's optimizer applies it and DDP all-reduces (averages) it.

    Args:
        feedback: ``"symmetric"`` or ``"random"`` learning-signal routing (see above).
        seed: seed of the random feedback matrices (used only with ``"random"``).
    """

    name = "eprop"

    def __init__(self, feedback: Feedback = "symmetric", seed: int = 0) -> None:
        super().__init__()
        if feedback not in ("symmetric", "random"):
            raise ValueError(f"Unknown e-prop feedback {feedback!r}: use 'symmetric' or 'random'.")
        self.feedback = feedback
        self.seed = seed
        self.num_hidden = 0

    def attach(self, network: "SpikingNetwork") -> None:
        self.num_hidden = len(network.layers) - 1
        if self.feedback == "random":
            classes = network.layers[-1].out_features
            like = network.layers[-1].weight
            for l in range(self.num_hidden):
                n_l = network.layers[l].out_features
                self.register_buffer(f"feedback_{l}", fixed_uniform((n_l, classes), n_l, self.seed + l, like))

    def feedback_matrix(self, l: int) -> Tensor:
        """The random feedback ``B_l`` ``[n_l, classes]`` of hidden layer ``l``."""
        return getattr(self, f"feedback_{l}")

    @torch.no_grad()
    def compute_updates(self, network: "SpikingNetwork", frames: Tensor, labels: Tensor):
        """Simulate the batch forward in time and return ``(loss, logits, [(param, update), ...])``."""
        x_seq = frames.transpose(0, 1)
        steps, batch = x_seq.shape[0], x_seq.shape[1]
        layers = list(network.layers)
        weights = [layer.weight for layer in layers]
        sim = OnlineSimulation(network, batch, frames)
        pseudo = network.params.pseudo_derivative
        readout = TaskReadout(labels, layers[-1].out_features, steps, frames)
        d_w = [torch.zeros_like(layer.weight) for layer in layers]
        d_v = [torch.zeros_like(layer.recurrent_weight) if layer.recurrent_weight is not None else None for layer in layers]
        feedback = [self.feedback_matrix(l).t() for l in range(len(layers) - 1)] if self.feedback == "random" else None
        first_errors = sim.first_errors
        for start, stop in blocks(steps, BLOCK_STEPS):
            sim.begin_block(x_seq[start:stop])  # W_0 is fixed during the batch
            with single_thread(frames.device):  # per-step ops are tiny
                for i in range(stop - start):
                    sim.step(i)
                    delta = readout.step(sim, d_w[-1])
                    error = delta  # dE/du of the layer above (symmetric routing)
                    for l in range(len(layers) - 2, -1, -1):
                        signal = error @ weights[l + 1] if feedback is None else delta @ feedback[l]
                        error = signal.mul_(pseudo(sim.mem[l]))
                        if l == 0:
                            first_errors[i] = error  # accumulated exactly, per block, by end_block
                        else:
                            d_w[l].addmm_(error.t(), sim.inputs[l].z2)
                        if d_v[l] is not None:
                            d_v[l].addmm_(error.t(), sim.recurrent[l].z2)
            sim.end_block(d_w[0])
        updates = [(layer.weight, d) for layer, d in zip(layers, d_w)]
        updates += [(layer.recurrent_weight, d) for layer, d in zip(layers, d_v) if d is not None]
        return readout.loss, readout.logits, updates

    def training_step(self, module: "SpikingClassifier", frames: Tensor, labels: Tensor) -> LearnerStep:
        loss, logits, updates = self.compute_updates(module.network, frames, labels)
        return LearnerStep(loss=loss, logits=logits, objective=update_objective(updates))
