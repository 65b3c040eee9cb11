"""Independent autograd references of the local learning rules.

Everything here is written step by step with plain autograd and explicit
stop-gradients (``.detach()``); it shares nothing with the learners'
implementations except the network's weights and the surrogate derivative
function ``params.pseudo_derivative`` (the definition of ``psi``). Layers may be
dense or convolutional: a synapse's current is written here with torch's own
``linear``/``conv2d`` (:func:`project`), reading only the synapse's weight and, for a
convolution, its stride and padding.
"""

from __future__ import annotations

import torch
from torch.nn.functional import adaptive_avg_pool2d, conv2d, cross_entropy, linear


class Spike(torch.autograd.Function):
    """Heaviside of ``mem - v_th`` with the network's surrogate derivative."""

    @staticmethod
    def forward(ctx, mem, params):
        ctx.save_for_backward(mem)
        ctx.params = params
        return (mem > params.v_th).to(mem.dtype)

    @staticmethod
    def backward(ctx, grad):
        (mem,) = ctx.saved_tensors
        return grad * ctx.params.pseudo_derivative(mem), None


def project(x, weight, synapse):
    """The current ``W x`` of ``synapse`` (its ``weight`` replaced by ``weight``) for ``x`` ``[B, *in_shape]``."""
    if weight.dim() == 4:
        return conv2d(x, weight, stride=synapse.stride, padding=synapse.padding)
    return linear(x.flatten(1), weight)


def fa_projection(x, weight, feedback, synapse):
    """Value ``W x``; gradient to ``W`` is the usual one, gradient to ``x`` goes through ``B`` instead of ``W``."""
    through_b = project(x, feedback, synapse)
    return project(x.detach(), weight, synapse) + (through_b - through_b.detach())


def layer_step(
    layer, x, prev, *, detach_input=False, detach_history=False, detach_recurrent=False, feedback=None, detach_reset=True
):
    """One LIF step with the requested cuts; ``prev = (syn, mem, spk)``. The reset is detached, as in the
    network, unless ``detach_reset=False`` (OSTL's differentiable reset)."""
    params = layer.params
    syn, mem, spk = prev
    if detach_history:
        syn, mem = syn.detach(), mem.detach()
    if detach_input:
        x = x.detach()
    synapse = layer.synapse
    current = project(x, synapse.weight, synapse) if feedback is None else fa_projection(x, synapse.weight, feedback, synapse)
    new_syn = params.alpha * syn + current
    if layer.recurrent is not None:
        rec_in = spk.detach() if detach_recurrent else spk
        new_syn = new_syn + project(rec_in, layer.recurrent.weight, layer.recurrent)
    new_mem = params.beta * mem + new_syn - params.v_th * (spk.detach() if detach_reset else spk)
    return new_syn, new_mem, Spike.apply(new_mem, params)


def simulate(net, frames, cuts):
    """Run ``net`` step by step; ``cuts(l)`` gives the keyword cuts of layer ``l``.

    Returns per layer the lists of membranes and spikes over time.
    """
    batch, steps = frames.shape[:2]
    states = [(frames.new_zeros(batch, *layer.out_shape),) * 3 for layer in net.layers]
    mems = [[] for _ in net.layers]
    spks = [[] for _ in net.layers]
    for t in range(steps):
        x = frames[:, t]
        for l, layer in enumerate(net.layers):
            states[l] = layer_step(layer, x, states[l], **cuts(l))
            mems[l].append(states[l][1])
            spks[l].append(states[l][2])
            x = states[l][2]
    return mems, spks


def task_loss(out_mems, labels):
    """Mean per-step CE; ``labels`` ``[B]`` (every step) or ``[B, T]`` with -100 left out of sum and count."""
    if labels.dim() == 1:
        steps, batch = len(out_mems), labels.shape[0]
        return sum(cross_entropy(u, labels, reduction="sum") for u in out_mems) / (steps * batch)
    total = sum(cross_entropy(u, labels[:, t], ignore_index=-100, reduction="sum") for t, u in enumerate(out_mems))
    return total / (labels != -100).sum()


def output_errors(net, frames, labels):
    """``delta^t = dE/du_out^t`` of the true forward pass (autograd)."""
    with torch.no_grad():
        mems, _ = simulate(net, frames, lambda l: {})
    leaves = [u.clone().requires_grad_(True) for u in mems[-1]]
    return list(torch.autograd.grad(task_loss(leaves, labels), leaves))


