"""OTTT: online training through time (Xiao et al., NeurIPS 2022)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from lightning_local.learners import NEURON_SPACE, BatchUpdates, Learner, LearnerStep
from lightning_local.learners.traces import (
    BLOCK_STEPS, BlockSimulation, TaskReadout, blocks, optimizer_step, same_step_errors, update_bytes, update_pairs,
    zero_updates,
)

if TYPE_CHECKING:  # pragma: no cover
    from lightning_local.models import SpikingNetwork
    from lightning_local.module import SpikingClassifier

Variant = Literal["A", "O"]
VARIANTS = ("A", "O")


class OTTT(Learner):
    r"""Online training through time: the instantaneous gradient of every step times a presynaptic trace.

    **The rule** (Xiao et al. 2022, eq. 7-9). Every step has its own loss ``L^t`` (here the
    network's per-step cross-entropy, ``L^t = 1/N sum_b CE(u_out^t, y_b)`` with the
    normalisation of :class:`~lightning_local.learners.traces.TaskReadout`, so
    ``sum_t L^t`` is the training loss of every other rule). Its gradient flows through space
    at step ``t`` only: the reset and every temporal path (the neuron states carried from
    ``t-1``, and in REC the recurrent input ``V s_l^{t-1}``) are cut, so::

        g_out^t = dL^t/du_out^t = delta^t                      (membrane readout, no psi)
        g_l^t   = dL^t/du_l^t   = (g_{l+1}^t W_{l+1}) * psi_l^t  (same-step spatial path)
        Delta W_l = sum_t (g_l^t)^T a_l^t,   a_l^t = lambda a_l^{t-1} + x_l^t

    with ``x_l`` the layer's input spikes. REC hidden layers train ``V_l`` the same way, with
    the trace of the layer's own previous spikes ``x = s_l^{t-1}``.

    **lambda for our current-based LIF.** The paper's neuron has one state,
    ``u^t = lambda (u^{t-1} - V_th s^{t-1}) + W x^t``; its trace ``a^t`` is then *exactly*
    ``d u^t / d W`` with the reset cut, and ``lambda`` is the membrane leak. Ours has a synaptic
    current with its own decay ``alpha`` in front of the membrane (``beta``), whose exact
    ``d u^t / d W`` is the two-filter trace ``z2`` of :mod:`lightning_local.learners.traces`.
    We keep OTTT's single trace and set ``lambda = beta``, the membrane decay: it is the
    factor by which ``u`` itself forgets, as in the paper, and one trace per presynaptic
    neuron is what OTTT costs (``z2`` would make the rule e-prop with the ``"chained"``
    signal). The synaptic filter is therefore left out of the trace: the update is exact
    for ``alpha = 0`` (where ``a = z2``; then OTTT_A *is* e-prop ``"chained"``, and a
    single-layer network gets BPTT's gradient), and for ``alpha > 0`` it is the gradient of a
    surrogate in which the membrane at step ``t`` sees the current ``W a^t`` (tested against
    an independent autograd reference, ``tests/learners/reference_ottt.py``).

    **Variants** (``variant``):

    * ``"A"`` (default; OTTT_A): accumulate ``Delta W`` over the sequence and return it as
      :func:`~lightning_local.learners.update_objective` - one optimizer step per batch, so
      Lightning's clipping, accumulation, schedulers and DDP's all-reduce apply.
    * ``"O"`` (OTTT_O): manual optimization; the optimizer steps at *every* time step on
      that step's ``(g_l^t)^T a_l^t`` (averaged across DDP ranks with ``all_reduce``, as
      online DECOLLE does), and the simulation goes on with the new weights. Neuron states
      and traces are kept across these steps. Lightning counts each as a ``global_step``.

    Memory is flat in T: the batch is simulated under ``no_grad`` in blocks of at most
    ``BLOCK_STEPS`` steps (one step per block for ``"O"``) by
    :class:`~lightning_local.learners.traces.BlockSimulation` with the single-filter traces;
    each block's ``sum_t (g^t)^T a^t`` is exact from the trace's closed form. Dense and
    convolutional synapses alike (the errors go down through :meth:`Synapse.backward`, the
    updates through :meth:`Synapse.weight_gradient`).

    Args:
        variant: ``"A"`` (one optimizer step per batch) or ``"O"`` (one per time step).
    """

    name = "ottt"
    memory_constant_in_T = True  # nothing of length T is kept
    paper_row = "bptt"  # an approximation of BPTT's gradient: Table VII's BPTT row in the paper presets
    search_space = {**NEURON_SPACE, "learner.init_args.variant": {"choices": list(VARIANTS)}}

    def __init__(self, variant: Variant = "A") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"Unknown OTTT variant {variant!r}: use 'A' (accumulate) or 'O' (a step per time step).")
        self.variant = variant

    def carried_state_bytes(self, network: "SpikingNetwork", frames: Tensor) -> int:
        block = 1 if self.variant == "O" else min(BLOCK_STEPS, frames.shape[1])  # OTTT_O: blocks of one step
        sim = BlockSimulation(network, frames.shape[0], frames, block=block, synaptic_filter=False)
        return sim.state_nbytes() + update_bytes(network)

    @property
    def manual_optimization(self) -> bool:  # type: ignore[override]
        """OTTT_O steps the optimizer itself."""
        return self.variant == "O"

    @torch.no_grad()
    def run(self, network: "SpikingNetwork", frames: Tensor, labels: Tensor, apply=None):
        """Simulate the batch; return ``(loss, logits, [(param, update), ...])``.

        ``apply(updates)``, if given, is called after every step with that step's updates
        (which are then reset), and the simulation continues with the weights it leaves.
        """
        steps = frames.shape[1]
        layers = list(network.layers)
        task = TaskReadout(labels, layers[-1].out_features, steps, frames)
        d_w, d_v = zero_updates(layers)
        updates = update_pairs(layers, d_w, d_v)
        sim = BlockSimulation(network, frames.shape[0], frames, synaptic_filter=False)
        # OTTT_O: blocks of one step, so each step sees the weights of the previous step's update.
        for start, stop in blocks(steps, 1 if apply is not None else BLOCK_STEPS):
            sim.run_block(frames[:, start:stop])
            delta = task.block(sim, d_w[-1])  # adds the output layer's sum_t delta^t a^t
            errors = same_step_errors(sim.layers, sim.mems, delta)
            for l in range(len(layers) - 1):
                sim.accumulate(l, errors[l], d_w[l], d_v[l])
            if apply is not None:
                apply(updates)
                for _, d in updates:
                    d.zero_()
        return task.loss, task.logits, updates

    def updates(self, network: "SpikingNetwork", frames: Tensor, labels: Tensor) -> BatchUpdates:
        """OTTT_A's update of the batch (for ``"O"``: what the batch gives with no step in between)."""
        return BatchUpdates(*self.run(network, frames, labels))

    def training_step(self, module: "SpikingClassifier", frames: Tensor, labels: Tensor) -> LearnerStep:
        if self.variant == "A":
            return super().training_step(module, frames, labels)
        optimizer = module.optimizers()
        loss, logits, _ = self.run(module.network, frames, labels, apply=lambda updates: optimizer_step(optimizer, updates))
        return LearnerStep(loss=loss, logits=logits, objective=None)
