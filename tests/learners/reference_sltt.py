"""Independent autograd reference of SLTT (Meng et al., ICCV 2023): BPTT with the temporal paths detached.

Written step by step with plain autograd over the unrolled network (the helpers of
:mod:`reference_rules`), sharing nothing with :mod:`lightning_local.plugins.sltt`:
at every step each layer's synaptic current and membrane history (``iota^{t-1}``,
``u^{t-1}``) and its recurrent input ``s^{t-1}`` are ``.detach()``-ed (the reset is
detached in every simulation), while the input from the layer below at the same
step is not, so autograd carries each step's loss down through the layers at that
step only.
"""

from __future__ import annotations

import torch
from torch.nn.functional import cross_entropy
from reference_rules import layer_params, simulate


def sltt_cuts(layer_index):
    """Every temporal path cut, the same-step spatial path kept."""
    return dict(detach_history=True, detach_recurrent=True)


def sltt_reference(net, frames, labels, steps=None):
    """SLTT's gradient of every weight (by ``id``); ``steps``: only these steps' losses are backpropagated (SLTT-K).

    The loss is the network's training loss: the per-step cross-entropy summed over the steps
    and divided by the number of targeted (step, sample) pairs; ``labels`` ``[B]`` (every step)
    or ``[B, T]`` (-100 left out). With ``steps`` the objective is that sum restricted to
    them, with the same divisor.
    """
    mems, _ = simulate(net, frames, sltt_cuts)
    total_steps = frames.shape[1]
    per_step = labels if labels.dim() == 2 else labels[:, None].expand(-1, total_steps)
    chosen = range(total_steps) if steps is None else [int(t) for t in steps]
    objective = sum(cross_entropy(mems[-1][t], per_step[:, t], ignore_index=-100, reduction="sum") for t in chosen)
    params = [p for layer in net.layers for p in layer_params(layer)]
    grads = torch.autograd.grad(objective / (per_step != -100).sum(), params)
    return dict(zip([id(p) for p in params], grads))
