"""OSTL: online spatio-temporal learning (Bohnstingl et al., IEEE TNNLS 2022)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from lightning_local.learners import NEURON_SPACE, BatchUpdates, Learner
from lightning_local.learners.traces import (
    BLOCK_STEPS, BlockSimulation, TaskReadout, blocks, same_step_errors, update_bytes, update_pairs, zero_updates,
)

if TYPE_CHECKING:  # pragma: no cover
    from lightning_local.models import SpikingNetwork

Reset = Literal["differentiable", "detached"]
RESETS = ("differentiable", "detached")


class OSTL(Learner):
    r"""Online spatio-temporal learning: each layer's exact temporal eligibility times a same-step spatial signal.

    **The rule** (Bohnstingl et al. 2022, eq. 9-13). OSTL separates a layer's gradient into a
    *temporal* part, the eligibility ``e^t = d u^t / d W`` through the layer's own recursion
    (inputs from the layer below held fixed), carried forward in time, and a *spatial* part,
    the learning signal ``g^t = dL^t / du^t`` through the layers above *at step t only*
    (:func:`~lightning_local.learners.traces.same_step_errors`, the signal OTTT and SLTT use)::

        Delta W_l = sum_t sum_b g_l^t[b, j] e_l^t[b, j, i]

    For our current-based LIF (``iota^t = alpha iota^{t-1} + W x^t``,
    ``u^t = beta u^{t-1} + iota^t - V_th s^{t-1}``, ``s = H(u - V_th)`` with pseudo-derivative
    ``psi``) the eligibility obeys::

        z1^t         = alpha z1^{t-1} + x^t                      (= d iota_j^t / d W_ji, presynaptic)
        e^t[b, j, i] = d^t[b, j] e^{t-1}[b, j, i] + z1^t[b, i]    (= d u_j^t / d W_ji)
        d^t          = beta - V_th psi^{t-1}   (reset="differentiable")   or   beta   ("detached")

    With the reset's path kept (the default; the paper's SNU keeps it) ``e`` depends on the
    *postsynaptic* neuron, so it is one number per synapse and sample: ``B x n_out x n_in``,
    OSTL's price for following the reset. ``reset="detached"`` cuts that path, as the network's
    BPTT and snnTorch do; then ``e = z2`` (the presynaptic two-filter trace) and OSTL is
    e-prop's ``"chained"`` signal (tested) - the option exists for that comparison and for
    the identity below.

    **Exactness.** Every path from ``W_l`` to ``L^t`` that OSTL drops runs through a layer
    above at an *earlier* step (or, REC, through ``V`` to another neuron). A single-layer
    network has neither: OSTL's update *is* BPTT's gradient there - BPTT through the reset for
    ``"differentiable"`` (tested against autograd with the reset attached) and our ``bptt``
    learner's for ``"detached"``.

    **REC layers.** The exact within-layer eligibility of a recurrent layer follows every
    neuron's influence on every other through ``V`` (RTRL, ``B x n x n x n_in`` numbers per
    layer); like e-prop we keep each neuron's own dynamics (leak, synaptic filter and reset)
    and treat the recurrent input ``V s^{t-1}`` as input: ``V`` is trained with
    ``x = s_l^{t-1}`` and its own per-synapse eligibility.

    **Computation.** The batch runs under ``no_grad`` in blocks of ``BLOCK_STEPS`` steps
    (:class:`~lightning_local.learners.traces.BlockSimulation`): the forward pass is the
    network's fused scan; within a block the products of ``d`` are cumulative products and one
    backward recursion on ``[B, n]`` tensors, so the block's share of ``Delta W`` and the
    eligibility at its end are a few matmuls over the ``B x n_out x n_in`` eligibility - exact,
    touching it once per block, not once per step. Nothing of length T is kept.
    Dense synapses only: a convolution's per-synapse eligibility would hold every kernel
    weight once per output position.

    Args:
        reset: ``"differentiable"`` (default; the eligibility follows the reset) or
            ``"detached"`` (it does not: e-prop ``"chained"``).
    """

    name = "ostl"
    memory_constant_in_T = True  # the eligibilities are B x n_out x n_in, whatever T
    linear_only = ("its eligibility is one number per synapse and sample, which a convolution would need once per "
                   "output position.")
    paper_row = "bptt"  # an approximation of BPTT's gradient: Table VII's BPTT row in the paper presets
    search_space = {**NEURON_SPACE, "learner.init_args.reset": {"choices": list(RESETS)}}

    def __init__(self, reset: Reset = "differentiable") -> None:
        super().__init__()
        if reset not in RESETS:
            raise ValueError(f"Unknown OSTL reset {reset!r}: use 'differentiable' (the eligibility follows the reset) "
                             "or 'detached'.")
        self.reset = reset

    def carried_state_bytes(self, network: "SpikingNetwork", frames: Tensor) -> int:
        batch, block = frames.shape[0], min(BLOCK_STEPS, frames.shape[1])
        sim = BlockSimulation(network, batch, frames, block=block, traces=False)
        total = sim.state_nbytes() + update_bytes(network)
        size = frames.element_size()
        for layer in network.layers:
            n = layer.out_features
            inputs = [layer.in_features] + ([n] if layer.recurrent is not None else [])
            total += sum(batch * n * m + batch * m + block * batch * m for m in inputs) * size  # e, z1, block's z1
            total += (5 * block + 2) * batch * n * size  # decay, its products, signal, filtered signal; psi carried
        return total

    @torch.no_grad()
    def updates(self, network: "SpikingNetwork", frames: Tensor, labels: Tensor) -> BatchUpdates:
        """Simulate the batch block by block; return ``(loss, logits, [(param, update), ...])``."""
        batch, steps = frames.shape[:2]
        layers = list(network.layers)
        readout = TaskReadout(labels, layers[-1].out_features, steps, frames)
        forward = [_Eligibility(batch, layer.in_features, layer.out_features, layer.params.alpha, frames) for layer in layers]
        recurrent = [_Eligibility(batch, layer.out_features, layer.out_features, layer.params.alpha, frames)
                     if layer.recurrent is not None else None for layer in layers]
        d_w, d_v = zero_updates(layers)
        psi_before = [frames.new_zeros(batch, layer.out_features) for layer in layers]  # psi^{t-1}; s^{-1} = 0 is constant
        sim = BlockSimulation(network, batch, frames, traces=False)
        for start, stop in blocks(steps, BLOCK_STEPS):
            sim.run_block(frames[:, start:stop])
            k = stop - start
            errors = same_step_errors(sim.layers, sim.mems, readout.account(sim.mems[-1]))
            for l, layer in enumerate(layers):
                params = layer.params
                psi = params.pseudo_derivative(sim.mems[l].reshape(k, batch, -1))
                if self.reset == "differentiable":
                    decay = torch.cat([psi_before[l].unsqueeze(0), psi[:-1]]).mul_(-params.v_th).add_(params.beta)
                else:
                    decay = torch.full_like(psi, params.beta)
                psi_before[l] = psi[-1]
                chain = _BlockChain(decay, errors[l].reshape(k, batch, -1))
                forward[l].accumulate(chain, sim.inputs[l].reshape(k, batch, -1), d_w[l].view(d_w[l].shape[0], -1))
                if recurrent[l] is not None:
                    recurrent[l].accumulate(chain, sim.previous[l].reshape(k, batch, -1), d_v[l])
        updates = update_pairs(layers, d_w, d_v)
        return BatchUpdates(readout.loss, readout.logits, updates)


class _BlockChain:
    r"""The products of the eligibility's decay ``d`` over one block of ``k`` steps, and the signal filtered by them.

    With ``P[s, t] = prod_{r=s+1}^{t} d^r`` (1 for ``t = s``), block-local steps::

        e^t = rho^t e^{before} + sum_{s<=t} P[s, t] z1^s,    rho^t = prod_{r=0}^{t} d^r

    so the block adds ``sum_t g^t e^t = sum_b c_b e^{before}_b + sum_s (h^s)^T z1^s`` with
    ``c = sum_t g^t rho^t`` and ``h^s = sum_{t>=s} P[s, t] g^t = g^s + d^{s+1} h^{s+1}``, and leaves
    ``e^{last} = rho^{last} e^{before} + sum_s P[s, last] z1^s``. ``h`` is a backward recursion over
    the block on ``[B, n]`` tensors (a quotient of cumulative products would divide by ``d``, which
    the reset can make zero).
    """

    def __init__(self, decay: Tensor, signal: Tensor) -> None:
        rho = decay.cumprod(dim=0)
        self.carried = (signal * rho).sum(dim=0)  # c [B, n]
        self.rho_last = rho[-1]  # [B, n]
        later = decay[1:].flip(0).cumprod(dim=0).flip(0)  # prod_{r=s+1}^{last} d^r for s < last
        self.to_last = torch.cat([later, torch.ones_like(decay[:1])])  # P[s, last] [k, B, n]
        filtered = signal.clone()
        for s in range(decay.shape[0] - 2, -1, -1):
            filtered[s].addcmul_(decay[s + 1], filtered[s + 1])
        self.filtered = filtered  # h [k, B, n]


class _Eligibility:
    """One dense synapse's OSTL eligibility ``e [B, n_out, n_in]`` and presynaptic trace ``z1 [B, n_in]``."""

    def __init__(self, batch: int, inputs: int, outputs: int, alpha: float, like: Tensor) -> None:
        self.e = like.new_zeros(batch, outputs, inputs)
        self.z1 = like.new_zeros(batch, inputs)
        self.alpha = alpha
        self._filters: dict[int, Tensor] = {}

    def _filter(self, k: int, like: Tensor) -> Tensor:
        """``[k, k]`` lower-triangular ``alpha^(s-r)`` (``z1^s = sum_r alpha^(s-r) x^r + ...``)."""
        if k not in self._filters:
            lag = torch.arange(k)[:, None] - torch.arange(k)[None, :]
            powers = torch.tensor(self.alpha, dtype=torch.float64) ** lag.clamp(min=0)
            self._filters[k] = torch.where(lag >= 0, powers, 0.0).to(like)
        return self._filters[k]

    def accumulate(self, chain: _BlockChain, inputs: Tensor, update: Tensor) -> None:
        """Add the block's ``sum_t g^t e^t`` to ``update`` ``[n_out, n_in]`` and advance ``e``, ``z1`` past it.

        ``inputs`` is the block's presynaptic input ``[k, B, n_in]``.
        """
        k = inputs.shape[0]
        x = inputs.to(self.z1.dtype)
        carried_z1 = self.alpha ** torch.arange(1, k + 1, dtype=torch.float64).to(x)  # alpha^(s+1) z1^{before}
        z1 = (self._filter(k, x) @ x.reshape(k, -1)).view_as(x).add_(carried_z1.view(k, 1, 1) * self.z1)
        update.add_(torch.einsum("sbj,sbi->ji", chain.filtered, z1))
        update.add_(torch.einsum("bj,bji->ji", chain.carried, self.e))
        self.e.mul_(chain.rho_last.unsqueeze(-1)).baddbmm_(chain.to_last.permute(1, 2, 0), z1.transpose(0, 1))
        self.z1 = z1[-1].clone()
