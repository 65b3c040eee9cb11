"""FGSM inputs for a spiking network, crafted on a differentiable stand-in (torchattacks).

**The paper's attack (default, ``attack_model="ann"``).** Table IV crafts the
perturbation on the *ANN counterpart* and applies it to the SNN. The counterpart
is :class:`~lightning_local.models.ann.ANNCounterpart`: the SNN's own weights
``W_l`` with ReLU units on the time-averaged input ``a_0 = mean_t x^t`` (the ANN
that ANN->SNN conversion trains; one definition, shared). It has no counterpart
for the recurrent weights ``V`` of a REC net, so a REC net is attacked through
its feed-forward weights only.

*From the time-averaged input to the frames.* The attack is run on the model
``frames -> ANN(mean_t frames)``, so torchattacks differentiates through the
mean: ``dL/dx^t = (1/T) dL/da_0`` for every step ``t``. The sign of the gradient
is therefore the same at every step, ``sign(dL/da_0)``, and FGSM moves every
frame by the same ``eps * sign(dL/da_0)`` before clamping to ``[0, 1]``. On
binary frames the clamp keeps only the moves that stay in range (a pixel that
is on can only go down, one that is off only up), so the *mean* input moves by
``eps * sign(g) * (share of steps that could move)``, at most ``eps`` per pixel;
the frames themselves move by exactly ``eps`` wherever they move (L-inf ``eps``).

**Other attack models.** ``"smoothed_snn"`` (:class:`SmoothedSNN`) is the
trained SNN with the *same weights and the same recursion* (eq. 1, ``V``
included, reset detached) in which the Heaviside spike ``H(u - V_th)`` is
replaced by ``sigmoid(slope * (u - V_th))``; it reads out the time-averaged
output membrane like the SNN's ``logits`` and converges to the SNN as ``slope``
grows. ``"snn"`` (:class:`SNNLogits`) attacks the SNN itself (white-box,
surrogate-gradient BPTT through the spikes).

**Input scaling.** Frames are binary event indicators, already in ``[0, 1]``,
so they are attacked as they are (no rescaling). torchattacks' FGSM returns
``clamp(x + eps * sign(grad), 0, 1)``; entries whose gradient is zero or points
out of ``[0, 1]`` stay. The perturbed, real-valued frames are fed to the SNN
unchanged (its first layer computes ``W x``, which accepts real inputs).
Real-valued input that is not inside ``[0, 1]`` (speech: MFCC features normalised
to zero mean and unit variance) has no such range: clamping would destroy it, so it
gets the same step ``x + eps * sign(grad)`` without the clamp (``eps`` is then in
units of the features' training standard deviation).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torchattacks
from torch import Tensor, nn

from ..models import SpikingNetwork
from ..models.ann import ANNCounterpart
from ..neurons import lif_update

AttackModel = Literal["ann", "smoothed_snn", "snn"]
ATTACK_MODELS: tuple[str, ...] = get_args(AttackModel)


class SmoothedSNN(nn.Module):
    """The SNN's recursion with a sigmoid in place of the spike (shares its parameters).

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
        """Eq. 1 (:func:`~lightning_local.neurons.lif_update`) over time with the sigmoid as the spike."""
        params = layer.params
        smooth = lambda mem: torch.sigmoid(self.slope * (mem - params.v_th))  # noqa: E731
        currents = layer.synapse(inputs)
        state = layer.initial_state(currents.shape[1], currents)
        rates, mems = [], []
        for current in currents:
            state = lif_update(current, state, params, smooth, layer.recurrent)
            rates.append(state.spk)
            mems.append(state.mem)
        return torch.stack(rates), torch.stack(mems)


class SNNLogits(nn.Module):
    """The SNN as ``frames [B, T, N] -> logits [B, C]`` (gradients through the surrogate spike derivative)."""

    def __init__(self, network: SpikingNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, frames: Tensor) -> Tensor:
        return self.network(frames).logits


def check_attack_model(kind: str) -> None:
    """Reject an unknown attack model name with the list of valid ones."""
    if kind not in ATTACK_MODELS:
        raise ValueError(
            f"Unknown attack model {kind!r}: use 'ann' (the paper's ReLU ANN counterpart), "
            "'smoothed_snn' (the SNN with sigmoid spikes) or 'snn' (white-box)."
        )


def attack_model(network: SpikingNetwork, kind: AttackModel = "ann", slope: float = 5.0) -> nn.Module:
    """The differentiable model FGSM is computed on (see the module docstring)."""
    check_attack_model(kind)
    if kind == "ann":
        return ANNCounterpart(network)
    if kind == "smoothed_snn":
        return SmoothedSNN(network, slope)
    return SNNLogits(network)


def fgsm(model: nn.Module, frames: Tensor, labels: Tensor, epsilon: float) -> Tensor:
    """``torchattacks.FGSM`` of ``frames`` against ``model`` (unclamped outside ``[0, 1]``); returns the perturbed frames.

    Needs gradients: call with ``torch.enable_grad()`` and outside inference
    mode, on ordinary (non-inference) tensors. ``model``'s train/eval flags and
    those of the wrapped network are left as they were.
    """
    if epsilon == 0:
        return frames.detach().clone()
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()  # torchattacks restores the *wrapper's* mode afterwards; evaluate in eval mode
        if frames.min() >= 0 and frames.max() <= 1:
            return torchattacks.FGSM(model, eps=epsilon)(frames, labels)
        # Unbounded features (see the module docstring): torchattacks' step without its [0, 1] clamp.
        inputs = frames.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(nn.functional.cross_entropy(model(inputs), labels), inputs)
        return (inputs + epsilon * grad.sign()).detach()
    finally:
        for module, training in modes:
            module.training = training
