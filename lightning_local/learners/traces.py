"""Forward-in-time helpers shared by the trace-based learning rules (e-prop, DECOLLE).

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
length. A rule that knows ``dE/du_j^t`` (call it ``g^t``) accumulates its
weight update as one matmul per layer and step, ``dW += (g^t)^T z2^t``.

:class:`OnlineSimulation` steps a :class:`~lightning_local.models.SpikingNetwork`
under ``no_grad`` and keeps every layer's neuron state and presynaptic traces.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..models import SpikingNetwork


class PresynapticTrace:
    """The two low-pass filters ``z1`` (synaptic) and ``z2`` (membrane) of one presynaptic population.

    Args:
        batch: batch size.
        neurons: presynaptic neurons.
        like: tensor whose device and dtype the traces take.
        alpha: synaptic decay of the *postsynaptic* layer.
        beta: membrane decay of the *postsynaptic* layer.
    """

    __slots__ = ("z1", "z2", "alpha", "beta")

    def __init__(self, batch: int, neurons: int, like: Tensor, alpha: float, beta: float) -> None:
        self.z1 = like.new_zeros(batch, neurons)
        self.z2 = like.new_zeros(batch, neurons)
        self.alpha, self.beta = alpha, beta

    def update(self, x: Tensor) -> Tensor:
        """Feed this step's presynaptic spikes; returns ``z2`` (updated in place)."""
        self.z1.mul_(self.alpha).add_(x)
        self.z2.mul_(self.beta).add_(self.z1)
        return self.z2

    def nbytes(self) -> int:
        return self.z1.numel() * self.z1.element_size() * 2


class OnlineSimulation:
    """Step-by-step forward pass of a :class:`SpikingNetwork` with presynaptic traces.

    After :meth:`step`, for each layer ``l``: ``mem[l]`` is ``u^t`` (before
    its reset), ``spk[l]`` is ``s^t``, ``inputs[l].z2`` the trace of its
    presynaptic input ``x^t`` and, for REC hidden layers, ``recurrent[l].z2``
    the trace of its own ``s^{t-1}`` (``None`` otherwise). The arithmetic is
    the one of :func:`~lightning_local.neurons.lif_step` in the same order, so
    the spikes equal the network's own forward pass.

    Must run under ``torch.no_grad()`` (the state is updated in place).

    Args:
        network: the network to simulate (its current weights are read at every step,
            so an optimizer may change them between steps).
        batch: batch size.
        like: tensor giving device and dtype.
    """

    def __init__(self, network: SpikingNetwork, batch: int, like: Tensor) -> None:
        params = network.params
        self.network = network
        self.alpha, self.beta, self.v_th = params.alpha, params.beta, params.v_th
        self.syn: list[Tensor] = []
        self.mem: list[Tensor] = []
        self.spk: list[Tensor] = []
        self.inputs: list[PresynapticTrace] = []
        self.recurrent: list[Optional[PresynapticTrace]] = []
        for layer in network.layers:
            n_out = layer.out_features
            self.syn.append(like.new_zeros(batch, n_out))
            self.mem.append(like.new_zeros(batch, n_out))
            self.spk.append(like.new_zeros(batch, n_out))
            self.inputs.append(PresynapticTrace(batch, layer.in_features, like, self.alpha, self.beta))
            self.recurrent.append(
                PresynapticTrace(batch, n_out, like, self.alpha, self.beta) if layer.recurrent_weight is not None else None
            )

    def step(self, frame: Tensor) -> None:
        """Advance every layer by one step on ``frame`` ``[batch, num_inputs]``."""
        x = frame
        alpha, beta, v_th = self.alpha, self.beta, self.v_th
        for l, layer in enumerate(self.network.layers):
            previous = self.spk[l]
            # iota^t = alpha iota^{t-1} + W x^t (+ V s^{t-1})
            syn = torch.addmm(self.syn[l], x, layer.weight.t(), beta=alpha)
            if layer.recurrent_weight is not None:
                syn.addmm_(previous, layer.recurrent_weight.t())
                self.recurrent[l].update(previous)
            # u^t = beta u^{t-1} + iota^t - V_th s^{t-1}
            mem = torch.add(syn, self.mem[l], alpha=beta).sub_(previous, alpha=v_th)
            spk = (mem > v_th).to(mem.dtype)
            self.inputs[l].update(x)
            self.syn[l], self.mem[l], self.spk[l] = syn, mem, spk
            x = spk

    def state_nbytes(self) -> int:
        """Bytes of the state carried from one step to the next (neurons and traces)."""
        total = sum(t.numel() * t.element_size() for t in (*self.syn, *self.mem, *self.spk))
        total += sum(trace.nbytes() for trace in self.inputs)
        total += sum(trace.nbytes() for trace in self.recurrent if trace is not None)
        return total


def softmax_error(logits: Tensor, onehot: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """``(dE/dlogits, summed CE)`` of ``E = scale * sum_b CE(logits_b, y_b)``.

    The error is ``scale * (softmax(logits) - onehot)``; the returned loss is the
    *unscaled* sum over the batch (callers average it themselves).
    """
    log_p = torch.log_softmax(logits, dim=-1)
    loss = -(log_p * onehot).sum()
    return log_p.exp_().sub_(onehot).mul_(scale), loss


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
