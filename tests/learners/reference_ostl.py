"""Independent autograd reference of OSTL (Bohnstingl et al. 2022), sharing no code with the plugin.

Two unrolled passes with :func:`reference_rules.layer_step`:

1. **Spatial signals.** Every temporal path is cut (the state carried from ``t-1``, the recurrent
   input), so autograd's ``g_l^t = dL^t/du_l^t`` runs through the layers above at step ``t`` only.
2. **Temporal eligibilities.** Each layer is unrolled with its input from the layer below and its
   recurrent input ``V s^{t-1}`` detached, and its own history kept - with the reset attached for
   ``reset="differentiable"`` - so ``u_l^t`` depends on ``W_l`` (and ``V_l``) through the layer's
   own recursion only: ``d u_l^t / d W_l`` is OSTL's eligibility.

OSTL's update is then the gradient of the surrogate ``sum_l sum_t <g_l^t (detached), u_l^t>``.
"""

from __future__ import annotations

import torch
from reference_rules import layer_params, layer_step, simulate, task_loss
from torch.nn.functional import cross_entropy


def same_step_signals(net, frames, labels):
    """``g_l^t`` of every layer and step through space only (``[layer][t]``), for ``[B]`` labels."""
    batch, steps = frames.shape[:2]
    layers = list(net.layers)
    states = [(frames.new_zeros(batch, *layer.out_shape),) * 3 for layer in layers]
    signals = [[] for _ in layers]
    for t in range(steps):
        x, mems = frames[:, t], []
        for l, layer in enumerate(layers):
            prev = tuple(s.detach() for s in states[l])
            states[l] = layer_step(layer, x, prev, detach_history=True, detach_recurrent=True)
            mems.append(states[l][1])
            x = states[l][2]
        loss = cross_entropy(mems[-1], labels, reduction="sum") / (steps * batch)
        for l, g in enumerate(torch.autograd.grad(loss, mems)):
            signals[l].append(g)
    return signals


def ostl_reference(net, frames, labels, reset="differentiable"):
    """OSTL's update of every weight (``{id(param): update}``)."""
    signals = same_step_signals(net, frames, labels)
    cuts = dict(detach_input=True, detach_recurrent=True, detach_reset=reset == "detached")
    mems, _ = simulate(net, frames, lambda l: cuts)
    surrogate = sum((g * u).sum() for per_layer_g, per_layer_u in zip(signals, mems) for g, u in zip(per_layer_g, per_layer_u))
    params = [p for layer in net.layers for p in layer_params(layer)]
    return {id(p): g for p, g in zip(params, torch.autograd.grad(surrogate, params))}


def bptt_through_the_reset(net, frames, labels):
    """The exact gradient of the training loss with the reset's path kept (no cut at all)."""
    mems, _ = simulate(net, frames, lambda l: dict(detach_reset=False))
    params = [p for layer in net.layers for p in layer_params(layer)]
    return {id(p): g for p, g in zip(params, torch.autograd.grad(task_loss(mems[-1], labels), params))}
