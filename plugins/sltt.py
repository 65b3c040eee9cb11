"""SLTT: spatial learning through time (Meng et al., ICCV 2023) for the paper's two-variable LIF neuron."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
from torch import Tensor

from lightning_local.learners import NEURON_SPACE, BatchUpdates, Learner
from lightning_local.learners.traces import (
    BLOCK_STEPS, BlockSimulation, TaskReadout, blocks, same_step_errors, update_bytes, update_pairs, zero_updates,
)

if TYPE_CHECKING:  # pragma: no cover
    from lightning_local.models import SpikingNetwork


class SLTT(Learner):
    r"""Spatial learning through time: BPTT with every temporal gradient path dropped.

    **What is cut.** Meng et al. observe that in BPTT of an SNN the gradient
    reaching a layer through *time* (the membrane's leak ``u^{t-1} -> u^t``) carries
    little of the total, and drop it: at each step the error flows through *space*
    only, from the loss at that step down through the layers at the same step. For
    this project's neuron (:mod:`lightning_local.neurons.lif`)::

        iota^t = alpha iota^{t-1} + W x^t + V s^{t-1}
        u^t    = beta  u^{t-1}    + iota^t - V_th s^{t-1}

    SLTT treats ``iota^{t-1}``, ``u^{t-1}`` and ``s^{t-1}`` as constants in the
    backward pass: the synaptic current's and the membrane's history, the reset
    (detached in every rule anyway) and, in REC, the recurrent input ``V s^{t-1}``'s
    dependence on earlier steps. Then ``d u^t / d W = x^t`` and
    ``d u^t / d V = s^{t-1}``, and with ``g_l^t = dE/du_l^t`` along the same-step path::

        g_out^t = delta^t = dE/du_out^t          (the readout is the membrane)
        g_l^t   = (g_{l+1}^t W_{l+1}) * psi_l^t  psi = surrogate ds/du
        Delta W_l = sum_t (g_l^t)^T x_l^t,   Delta V_l = sum_t (g_l^t)^T s_l^{t-1}

    (for the paper's one-variable neuron the same cut leaves ``du^t/dW = x^t`` too). ``E`` is the network's training loss, the mean per-step
    cross-entropy of the output membrane
    (:class:`~lightning_local.learners.traces.TaskReadout`, as e-prop and DECOLLE),
    so every step has its own error ``delta^t``. Unlike e-prop, no eligibility
    trace is kept: the cut removes the layer's own temporal chain as well.

    **Online, memory flat in T.** Because each step's update needs only that step's
    inputs, membranes and errors, the batch is simulated forward under ``no_grad`` in
    blocks of ``BLOCK_STEPS`` (32) steps
    (:class:`~lightning_local.learners.traces.BlockSimulation` without traces: one
    projection and one scan per layer and block, the network's own forward, so the
    spikes are exactly the network's); each block's errors are computed for all of
    its steps at once and turned into one ``weight_gradient`` per synapse. Nothing of
    length T is stored: working memory is one block, whatever the sequence length.
    Any synapse kind works (dense or convolutional): only the synapse's ``transmit``,
    ``backward`` and ``weight_gradient`` are used.

    **SLTT-K** (``k``). The paper's SLTT-K backpropagates at ``K`` time steps only
    (here chosen at random per batch) (the forward pass and the reported loss still cover all steps).
    The update is the sum of the chosen steps' contributions, not rescaled, so
    ``k >= T`` is exactly SLTT. The ``K`` distinct steps of a batch are drawn
    uniformly from ``torch.Generator().manual_seed(seed + 1_000_003 * n)`` with ``n``
    the number of batches drawn so far (buffer ``batches_drawn``, so a resumed
    checkpoint continues the sequence, and every DDP rank draws the same steps);
    :meth:`chosen_steps` gives the steps of batch ``n``.

    The update is returned as :func:`~lightning_local.learners.update_objective`, so
    Lightning's optimizer applies it and DDP all-reduces (averages) it.

    Args:
        k: number of time steps per batch that are backpropagated (SLTT-K);
            ``None`` (default): all steps.
        seed: seed of the SLTT-K step draws (unused when ``k`` is ``None``).
    """

    name = "sltt"
    memory_constant_in_T = True  # one block at a time, no traces
    paper_row = "bptt"  # an approximation of BPTT's gradient: Table VII's BPTT row in the paper presets
    search_space = NEURON_SPACE

    def __init__(self, k: Optional[int] = None, seed: int = 0) -> None:
        super().__init__()
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"SLTT's k must be a positive number of time steps or null for all steps (got {k!r}).")
        self.k = k
        self.seed = seed
        if k is not None:
            self.register_buffer("batches_drawn", torch.zeros((), dtype=torch.long))

    def carried_state_bytes(self, network: "SpikingNetwork", frames: Tensor) -> int:
        sim = BlockSimulation(network, frames.shape[0], frames, block=min(BLOCK_STEPS, frames.shape[1]), traces=False)
        return sim.state_nbytes() + update_bytes(network)

    def chosen_steps(self, steps: int, batch_index: int) -> Optional[Tensor]:
        """The sorted steps backpropagated in batch ``batch_index`` of a ``steps``-long sequence (``None``: all)."""
        if self.k is None or self.k >= steps:
            return None
        generator = torch.Generator().manual_seed(self.seed + 1_000_003 * batch_index)
        return torch.randperm(steps, generator=generator)[: self.k].sort().values

    def _draw(self, steps: int) -> Optional[Tensor]:
        """This batch's steps; advances the draw counter."""
        if self.k is None:
            return None
        chosen = self.chosen_steps(steps, int(self.batches_drawn))
        self.batches_drawn += 1
        return chosen

    @torch.no_grad()
    def updates(self, network: "SpikingNetwork", frames: Tensor, labels: Tensor) -> BatchUpdates:
        """Simulate the batch block by block and return ``(loss, logits, [(param, update), ...])``."""
        batch, steps = frames.shape[:2]
        layers = list(network.layers)
        readout = TaskReadout(labels, layers[-1].out_features, steps, frames)
        d_w, d_v = zero_updates(layers)
        chosen = self._draw(steps)
        selected = None if chosen is None else torch.zeros(steps, dtype=torch.bool).index_fill_(0, chosen, True)
        sim = BlockSimulation(network, batch, frames, traces=False)
        for start, stop in blocks(steps, BLOCK_STEPS):
            sim.run_block(frames[:, start:stop])
            delta = readout.account(sim.mems[-1])  # every step's loss and logits count, chosen or not
            rows = None if selected is None else selected[start:stop].nonzero().flatten().to(frames.device)
            if rows is not None and rows.numel() == 0:
                continue
            self._accumulate_block(sim, delta, rows, d_w, d_v)
        updates = update_pairs(layers, d_w, d_v)
        return BatchUpdates(readout.loss, readout.logits, updates)

    @staticmethod
    def _accumulate_block(sim: BlockSimulation, delta: Tensor, rows: Optional[Tensor], d_w, d_v) -> None:
        """Add the block's same-step updates; ``rows``: the block's steps to use (``None``: all)."""
        pick = (lambda x: x) if rows is None else (lambda x: x.index_select(0, rows))  # noqa: E731
        batch = sim.batch
        # g_out = dE/du_out = dE/d(current) (u^t = ... + iota^t, iota^t = ... + W x^t), then down within each step
        errors = same_step_errors(sim.layers, [pick(m) for m in sim.mems[:-1]], pick(delta))
        for l, (layer, error) in enumerate(zip(sim.layers, errors)):
            # inputs/previous are (step, sample) rows [k * B, ...]: view them per step to pick the same steps.
            layer.synapse.weight_gradient(error, pick(sim.inputs[l].view(-1, batch, *layer.in_shape)), add_to=d_w[l])
            if d_v[l] is not None:
                previous = pick(sim.previous[l].view(-1, batch, *layer.out_shape))
                layer.recurrent.weight_gradient(error, previous, add_to=d_v[l])
