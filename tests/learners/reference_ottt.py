"""Independent autograd reference of OTTT (Xiao et al. 2022), sharing no code with the plugin.

The network is unrolled step by step with :func:`reference_rules.layer_step`; at every step
the state carried from ``t-1`` (synaptic current, membrane, and in REC the spikes entering
through ``V``) is ``.detach()``-ed, as is the reset (always), so ``L^t`` reaches the weights
only through the *spatial* path of step ``t``. Autograd then gives
``g_l^t = dL^t/du_l^t`` for every layer, and the OTTT update is the explicit formula

    Delta W_l = sum_t d/dW_l <g_l^t, W_l a_l^t>  (= sum_t (g_l^t)^T a_l^t for a dense W_l)
    a_l^t = lambda a_l^{t-1} + x_l^t,   lambda = beta (the membrane decay)

with the traces ``a`` filtered here by hand (``x_l`` the layer's input spikes for ``W_l``,
its own ``s_l^{t-1}`` for ``V_l``), and the weight gradient taken by autograd through
torch's ``linear``/``conv2d`` (:func:`reference_rules.project`).

**Where the substitution is exact.** With the temporal paths cut, autograd's own
``dL^t/dW_l`` at step ``t`` would see ``x_l^t`` only. Keeping the membrane's temporal
dependence on ``W`` (not on the other layers) gives ``d u_l^t/d W_l = z2^t`` for our
current-based neuron (``iota = alpha iota + W x``, ``u = beta u + iota``): the two-filter
trace. OTTT's single trace with ``lambda = beta`` equals ``z2`` exactly when ``alpha = 0``
(the paper's neuron, ``u^t = lambda u^{t-1} + W x^t`` up to the cut reset); then
``Delta W`` is the gradient of ``sum_t L^t`` with only the *other layers'* temporal
paths cut. For ``alpha > 0`` it is the gradient of a surrogate in which the membrane at step
``t`` receives the current ``W a^t`` - what this reference computes.

**What the cuts do.** Every path from ``u_l^t`` to ``L^t`` runs through step ``t`` (space), so
``g_l^t`` itself is the same with or without the cuts (checked: removing them leaves these
numbers unchanged); the cuts make the step self-contained, and what OTTT leaves out relative to
BPTT is the credit ``L^t`` gives a layer's *earlier* steps ``t' < t`` through every route but
its own membrane chain (which the trace carries): through the states of the layers above (the
spikes ``s_l^{t'}`` reach ``u_out^t`` through the output's current and membrane), through the
recurrent input ``V s^{t'}``, and through the reset. That is why OTTT differs from BPTT on two layers even at
``alpha = 0`` (``tests/learners/test_ottt.py``).
"""

from __future__ import annotations

import torch
from reference_rules import layer_params, layer_step, project
from torch.nn.functional import cross_entropy


def _surrogate_gradient(synapse, error, trace):
    """``d/dW <error, W trace>`` through torch's own projection (any synapse kind)."""
    leaf = synapse.weight.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad((project(trace, leaf, synapse) * error).sum(), leaf)
    return grad


def ottt_reference(net, frames, labels, sgd_lr=None):
    """OTTT's per-step gradients of every weight (``{id(param): [grad at t for t in range(T)]}``).

    ``labels`` are ``[B]``; ``L^t = sum_b CE(u_out^t, y_b) / (T B)``. With ``sgd_lr`` every
    step's gradient is applied at once (``W -= sgd_lr * grad``, OTTT_O with plain SGD) and the
    simulation goes on with the changed weights.
    """
    batch, steps = frames.shape[:2]
    layers = list(net.layers)
    states = [(frames.new_zeros(batch, *layer.out_shape),) * 3 for layer in layers]
    traces = [frames.new_zeros(batch, *layer.in_shape) for layer in layers]
    own = [frames.new_zeros(batch, *layer.out_shape) if layer.recurrent is not None else None for layer in layers]
    grads = {id(p): [] for layer in layers for p in layer_params(layer)}
    for t in range(steps):
        x, mems, inputs, previous = frames[:, t], [], [], []
        for l, layer in enumerate(layers):
            prev = tuple(s.detach() for s in states[l])  # every temporal path cut
            inputs.append(x.detach())
            previous.append(prev[2])
            states[l] = layer_step(layer, x, prev, detach_history=True, detach_recurrent=True)
            mems.append(states[l][1])
            x = states[l][2]  # the spatial path to the layer above stays
        loss = cross_entropy(mems[-1], labels, reduction="sum") / (steps * batch)
        errors = torch.autograd.grad(loss, mems)
        step_grads = []
        for l, layer in enumerate(layers):
            beta = layer.params.beta
            traces[l] = beta * traces[l] + inputs[l]
            step_grads.append((layer.synapse, _surrogate_gradient(layer.synapse, errors[l], traces[l])))
            if own[l] is not None:
                own[l] = beta * own[l] + previous[l]
                step_grads.append((layer.recurrent, _surrogate_gradient(layer.recurrent, errors[l], own[l])))
        for synapse, grad in step_grads:
            grads[id(synapse.weight)].append(grad)
            if sgd_lr is not None:
                with torch.no_grad():
                    synapse.weight.sub_(sgd_lr * grad)
    return grads


def ottt_total(net, frames, labels):
    """OTTT_A's update: the per-step gradients of :func:`ottt_reference` summed over time."""
    return {key: torch.stack(per_step).sum(0) for key, per_step in ottt_reference(net, frames, labels).items()}
