"""ANN-to-SNN conversion: data-based normalisation into IF neurons with an integrating readout (Diehl et al. 2015; Rueckauer et al. 2017), or into the model's LIF neurons with threshold balancing (Sengupta et al. 2019)."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Literal, Optional

import torch
from torch import Tensor

from lightning_local.learners import NEURON_SPACE, AutogradLearner, LearnerStep
from lightning_local.neurons import lif_sequence
from lightning_local.models.ann import ann_activations

if TYPE_CHECKING:  # pragma: no cover
    from lightning_local.models import NetworkOutput, SpikingNetwork
    from lightning_local.module import SpikingClassifier

log = logging.getLogger(__name__)

Balance = Literal["rates", "none"]
Neuron = Literal["if", "model"]
AnnInput = Literal["counts", "rates"]


class Conversion(AutogradLearner):
    r"""Train the rate-coded ReLU ANN of the same topology, evaluate it converted to the LIF SNN.

    **ANN.** Same layers as the SNN, bias-free, *sharing the SNN's weight
    parameters*: ``a_0 = sum_t x^t`` (``ann_input="counts"``, default: the spike count of
    each input over the sequence) or ``a_0 = mean_t x^t`` (``"rates"``: input spike rates per
    step in ``[0, 1]``), ``a_l = ReLU(W_l a_{l-1})`` for hidden layers, logits
    ``W_L a_{L-1}``; trained with autograd on ``CE(logits, y)`` (logged as ``train_loss``;
    ``train_acc`` is the ANN's). Why counts: a bias-free ReLU net is positively
    homogeneous, so on rates its logits are ``T`` times smaller than on counts - at
    N-MNIST's T = 100 bins and mean input rate 0.017 they start near zero and the ANN
    learns slowly (measured on the 800 shared recordings, 10 epochs, batch 64, lr 1e-3:
    held-out accuracy 0.67 on rates, 0.83 on counts). The conversion is exact either
    way: ``lambda_0`` is the factor from SNN spike rates to the ANN's input (``T`` for
    counts, 1 for rates).

    **Conversion** (data-based normalisation, Rueckauer et al. 2017's robust
    *percentile* variant of Diehl et al. 2015's max-normalisation, which
    ``percentile=100`` gives). ``lambda_l`` = the ``percentile``-th percentile of
    the *positive* ANN activations of layer ``l`` on training batches
    (``lambda_0``: ``T`` for counts, 1 for rates, see above); for the output layer the positive
    logits. The activations are computed with the *current* ANN weights on the
    inputs of the last ``calibration_batches`` training batches (kept in memory,
    not checkpointed); under DDP each rank's ``lambda`` is averaged across ranks
    so all ranks convert identically. Without any training batch seen yet (e.g.
    the sanity check, or right after resuming) the last ``lambda`` (a buffer) is
    reused, or 1 before the first conversion.

    **The converted SNN's neuron** (``neuron``). ``"if"`` (default) is the neuron of the
    classic conversion (Diehl et al. 2015, "Fast-classifying, high-accuracy spiking deep
    networks through weight and threshold balancing"; Rueckauer et al. 2017, "Conversion of
    continuous-valued deep networks to efficient event-driven networks"): the hidden layers
    become non-leaky integrate-and-fire neurons with reset by subtraction and no synaptic
    filter (``alpha = 0``, ``beta = 1``, the model's ``V_th``), whose spike count over the
    sequence is ``floor(sum_t W s^t / V_th)`` whatever the timing, as long as the membrane
    does not dip below zero - i.e. the ReLU of the *time-averaged* input that the ANN sees,
    to ``1/T`` - and the output layer becomes Rueckauer et al.'s non-spiking readout of the
    accumulated input ``sum_t W_L s^t``: a memoryless unit (``alpha = beta = 0``, so
    ``u^t = W_L s^t`` and the network's readout ``mean_t u^t = (1/T) sum_t W_L s^t``) whose
    weights are scaled so that ``u^t <= output_level * V_th`` for *any* spike vector (the
    largest row sum of positive weights is mapped to ``output_level * V_th``, see below), so
    it never spikes. The learner sets these constants on the layers (``layer.params``) at
    :meth:`attach`; the model's ``tau_syn``/``tau_mem`` (``alpha``/``beta``) then do not apply
    to this rule's network (the ANN never used them), and every later forward pass - also
    of a checkpoint loaded with this learner, e.g. by the analyses - simulates these neurons.
    ``"model"`` keeps the model's LIF neurons (synaptic filter ``alpha``, leak ``beta``)
    in every layer; the leak then costs accuracy that ``balance="rates"`` partly recovers.
    Chosen on validation (N-MNIST, ``nmnist_small``, 25 epochs, 2 seeds, checkpoints at
    epochs 10 and 25): ``"if"`` stayed within 0-1.6 points of the ANN on val and test, while
    ``"model"`` with balancing lost 5-16 points on val (4-8 on test); ``"if"`` with the LIF
    readout lost up to 9 points on val, because the leaky output membrane truncated at ``T``
    under-weights the spikes of the last saccade.

    How the LIF neuron is accounted for (``neuron="model"``; with ``"if"`` the same
    formulas hold at ``alpha = 0``): with a constant input rate ``r_{l-1}``, the
    synaptic current settles at ``iota = W r_{l-1} / (1 - alpha)`` (steady-state
    gain of the synaptic filter), and an integrate-and-fire membrane with
    subtractive reset then fires at ``r_l ~= iota / V_th`` (at most 1 per step).
    To make ``r_l = a_l / lambda_l``::

        W_l^SNN = W_l^ANN * (lambda_{l-1} / lambda_l) * (1 - alpha) * V_th      (hidden layers)

    **Leak compensation by threshold balancing** (``balance="rates"``, for
    ``neuron="model"``; the IF neuron has no leak to compensate). The
    membrane *leak* ``beta < 1`` costs about ``(1 - beta) u_mean / V_th`` spikes per
    step - a negative bias of ``~(1 - beta) / 2`` in rate units (0.05 at tau_mem = 10)
    that a bias-free layer cannot cancel - so the converted layers fire below
    ``a_l / lambda_l`` and the deficit compounds with depth (measured on N-MNIST:
    0.12 / 0.11 instead of 0.16 / 0.20 in the two hidden layers). After the
    normalisation, each hidden layer's threshold is balanced *on the SNN itself*,
    bottom-up, as in Sengupta et al. 2019 ("Going deeper in spiking neural networks",
    Spike-Norm: layer ``l`` is calibrated while driven by the spikes of the already
    converted layers below), here expressed as a weight gain ``k_l`` (equivalent
    to the threshold ``V_th / k_l``, as the dynamics are linear up to the threshold)
    - and, like Rathi et al. 2020's scaled Spike-Norm thresholds, a gain > 1. The
    balance criterion replaces Spike-Norm's maximum input: ``k_l`` makes the layer's
    mean SNN firing rate equal the mean of ``min(a_l / lambda_l, 1)`` that the
    normalisation asks for, on the last ``balance_batches`` training batches
    (bisection; the rate is monotone in ``k``), which cancels the leak's mean
    deficit (``k ~ 1.3`` at tau 5/10). Gains are a buffer (reused without
    calibration data) and averaged across DDP ranks. ``balance="none"``: the
    normalisation alone. What remains is the rate code's own error at T steps
    (quantisation, transients, the per-neuron leak offset that a per-layer gain
    cannot match).

    The output layer's prediction is
    ``argmax_c mean_t u_c^t``; to keep that readout linear (no spikes, no
    reset), the output weights are scaled. ``neuron="if"``: so that no spike vector can
    drive the readout to ``output_level * V_th`` (``output_level <= 1`` guarantees it
    never spikes)::

        W_L^SNN = W_L^ANN * output_level * V_th / max_c sum_j max(W_L^ANN[c, j], 0)

    ``neuron="model"``: so that the ``percentile`` logit gives a steady-state membrane of
    ``output_level * V_th`` (membrane gain ``1/(1-beta)``)::

        W_L^SNN = W_L^ANN * (lambda_{L-1} / lambda_L) * (1 - alpha) * (1 - beta) * output_level * V_th

    The SNN's membrane logits are therefore small, so ``val_loss``/``test_loss``
    (per-step CE of the SNN membrane) are not meaningful for this rule; accuracy is.

    **When conversion happens and what checkpoints hold.** The network's weight
    parameters hold the ANN weights while training and the converted SNN weights
    otherwise: conversion runs at the start of every validation and test run, at
    the end of every training epoch (before checkpoint callbacks run, so epoch
    and validation checkpoints hold SNN weights) and at the end of ``fit``.
    The next training step restores the exact ANN weights from the buffers
    ``ann_weight_{l}`` (checkpointed too, so training resumes exactly). The buffer
    ``converted`` says which state the parameters are in; a checkpoint taken
    mid-epoch (``every_n_train_steps``) may hold ANN weights with
    ``converted=False``, and :meth:`evaluate` converts them first. After fit,
    ``module.network`` is the converted SNN: a normal SNN checkpoint.
    ``val_acc``/``test_acc`` are SNN accuracies; the ANN's are logged as
    ``val_ann_acc``/``test_ann_acc`` (from :meth:`on_evaluation_batch`).

    **REC networks.** The ANN sees time-averaged inputs and has no recurrence,
    so there is nothing to convert into ``V``: the recurrent weights are set to
    zero at :meth:`attach` and stay exactly zero (they receive a zero gradient so
    DDP sees them used), and a warning is logged - a REC conversion is the FF
    conversion run on a REC network with ``V = 0``.

    Args:
        percentile: percentile of positive activations used as ``lambda`` (100 = max).
        calibration_batches: how many of the most recent training batches to normalise on.
        output_level: the output membrane's bound (``neuron="if"``, at most 1) or the
            steady-state output membrane reached by the ``percentile`` logit (``"model"``, < 1
            keeps the output layer below threshold), in units of ``V_th``.
        neuron: the converted SNN's neuron: ``"if"`` (IF hidden layers, integrating readout)
            or ``"model"`` (the model's LIF neurons), see above.
        balance: ``"rates"`` (threshold balancing on the SNN, see above) or ``"none"``.
        balance_batches: how many of the most recent training batches (their frames, kept
            in memory as booleans when binary) the balancing runs on.
        ann_input: what the ANN sees: ``"counts"`` (``sum_t x^t``) or ``"rates"`` (``mean_t x^t``).
    """

    name = "conversion"
    memory_constant_in_T = True  # the ANN sees counts summed over T
    linear_only = "its normalisation and IF readout are built and tested for dense layers."
    # The ANN is trained (lr, batch, output gain); the converted IF neurons take no decays or surrogate.
    search_space = {
        **{key: NEURON_SPACE[key] for key in ("model.lr", "model.output_init_gain", "data.init_args.batch_size")},
        "learner.init_args.percentile": {"low": 99.0, "high": 100.0},
        "learner.init_args.output_level": {"low": 0.1, "high": 1.0},
    }

    def __init__(
        self,
        percentile: float = 99.9,
        calibration_batches: int = 8,
        output_level: float = 0.5,
        neuron: Neuron = "if",
        balance: Balance = "none",
        balance_batches: int = 2,
        ann_input: AnnInput = "counts",
    ) -> None:
        super().__init__()
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100] (got {percentile}).")
        if calibration_batches < 1:
            raise ValueError(f"calibration_batches must be >= 1 (got {calibration_batches}).")
        if output_level <= 0:
            raise ValueError(f"output_level must be positive (got {output_level}).")
        if neuron not in ("if", "model"):
            raise ValueError(f"Unknown neuron {neuron!r}: use 'if' (integrate-and-fire) or 'model' (the model's LIF).")
        if neuron == "if" and output_level > 1:
            raise ValueError(f"output_level must be at most 1 with neuron='if' (got {output_level}): the readout would spike.")
        if balance not in ("rates", "none"):
            raise ValueError(f"Unknown balance {balance!r}: use 'rates' or 'none'.")
        if balance_batches < 1:
            raise ValueError(f"balance_batches must be >= 1 (got {balance_batches}).")
        if ann_input not in ("counts", "rates"):
            raise ValueError(f"Unknown ann_input {ann_input!r}: use 'counts' (sum over steps) or 'rates' (mean over steps).")
        self.percentile = percentile
        self.calibration_batches = calibration_batches
        self.output_level = output_level
        self.neuron = neuron
        self.balance = balance
        self.balance_batches = balance_batches
        self.ann_input = ann_input
        self._calibration: list[tuple[Tensor, int]] = []  # (ANN inputs, steps T) of recent training batches
        self._balance_frames: list[Tensor] = []

    # ------------------------------------------------------------------ setup
    def attach(self, network: "SpikingNetwork") -> None:
        layers = network.layers
        for l, layer in enumerate(layers):
            self.register_buffer(f"ann_weight_{l}", layer.synapse.weight.detach().clone())
        self.register_buffer("scales", layers[0].synapse.weight.new_ones(len(layers) + 1))  # lambda_0 .. lambda_L
        self.register_buffer("converted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("balance_gains", layers[0].synapse.weight.new_ones(len(layers) - 1))  # k_1 .. k_{L-1}
        if any(layer.recurrent is not None for layer in layers):
            log.warning(
                "Conversion: the ANN has no recurrence, so the REC network's recurrent weights are set to zero "
                "and kept at zero (the converted SNN is the FF conversion with V = 0)."
            )
            with torch.no_grad():
                for layer in layers:
                    if layer.recurrent is not None:
                        layer.recurrent.weight.zero_()
        if self.neuron == "if":
            for layer in layers[:-1]:
                layer.params = dataclasses.replace(network.params, alpha=0.0, beta=1.0)
            layers[-1].params = dataclasses.replace(network.params, alpha=0.0, beta=0.0)

    # ------------------------------------------------------------------ ANN
    def ann_inputs(self, frames: Tensor) -> Tensor:
        """The ANN's input ``a_0`` from frames ``[B, T, ...]``: spike counts or rates per input."""
        return frames.sum(dim=1) if self.ann_input == "counts" else frames.mean(dim=1)

    def input_scale(self, num_steps: int) -> float:
        """``lambda_0``: the factor from SNN input spike rates (per step) to the ANN's input."""
        return float(num_steps) if self.ann_input == "counts" else 1.0

    def ann_logits(self, network: "SpikingNetwork", frames: Tensor) -> Tensor:
        """The ANN's logits ``[B, C]`` on ``frames`` with its own weights, whatever state the network is in."""
        return self.ann_activations(network, self.ann_inputs(frames), self.ann_weights(network))[-1]

    @staticmethod
    def ann_activations(network: "SpikingNetwork", rates: Tensor, weights: Optional[list[Tensor]] = None) -> list[Tensor]:
        """Activations ``[a_1, ..., a_{L-1}, logits]`` of the ReLU ANN on input rates ``[B, *input_shape]``."""
        return ann_activations(network, rates, weights)

    def ann_weights(self, network: "SpikingNetwork") -> list[Tensor]:
        """The ANN weights, whichever state the network's parameters are in."""
        if bool(self.converted):
            return [getattr(self, f"ann_weight_{l}") for l in range(len(network.layers))]
        return [layer.synapse.weight for layer in network.layers]

    # --------------------------------------------------------------- convert
    @torch.no_grad()
    def restore_ann(self, network: "SpikingNetwork") -> None:
        """Put the exact ANN weights back into the network's parameters."""
        if not bool(self.converted):
            return
        for l, layer in enumerate(network.layers):
            layer.synapse.weight.copy_(getattr(self, f"ann_weight_{l}"))
        self.converted.fill_(False)

    @torch.no_grad()
    def compute_scales(self, network: "SpikingNetwork") -> Tensor:
        """``lambda_0 .. lambda_L`` from the calibration batches (or the previous ones without any)."""
        if not self._calibration:
            return self.scales.clone()
        inputs = torch.cat([a for a, _ in self._calibration]).to(self.scales.device, network.layers[0].synapse.weight.dtype)
        scales = self.scales.new_ones(len(network.layers) + 1)
        scales[0] = self.input_scale(self._calibration[-1][1])
        for l, a in enumerate(self.ann_activations(network, inputs, self.ann_weights(network)), start=1):
            positive = a[a > 0]
            if positive.numel():
                scales[l] = torch.quantile(positive.double(), self.percentile / 100.0).to(scales.dtype)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(scales)
            scales /= torch.distributed.get_world_size()
        return scales

    @torch.no_grad()
    def convert(self, network: "SpikingNetwork") -> None:
        """Replace the network's ANN weights by the normalised SNN weights (no-op if already converted)."""
        if bool(self.converted):
            return
        scales = self.compute_scales(network)
        self.scales.copy_(scales)
        layers = network.layers
        for l, layer in enumerate(layers):
            getattr(self, f"ann_weight_{l}").copy_(layer.synapse.weight)
            params = layer.params
            factor = (1.0 - params.alpha) * params.v_th * float(scales[l] / scales[l + 1])
            if l == len(layers) - 1:
                if self.neuron == "if":  # the largest input any spike vector can give stays below threshold
                    bound = float(layer.synapse.weight.clamp(min=0).sum(dim=1).max())
                    factor = self.output_level * params.v_th / bound if bound > 0 else 1.0
                else:
                    factor *= (1.0 - params.beta) * self.output_level
            layer.synapse.weight.mul_(factor)
            if layer.recurrent is not None:
                layer.recurrent.weight.zero_()
        if self.balance == "rates":
            self.balance_rates(network)
        self.converted.fill_(True)

    @torch.no_grad()
    def balance_rates(self, network: "SpikingNetwork", iterations: int = 30) -> None:
        """Scale each normalised hidden layer by ``k_l`` so its SNN firing rate matches the ANN's (layer by layer).

        Runs on the SNN itself, bottom-up, on the last ``balance_batches`` training
        batches: layer ``l`` is driven by the spikes of the already balanced layer
        below, and ``k_l`` is found by bisection (the rate is monotone in ``k``)
        such that the mean rate equals the mean of ``min(a_l / lambda_l, 1)``. Without
        calibration frames the previous gains are reused. Under DDP the gains are
        averaged across ranks (and then applied identically).
        """
        layers = network.layers
        if self._balance_frames:
            dtype = layers[0].synapse.weight.dtype
            frames = torch.cat(self._balance_frames).to(layers[0].synapse.weight.device, dtype)
            ann = [getattr(self, f"ann_weight_{l}") for l in range(len(layers))]  # the parameters hold SNN weights now
            activations = self.ann_activations(network, self.ann_inputs(frames), ann)
            gains = self.balance_gains.new_ones(len(layers) - 1)
            x = frames.transpose(0, 1)  # [T, B, N]
            for l, layer in enumerate(layers[:-1]):
                target = (activations[l] / self.scales[l + 1]).clamp(max=1.0).mean()
                currents = layer.synapse(x)
                rate = lambda k: lif_sequence(currents * k, layer.params)[0].mean()  # noqa: E731
                low, high = 0.25, 4.0
                if target > 0:
                    for _ in range(iterations):  # geometric bisection on [1/4, 4]
                        middle = (low * high) ** 0.5
                        low, high = (middle, high) if rate(middle) < target else (low, middle)
                gains[l] = (low * high) ** 0.5 if target > 0 else 1.0
                x = lif_sequence(currents * gains[l], layer.params)[0]
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(gains)
                gains /= torch.distributed.get_world_size()
            self.balance_gains.copy_(gains)
        for layer, k in zip(layers[:-1], self.balance_gains):
            layer.synapse.weight.mul_(float(k))

    # ------------------------------------------------------------- training
    def training_step(self, module: "SpikingClassifier", frames: Tensor, labels: Tensor) -> LearnerStep:
        """The ANN's step, keeping its input for the normalisation (and the frames for rate balancing)."""
        inputs = self.ann_inputs(frames)  # once: the step and the calibration share it
        loss, logits, objective = self.ann_objective(module.network, inputs, labels)
        self._calibration.append((inputs.detach(), frames.shape[1]))
        del self._calibration[: -self.calibration_batches]
        if self.balance == "rates":  # binary frames are kept as bool (1/4 of the memory)
            binary = bool(((frames == 0) | (frames == 1)).all())
            self._balance_frames.append(frames.detach().bool() if binary else frames.detach().clone())
            del self._balance_frames[: -self.balance_batches]
        return LearnerStep(loss=loss.detach(), logits=logits.detach(), objective=objective)

    def objective(self, network: "SpikingNetwork", frames: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The ReLU ANN's cross-entropy on :meth:`ann_inputs` (the network holds the ANN weights while it trains)."""
        return self.ann_objective(network, self.ann_inputs(frames), labels)

    def ann_objective(self, network: "SpikingNetwork", inputs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`objective` from the ANN's input ``a_0`` (:meth:`ann_inputs`) instead of the frames."""
        self.check_labels(labels)
        self.restore_ann(network)
        logits = self.ann_activations(network, inputs)[-1]
        loss = torch.nn.functional.cross_entropy(logits, labels)
        objective = loss
        for layer in network.layers:
            if layer.recurrent is not None:  # used with zero gradient, so DDP finds every parameter
                objective = objective + 0.0 * layer.recurrent.weight.sum()
        return loss, logits, objective

    @staticmethod
    def check_labels(labels: Tensor) -> None:
        """Refuse per-step ``[B, T]`` labels: the ANN sees the time-averaged input and gives one output per sequence."""
        if labels.dim() == 2:
            from lightning_local.module import InvalidInputError  # noqa: PLC0415 (module imports the learners)

            raise InvalidInputError(
                "The conversion learner classifies whole sequences (its ANN sees the time-averaged input), "
                "so it cannot learn per-frame labels such as TIMIT's: use bptt, fa, eprop or decolle."
            )

    def evaluate(self, module: "SpikingClassifier", frames: Tensor) -> "NetworkOutput":
        """The converted SNN's forward pass (converting first if the parameters still hold the ANN)."""
        self.convert(module.network)
        return module.network(frames)

    @torch.no_grad()
    def ann_accuracy(self, network: "SpikingNetwork", frames: Tensor, labels: Tensor) -> Tensor:
        """Accuracy of the ANN (with its own weights, whatever state the network is in) on a batch."""
        logits = self.ann_logits(network, frames)
        return (logits.argmax(dim=-1) == labels).to(logits.dtype).mean()

    # ---------------------------------------------------------------- hooks
    def on_validation_epoch_start(self, module: "SpikingClassifier") -> None:
        self.convert(module.network)

    def on_test_epoch_start(self, module: "SpikingClassifier") -> None:
        self.convert(module.network)

    def on_evaluation_batch(self, module, frames, labels, output, stage) -> None:  # type: ignore[override]
        """Log the ANN's accuracy beside the SNN's (``val_ann_acc`` / ``test_ann_acc``)."""
        self.check_labels(labels)
        accuracy = self.ann_accuracy(module.network, frames, labels)
        module.log(f"{stage}_ann_acc", accuracy, on_step=False, on_epoch=True, sync_dist=True, batch_size=labels.shape[0])

    def on_train_epoch_end(self, module: "SpikingClassifier") -> None:
        self.convert(module.network)

    def on_fit_end(self, module: "SpikingClassifier") -> None:
        self.convert(module.network)
