"""Per-sample, per-time-step squared gradient norms of the log-likelihood (Fisher information, eq. 10).

For a sample ``(x, y)`` and a time step ``t`` the model's likelihood is
``f_w(y | x_{<=t}) = softmax(z^t)_y`` with the class scores ``z^t``:

* ``readout="running_mean"`` (default, eq. 10's prediction accumulated over steps
  ``1..t``): ``z^t = (1/t) sum_{tau<=t} u^tau``, the output membrane averaged over
  the steps seen so far. This is the model's own prediction rule restricted to the
  prefix (``argmax_c sum_tau u_c^tau``; the mean has the same argmax and, at the
  last step, is exactly the network's ``logits``, so ``f_w`` at ``t = T`` is the
  model's output distribution).
* ``readout="step"``: ``z^t = u^t``, the membrane at step ``t`` alone (the quantity
  the per-step training loss uses).

Both depend on the input up to ``t`` only, since the network is causal.

The class ``y`` is the data label (*empirical* Fisher), or drawn from the model's
own ``f_w(. | x_{<=t})`` at every step (*true* Fisher, eq. 9; one draw per sample
and step with a seeded generator, a Monte Carlo estimate of the expectation over
``y``), see :func:`sample_labels`. This module returns
``||grad_w log f_w(y | x_{<=t})||^2`` for every sample, step and layer, split
into the layer's linear (feed-forward) weights ``W`` (LW) and recurrent weights
``V`` (RW).

The gradient is the exact surrogate-gradient BPTT gradient of the network
(independent of the learning rule). For dense synapses per-sample gradients are
obtained without materialising them (convolutions form each sample's gradient
with the synapse's ``weight_gradient``): for ``W`` the per-sample gradient is
``sum_tau g^tau (a^tau)^T`` with ``g^tau`` the gradient w.r.t. the layer's input
current at step ``tau`` and ``a^tau`` its presynaptic input, so
``||.||_F^2 = sum_{tau,sigma} (g^tau . g^sigma)(a^tau . a^sigma)``; for ``V`` the
presynaptic vector is the layer's own spikes one step earlier. The currents are
per sample because examples in a batch never interact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Optional, get_args

import torch
from torch import Tensor

from ..models import SpikingNetwork
from ..synapses import LinearSynapse, Synapse

Readout = Literal["running_mean", "step"]
READOUTS: tuple[str, ...] = get_args(Readout)
LW, RW = 0, 1
WEIGHT_KINDS = ("LW", "RW")


def _forward_with_currents(network: SpikingNetwork, frames: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor], list[Tensor]]:
    """The network's own forward pass, also returning every layer's input, input current and spikes (time-major)."""
    inputs, currents = [], []

    def recording(synapse, batch_first: bool):
        def current_of(x: Tensor) -> Tensor:
            x = x.transpose(0, 1) if batch_first else x  # the first layer gets [B, T, ...] frames
            inputs.append(x)
            currents.append(synapse(x))
            return currents[-1].transpose(0, 1) if batch_first else currents[-1]

        return current_of

    output = network(frames, synapse_inputs=[recording(layer.synapse, l == 0) for l, layer in enumerate(network.layers)])
    return output.output_membrane, inputs, currents, output.spikes


def _squared_norm(synapse: Synapse, grad: Tensor, presynaptic: Tensor, gram: Optional[Tensor]) -> Tensor:
    """``||sum_tau grad^tau (x) presynaptic^tau||^2`` per sample (``[T, B, ...]`` in, ``[B]`` out).

    Dense synapses use the Gram identity (nothing per sample is materialised); others
    (convolutions) form each sample's weight gradient with the synapse's own ``weight_gradient``.
    """
    if gram is not None:
        return (_gram_over_time(grad.flatten(2)) * gram).sum(dim=(1, 2))
    return torch.stack([synapse.weight_gradient(grad[:, b], presynaptic[:, b]).square().sum() for b in range(grad.shape[1])])


def _gram_over_time(a: Tensor) -> Tensor:
    """``[T, B, n] -> [B, T, T]`` of inner products between time steps, per sample."""
    return torch.einsum("tbn,sbn->bts", a, a)


def _gram_if_dense(synapse: Synapse, presynaptic: Tensor) -> Optional[Tensor]:
    """The presynaptic Gram over time for a dense synapse (``None`` for other kinds)."""
    return _gram_over_time(presynaptic.flatten(2)) if isinstance(synapse, LinearSynapse) else None


def check_readout(readout: str) -> None:
    """Reject an unknown readout name."""
    if readout not in READOUTS:
        raise ValueError(f"Unknown readout {readout!r}: use 'running_mean' (accumulated over 1..t) or 'step'.")


def class_scores(membrane: Tensor, readout: Readout = "running_mean") -> Tensor:
    """Class scores ``z^t`` ``[T, B, C]`` of ``f_w(. | x_{<=t}) = softmax(z^t)`` from the output membrane."""
    check_readout(readout)
    if readout == "step":
        return membrane
    steps = torch.arange(1, membrane.shape[0] + 1, dtype=membrane.dtype, device=membrane.device)
    return membrane.cumsum(0) / steps[:, None, None]


def sample_labels(log_probs: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """One class per step and sample drawn from ``exp(log_probs)`` ``[T, B, C]``; returns ``[T, B]``.

    Drawn on the CPU (in float64) with ``generator``, so a seeded generator gives the same
    classes on any device; rows are flattened in ``(t, b)`` order.
    """
    steps, batch, classes = log_probs.shape
    probs = log_probs.detach().double().exp().reshape(-1, classes).cpu()
    return torch.multinomial(probs, 1, generator=generator).view(steps, batch).to(log_probs.device)


def squared_gradient_norms(
    network: SpikingNetwork,
    frames: Tensor,
    labels: Optional[Tensor],
    readout: Readout = "running_mean",
    time_steps: Optional[Sequence[int]] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """``||grad log f_w(y | x_{<=t})||^2`` per sample, step, layer and weight kind.

    Args:
        network: the SNN (its parameters are not modified and no ``.grad`` is touched).
        frames: ``[B, T, N]`` inputs.
        labels: ``[B]`` data labels (empirical Fisher), ``[T, B]`` one class per step, or
            ``None``: ``y`` drawn from the model's ``f_w(. | x_{<=t})`` at every step with
            ``generator`` (true Fisher, eq. 9; :func:`sample_labels` on all ``T`` steps).
        readout: ``"running_mean"`` (prediction accumulated over ``1..t``) or ``"step"`` (membrane at ``t``).
        time_steps: steps ``t`` to evaluate (default: all ``T``).
        generator: random generator of the draw when ``labels`` is ``None``.

    Returns:
        ``[B, len(time_steps), num_layers, 2]``; ``[..., 0]`` for LW, ``[..., 1]`` for RW
        (zero for layers without recurrent weights).
    """
    check_readout(readout)
    batch, num_steps = frames.shape[:2]
    steps = list(range(num_steps)) if time_steps is None else [int(t) for t in time_steps]
    if any(not 0 <= t < num_steps for t in steps):
        raise ValueError(f"time_steps must lie in [0, {num_steps - 1}] (got {steps}).")
    if labels is not None and tuple(labels.shape) not in ((batch,), (num_steps, batch)):
        raise ValueError(f"labels must have shape [{batch}] or [{num_steps}, {batch}] (got {tuple(labels.shape)}).")
    with torch.enable_grad():
        membrane, inputs, currents, spikes = _forward_with_currents(network, frames)
        log_probs = torch.log_softmax(class_scores(membrane, readout), dim=-1)
        if labels is None:
            labels = sample_labels(log_probs, generator)
        labels = labels.expand(num_steps, batch)
        log_likelihood = log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        inputs = [a.detach() for a in inputs]
        previous = [torch.cat([torch.zeros_like(s[:1]), s[:-1]]).detach() for s in spikes]  # s^{t-1}: V's input
        input_grams = [_gram_if_dense(layer.synapse, a) for layer, a in zip(network.layers, inputs)]
        recurrent_grams = [
            _gram_if_dense(layer.recurrent, s) if layer.recurrent is not None else None for layer, s in zip(network.layers, previous)
        ]
        out = frames.new_zeros(frames.shape[0], len(steps), len(network.layers), 2)
        for k, t in enumerate(steps):
            grads = torch.autograd.grad(log_likelihood[t].sum(), currents, retain_graph=True, allow_unused=True)
            for l, grad in enumerate(grads):
                if grad is None:
                    continue
                g = grad[: t + 1]  # the loss at t does not depend on later currents
                prefix = lambda gram: None if gram is None else gram[:, : t + 1, : t + 1]  # noqa: E731
                layer = network.layers[l]
                out[:, k, l, LW] = _squared_norm(layer.synapse, g, inputs[l][: t + 1], prefix(input_grams[l]))
                if layer.recurrent is not None:
                    out[:, k, l, RW] = _squared_norm(layer.recurrent, g, previous[l][: t + 1], prefix(recurrent_grams[l]))
    return out.detach()


def normalize_per_step(fisher: Tensor, present: Tensor) -> Tensor:
    """Divide ``fisher`` ``[T, L, 2]`` by its sum over layers and kinds at each step (only ``present`` entries).

    Steps whose total is zero become NaN.
    """
    masked = torch.where(present, fisher, torch.zeros_like(fisher))
    total = masked.sum(dim=(1, 2), keepdim=True)
    normalized = masked / total
    return torch.where(present & (total > 0), normalized, torch.full_like(fisher, float("nan")))


def weight_kinds_present(network: SpikingNetwork) -> Tensor:
    """``[L, 2]`` bool: every layer has LW; RW only where recurrent weights exist."""
    return torch.tensor([[True, layer.recurrent is not None] for layer in network.layers])
