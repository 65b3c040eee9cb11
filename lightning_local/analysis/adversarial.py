"""FGSM inputs for a spiking network, computed on a differentiable stand-in (torchattacks).

**ANN counterpart (documented choice).** :class:`SurrogateANN` is the trained
SNN with the *same weights and the same recursion* (eq. 1: synaptic current
decaying with ``alpha``, membrane leaking with ``beta``, recurrent weights
``V`` on REC hidden layers, subtractive reset by ``V_th`` detached from the
gradient like in the SNN) in which the Heaviside spike ``H(u - V_th)`` is
replaced by the smooth rate ``sigmoid(slope * (u - V_th))``. It reads out the
time-averaged output membrane, like the SNN's ``logits``. As ``slope`` grows it
converges to the SNN (same spikes and logits); a moderate slope (default 5)
gives informative input gradients everywhere. The attack is a *transfer*
attack: the perturbation is computed on the surrogate and applied to the SNN.

**Input scaling.** Frames are binary event indicators, already in ``[0, 1]``,
so they are attacked as they are (no rescaling). torchattacks' FGSM returns
``clamp(x + eps * sign(grad), 0, 1)``: a pixel that is on can only be lowered,
one that is off only raised, and every changed entry moves by exactly ``eps``
(L-inf norm ``eps``; entries whose gradient is zero or points out of ``[0, 1]``
stay). The perturbed, real-valued frames are fed to the SNN unchanged (its
first layer computes ``W x``, which accepts real inputs).

:class:`SNNLogits` instead exposes the SNN itself (surrogate-gradient BPTT
through the spikes) for a white-box attack.
"""

from __future__ import annotations

from typing import Literal

import torch
import torchattacks
from torch import Tensor, nn

from ..models import SpikingNetwork

AttackModel = Literal["ann", "snn"]


class SurrogateANN(nn.Module):
    """Differentiable rate counterpart of a :class:`SpikingNetwork` (shares its parameters).

    Args:
        network: the trained SNN; its weights are used, not copied.
        slope: steepness of ``sigmoid(slope * (u - V_th))`` replacing the spike.
    """

    def __init__(self, network: SpikingNetwork, slope: float = 5.0) -> None:
        super().__init__()
        if slope <= 0:
            raise ValueError(f"slope must be positive (got {slope}).")
        self.network = network
        self.slope = slope

    def forward(self, frames: Tensor) -> Tensor:
        """Logits ``[B, C]`` (time-averaged output membrane) for ``frames`` ``[B, T, N]``."""
        return self.membrane(frames).mean(dim=0)

    def membrane(self, frames: Tensor) -> Tensor:
        """Output-layer membrane ``[T, B, C]`` of the smooth recursion."""
        x = frames.transpose(0, 1)
        for layer in self.network.layers:
            x, membrane = self._layer(layer, x)
        return membrane

    def _layer(self, layer: nn.Module, inputs: Tensor) -> tuple[Tensor, Tensor]:
        params = layer.params
        currents = inputs @ layer.weight.t()
        batch, neurons = currents.shape[1:]
        syn = currents.new_zeros(batch, neurons)
        mem = currents.new_zeros(batch, neurons)
        rate = currents.new_zeros(batch, neurons)
        rates, mems = [], []
        for current in currents:
            syn = params.alpha * syn + current
            if layer.recurrent_weight is not None:
                syn = syn + rate @ layer.recurrent_weight.t()
            mem = params.beta * mem + syn - params.v_th * rate.detach()
            rate = torch.sigmoid(self.slope * (mem - params.v_th))
            rates.append(rate)
            mems.append(mem)
        return torch.stack(rates), torch.stack(mems)


class SNNLogits(nn.Module):
    """The SNN as ``frames [B, T, N] -> logits [B, C]`` (gradients through the surrogate spike derivative)."""

    def __init__(self, network: SpikingNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, frames: Tensor) -> Tensor:
        return self.network(frames).logits


def attack_model(network: SpikingNetwork, kind: AttackModel = "ann", slope: float = 5.0) -> nn.Module:
    """The differentiable model FGSM is computed on: the surrogate ANN or the SNN itself."""
    if kind == "ann":
        return SurrogateANN(network, slope)
    if kind == "snn":
        return SNNLogits(network)
    raise ValueError(f"Unknown attack model {kind!r}: use 'ann' (surrogate) or 'snn' (white-box).")


def fgsm(model: nn.Module, frames: Tensor, labels: Tensor, epsilon: float) -> Tensor:
    """``torchattacks.FGSM`` of ``frames`` (in ``[0, 1]``) against ``model``; returns the perturbed frames.

    Needs gradients: call with ``torch.enable_grad()`` and outside inference
    mode, on ordinary (non-inference) tensors. ``model``'s train/eval flags and
    those of the wrapped network are left as they were.
    """
    if epsilon == 0:
        return frames.detach().clone()
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()  # torchattacks restores the *wrapper's* mode afterwards; evaluate in eval mode
        return torchattacks.FGSM(model, eps=epsilon)(frames, labels)
    finally:
        for module, training in modes:
            module.training = training
