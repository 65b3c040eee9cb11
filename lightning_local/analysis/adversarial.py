"""FGSM inputs for a spiking network, crafted on a differentiable stand-in (torchattacks).

**The paper's attack (``attack_model="ann"``).** Table IV crafts the perturbation
on "the ANN counterpart" and applies it to the SNNs. We read this as a transfer
attack from one separately trained ANN of the same topology: the ReLU ANN of an
ANN->SNN conversion run (:class:`TrainedANN`, loaded from that run's checkpoint,
``ann_checkpoint``), so every SNN - each rule, FF and REC - is evaluated on the
*same* perturbed samples (docs/protocols.md, "Table IV and Figure 3"). The
benchmark trains one such ANN per seed and gives its checkpoint to every run of
that seed.

**The SNN's own counterpart (``attack_model="counterpart"``; the default without
``ann_checkpoint``).** :class:`~lightning_local.models.ann.ANNCounterpart`: the
SNN's own weights ``W_l`` with ReLU units on the time-averaged input ``a_0 =
mean_t x^t``. It has no counterpart for the recurrent weights ``V`` of a REC net,
so a REC net is attacked through its feed-forward weights only. Because the
weights are the attacked model's own, this is close to a white-box attack, and FF
and REC nets see different perturbations.

*From the time-averaged input to the frames.* Both ANNs see a sum or mean of the
frames over time, so torchattacks differentiates through it: ``dL/dx^t`` is the
same for every step ``t`` (``dL/da_0`` times 1 or ``1/T``). The sign of the gradient
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

from typing import TYPE_CHECKING, Literal, Optional, get_args

import torch
import torchattacks
from torch import Tensor, nn

from ..models import SpikingNetwork
from ..models.ann import ANNCounterpart
from ..neurons import lif_update

if TYPE_CHECKING:  # pragma: no cover
    from ..module import SpikingClassifier

AttackModel = Literal["ann", "counterpart", "smoothed_snn", "snn"]
ATTACK_MODELS: tuple[str, ...] = get_args(AttackModel)


class TrainedANN(nn.Module):
    """The frozen ReLU ANN of an ANN->SNN conversion run: ``frames [B, T, N] -> logits [B, C]``.

    Args:
        classifier: a :class:`~lightning_local.module.SpikingClassifier` whose learner holds
            an ANN (``learner.ann_logits``, e.g. the conversion rule); see :meth:`from_checkpoint`.
    """

    def __init__(self, classifier: "SpikingClassifier") -> None:
        super().__init__()
        if not callable(getattr(classifier.learner, "ann_logits", None)):
            raise ValueError(f"The attack ANN must come from a run whose learner trains an ANN (conversion); "
                             f"this checkpoint's learner is {type(classifier.learner).__name__}.")
        self.classifier = classifier.eval().requires_grad_(False)

    @classmethod
    def from_checkpoint(cls, path: str, map_location: Optional[torch.device] = None) -> "TrainedANN":
        """Load the conversion run's checkpoint ``path`` (its ANN weights are kept there beside the SNN's)."""
        from ..module import SpikingClassifier  # noqa: PLC0415 (the module imports the analyses' neighbours)

        return cls(SpikingClassifier.load_from_checkpoint(path, map_location=map_location))

    @property
    def num_inputs(self) -> int:
        """Inputs per step the ANN was trained on."""
        return self.classifier.network.num_inputs

    def forward(self, frames: Tensor) -> Tensor:
        return self.classifier.learner.ann_logits(self.classifier.network, frames)


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


def check_attack_model(kind: Optional[str], ann_checkpoint: Optional[str] = None) -> AttackModel:
    """The attack model in use (``None``: ``"ann"`` with ``ann_checkpoint``, else ``"counterpart"``); one-line errors."""
    if kind is None:
        return "ann" if ann_checkpoint else "counterpart"
    if kind not in ATTACK_MODELS:
        raise ValueError(
            f"Unknown attack model {kind!r}: use 'ann' (a trained ANN from ann_checkpoint, the paper's), 'counterpart' "
            "(the SNN's own weights as a ReLU ANN), 'smoothed_snn' (the SNN with sigmoid spikes) or 'snn' (white-box)."
        )
    if kind == "ann" and not ann_checkpoint:
        raise ValueError("attack_model='ann' needs ann_checkpoint: the checkpoint of a conversion run trained on the "
                         "same data (or use attack_model='counterpart').")
    return kind  # type: ignore[return-value]


def attack_model(network: SpikingNetwork, kind: AttackModel = "counterpart", slope: float = 5.0,
                 ann: Optional[nn.Module] = None) -> nn.Module:
    """The differentiable model FGSM is computed on (see the module docstring); ``ann``: the trained ANN for ``"ann"``."""
    check_attack_model(kind, "given" if ann is not None else None)
    if kind == "ann":
        if getattr(ann, "num_inputs", network.num_inputs) != network.num_inputs:
            raise ValueError(f"The attack ANN takes {ann.num_inputs} inputs per step but the network "  # type: ignore[union-attr]
                             f"{network.num_inputs}: train both on the same data.")
        return ann  # type: ignore[return-value]
    if kind == "counterpart":
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


class Attack:
    """The attack options the FGSM analyses share, and the attack model they build from them.

    Args:
        attack_model: ``"ann"``, ``"counterpart"``, ``"smoothed_snn"`` or ``"snn"`` (see the module
            docstring); None: ``"ann"`` when ``ann_checkpoint`` is given, else ``"counterpart"``.
        slope: sigmoid slope of the smoothed SNN (``"smoothed_snn"`` only).
        ann_checkpoint: checkpoint of the conversion run whose ANN crafts the perturbation (``"ann"``).
    """

    def __init__(self, attack_model: Optional[AttackModel] = None, slope: float = 5.0,
                 ann_checkpoint: Optional[str] = None) -> None:
        self.kind = check_attack_model(attack_model, ann_checkpoint)
        if slope <= 0:
            raise ValueError(f"slope must be positive (got {slope}).")
        self.slope = slope
        self.ann_checkpoint = ann_checkpoint
        self._ann: Optional[TrainedANN] = None

    def model(self, network: SpikingNetwork, device: torch.device) -> nn.Module:
        """The differentiable model to attack ``network`` through (the trained ANN is loaded once)."""
        if self.kind == "ann" and self._ann is None:
            self._ann = TrainedANN.from_checkpoint(str(self.ann_checkpoint), map_location=device)
        return attack_model(network, self.kind, self.slope, None if self._ann is None else self._ann.to(device))

    def describe(self) -> dict:
        """What the result files record about the attack."""
        return {"attack_model": self.kind, "slope": self.slope, "ann_checkpoint": self.ann_checkpoint}