def layer_params(layer):
    return [p for p in (layer.weight, layer.recurrent_weight) if p is not None]


def eprop_reference(net, frames, labels, target, feedback="chained"):
    """Gradients of layer ``target``'s parameters with e-prop's stop-gradients.

    The output layer's update is the exact gradient of the task loss in every mode.
    In every mode layer ``target`` keeps its own temporal chain; its inputs and its
    own ``s^{t-1}`` entering through ``V`` are detached.

    * ``"chained"``: the layers above keep only the same-step spatial path (their
      history is detached), so autograd carries ``dE_t/ds_target^t`` through them.
    * ``"symmetric"``: ``delta^t`` enters through a *linear* copy of the same-step
      path, ``s_target^t W_{target+1}^T ... W_out^T`` (detached weights, no spike
      nonlinearity), i.e. the injected error is ``delta^t W_out ... W_{target+1}``.
    * a tensor ``B`` ``[n_target, C]``: the error ``delta^t B^T`` is injected at ``s_target^t``.
    """

    def cuts(l):
        if l < target:
            return dict(detach_input=True, detach_history=True, detach_recurrent=True)
        if l == target:
            return dict(detach_input=True, detach_recurrent=True)
        return dict(detach_history=True, detach_recurrent=True)

    mems, spks = simulate(net, frames, cuts)
    layer = net.layers[target]
    if target == len(net.layers) - 1 or (isinstance(feedback, str) and feedback == "chained"):
        objective = task_loss(mems[-1], labels)  # the output layer: the exact gradient in every mode
    else:
        deltas = output_errors(net, frames, labels)
        if isinstance(feedback, str) and feedback == "symmetric":
            def route(s):
                for above in net.layers[target + 1:]:
                    s = s @ above.weight.detach().t()
                return s
            objective = sum((route(s) * d).sum() for s, d in zip(spks[target], deltas))
        else:
            objective = sum((s * (d @ feedback.t())).sum() for s, d in zip(spks[target], deltas))
    return torch.autograd.grad(objective, layer_params(layer))


def decolle_reference(net, frames, labels, readouts, readout="spikes", pool_sizes=None):
    """Gradients of all parameters of ``sum_l E_l`` with DECOLLE's stop-gradients (eq. 8).

    ``E_l`` is the per-step CE of ``G_l r_l^t`` with ``r`` the spikes or membranes of
    hidden layer ``l``; for a conv layer ``r`` is first average-pooled to
    ``pool_sizes[l]`` (torch's ``adaptive_avg_pool2d``) and flattened.
    """
    mems, spks = simulate(net, frames, lambda l: dict(detach_input=True, detach_recurrent=True))
    objective = task_loss(mems[-1], labels)
    for l, G in enumerate(readouts):
        signals = spks[l] if readout == "spikes" else mems[l]
        size = None if pool_sizes is None else pool_sizes[l]
        features = [s.flatten(1) if size is None else adaptive_avg_pool2d(s, size).flatten(1) for s in signals]
        objective = objective + task_loss([f @ G.t() for f in features], labels)
    params = [p for layer in net.layers for p in layer_params(layer)]
    return dict(zip([id(p) for p in params], torch.autograd.grad(objective, params)))


def fa_reference(net, frames, labels, feedbacks):
    """Feedback alignment gradients: BPTT with ``B_l`` instead of ``W_l`` between layers."""
    mems, _ = simulate(net, frames, lambda l: dict(feedback=feedbacks[l] if l >= 1 else None))
    params = [p for layer in net.layers for p in layer_params(layer)]
    return dict(zip([id(p) for p in params], torch.autograd.grad(task_loss(mems[-1], labels), params)))


def dfa_reference(net, frames, labels, feedbacks):
    """DFA: ``delta^t B_l^T`` injected at ``s_l^t``, back-propagated within each layer only."""
    mems, spks = simulate(net, frames, lambda l: dict(detach_input=True))
    deltas = output_errors(net, frames, labels)
    objective = task_loss(mems[-1], labels)
    for l, B in enumerate(feedbacks):
        objective = objective + sum((s * (d @ B.t()).view_as(s)).sum() for s, d in zip(spks[l], deltas))
    params = [p for layer in net.layers for p in layer_params(layer)]
    return dict(zip([id(p) for p in params], torch.autograd.grad(objective, params)))
