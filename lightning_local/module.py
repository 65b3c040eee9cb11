"""The LightningModule that wraps a spiking network and delegates learning to a plugin."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import lightning.pytorch as pl
import torch
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from .learners import Learner, build_learner
from .models import Architecture, SpikingNetwork, per_step_cross_entropy
from .models.network import DEFAULT_OUTPUT_INIT_GAIN, IGNORE_INDEX
from .neurons import LIFParameters
from .neurons.backends import check_backend
from .neurons.lif import decay_from_time_constant
from .sparse_frames import SparseFrames


class InvalidInputError(ValueError):
    """A batch the network cannot take (wrong shape, NaN or infinite values)."""


def _decay(decay: Optional[float], tau: Optional[float], decay_name: str, tau_name: str, default_tau: float) -> float:
    """The decay factor from either the factor itself or its time constant (not both)."""
    if decay is not None and tau is not None:
        raise ValueError(f"Give either {decay_name} or {tau_name}, not both ({decay_name}={decay}, {tau_name}={tau}).")
    if decay is not None:
        return decay
    return decay_from_time_constant(default_tau if tau is None else tau, tau_name)


def _positive_ints(values: Sequence[int]) -> bool:
    return not isinstance(values, (str, bytes)) and all(isinstance(n, int) and n >= 1 for n in values)


def check_model_arguments(
    num_inputs: int,
    num_classes: int,
    hidden_sizes: Sequence[int],
    lr: float,
    weight_decay: float,
    recurrent_init_gain: float,
    synapse: str = "linear",
    channels: Sequence[int] = (),
    input_shape: Optional[Sequence[int]] = None,
) -> None:
    """Reject model arguments that would crash later or silently train a dead network."""
    problems = []
    if num_inputs < 1 or num_classes < 2:
        problems.append(f"the data gives {num_inputs} inputs and {num_classes} classes (need >= 1 and >= 2)")
    if synapse not in SYNAPSES:
        problems.append(f"synapse must be one of {', '.join(SYNAPSES)} (got {synapse!r})")
    elif synapse == "linear" and not _positive_ints(hidden_sizes):
        problems.append(f"hidden_sizes must be a list of positive integers, e.g. [120, 84] (got {hidden_sizes!r})")
    elif synapse == "conv":
        if not _positive_ints(channels) or not channels:
            problems.append(f"channels must be a non-empty list of positive integers, e.g. [64, 128, 128] (got {channels!r})")
        if input_shape is None or len(input_shape) != 3:
            problems.append(
                f"a convolutional network needs image frames [channels, height, width] (the data gives {input_shape}): "
                "use event data (nmnist, dvsgesture) with --data.init_args.layout image"
            )
    if not lr > 0:
        problems.append(f"lr must be positive (got {lr})")
    if weight_decay < 0:
        problems.append(f"weight_decay must be >= 0 (got {weight_decay})")
    if recurrent_init_gain < 0:
        problems.append(f"recurrent_init_gain must be >= 0 (got {recurrent_init_gain})")
    if problems:
        raise InvalidInputError("Invalid model arguments: " + "; ".join(problems) + ". Fix the --model flags or the config.")


#: Synapse kinds of the model's hidden layers (``--model.synapse``).
SYNAPSES = ("linear", "conv")


class SpikingClassifier(pl.LightningModule):
    """A FF or REC LIF network, fully connected or convolutional, trained by a swappable learning rule.

    Args:
        num_inputs: input features per time step (linked from the data module).
        num_classes: number of classes (linked from the data module).
        learner: the learning rule (``--learner NAME`` on the command line).
        architecture: ``ff`` or ``rec`` (recurrent synapses on hidden layers).
        hidden_sizes: neurons per hidden layer (``synapse: linear``).
        synapse: ``linear`` (fully connected hidden layers, the paper's main networks) or
            ``conv`` (convolutional hidden layers and a dense readout, Appendix A).
        channels: output channels of each conv layer (``synapse: conv``; Appendix A: 64, 128, 128).
        kernel_size: conv kernel size (Appendix A: 7).
        stride: conv stride (Appendix A: 1).
        padding: conv zero padding (Appendix A: 1).
        recurrent_kernel_size: kernel of a REC conv layer's recurrent convolution ("same" padding).
        input_shape: shape of one input frame (linked from the data module: ``[N]`` flat,
            ``[C, H, W]`` with ``--data.init_args.layout image``).
        recurrent_init_gain: initial recurrent weights are nn.Linear's initialisation times this (REC).
        output_init_gain: gain of the output layer's initial weights relative to the neuron's
            steady-state gain (see :class:`~lightning_local.models.SpikingNetwork`); ``None``: nn.Linear's.
        hidden_init_gain: the same for hidden layers (default ``None``: nn.Linear's initialisation).
        tau_syn: synaptic time constant in steps (alpha = exp(-1/tau_syn)); default 5 unless ``alpha`` is given.
        tau_mem: membrane time constant in steps (beta = exp(-1/tau_mem)); default 10 unless ``beta`` is given.
        alpha: synaptic decay factor per step, in [0, 1] (Table VII's ``a``); excludes ``tau_syn``.
        beta: membrane decay factor per step, in [0, 1] (Table VII's ``b``); excludes ``tau_mem``.
        v_th: firing threshold.
        surrogate: surrogate spike derivative: ``fast_sigmoid`` or ``atan``.
        surrogate_scale: its steepness.
        lr: Adam learning rate (``--optimizer`` on the CLI overrides the optimizer).
        weight_decay: Adam weight decay.
        backend: LIF scan implementation: ``auto`` (Triton on CUDA if installed, else ``scan``),
            ``scan``, ``triton``, ``triton_step``, ``triton_persistent`` or ``reference``.
    """

    def __init__(
        self,
        num_inputs: int,
        num_classes: int,
        learner: Union[Learner, str, dict, None] = None,
        architecture: Architecture = "ff",
        hidden_sizes: Sequence[int] = (120, 84),
        synapse: str = "linear",
        channels: Sequence[int] = (64, 128, 128),
        kernel_size: int = 7,
        stride: int = 1,
        padding: int = 1,
        recurrent_kernel_size: int = 3,
        input_shape: Optional[Sequence[int]] = None,
        recurrent_init_gain: float = 0.1,
        output_init_gain: Optional[float] = DEFAULT_OUTPUT_INIT_GAIN,
        hidden_init_gain: Optional[float] = None,
        tau_syn: Optional[float] = None,
        tau_mem: Optional[float] = None,
        alpha: Optional[float] = None,
        beta: Optional[float] = None,
        v_th: float = 1.0,
        surrogate: str = "fast_sigmoid",
        surrogate_scale: float = 25.0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        check_model_arguments(
            num_inputs, num_classes, hidden_sizes, lr, weight_decay, recurrent_init_gain, synapse, channels, input_shape
        )
        self.learner: Learner = build_learner(learner if learner is not None else "bptt")
        self.save_hyperparameters(ignore=["learner"])
        # Record the rule itself so load_from_checkpoint rebuilds the same learner.
        self.hparams["learner"] = self.learner.spec()
        try:
            params = LIFParameters(
                alpha=_decay(alpha, tau_syn, "alpha", "tau_syn", 5.0),
                beta=_decay(beta, tau_mem, "beta", "tau_mem", 10.0),
                v_th=v_th,
                surrogate=surrogate,
                surrogate_scale=surrogate_scale,
            )
            check_backend(backend)
        except ValueError as error:
            raise InvalidInputError(f"{error} Fix the --model flag or the config.") from None
        common = dict(
            recurrent_init_gain=recurrent_init_gain, output_init_gain=output_init_gain,
            hidden_init_gain=hidden_init_gain, backend=backend,
        )
        try:
            if synapse == "conv":
                self.network = SpikingNetwork.convolutional(
                    input_shape, list(channels), num_classes, architecture, params, kernel_size, stride, padding,
                    recurrent_kernel_size, **common,
                )
            else:
                self.network = SpikingNetwork.fully_connected(num_inputs, list(hidden_sizes), num_classes, architecture, params, **common)
            self.learner.check_network(self.network)
            self.learner.attach(self.network)
        except ValueError as error:
            raise InvalidInputError(f"{error} Fix the --model or --learner flags or the config.") from None
        self.automatic_optimization = not self.learner.manual_optimization
        # Micro accuracy over samples ([B] labels) or targeted frames ([B, T] labels, -100 skipped).
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE_INDEX)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE_INDEX)
        self.test_acc = MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE_INDEX)
        # Sample-weighted means that sum over DDP processes: exact with unequal shards.
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()

    # ------------------------------------------------------------------ checks
    def check_frames(self, frames: Tensor) -> None:
        """Reject input that would silently give wrong results."""
        expected = tuple(self.network.input_shape)
        if tuple(frames.shape[2:]) != expected:
            shape = ", ".join(map(str, expected))
            raise InvalidInputError(
                f"Expected input frames of shape [batch, time, {shape}], got {tuple(frames.shape)}: "
                "check that the data module's num_inputs and layout match the model."
            )
        if isinstance(frames, SparseFrames):
            return  # binary by construction: nothing to check
        if not torch.isfinite(frames).all():
            raise InvalidInputError("Input frames contain NaN or infinite values: check the data pipeline or the dataset files.")

    # ------------------------------------------------------------------ steps
    def forward(self, frames: Tensor) -> Tensor:
        """Class scores ``[B, classes]`` for ``frames [B, T, *input_shape]``."""
        return self.network(frames).logits

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Optional[Tensor]:
        frames, labels = batch
        self.check_frames(frames)
        if isinstance(frames, SparseFrames) and not (self.learner.sparse_input and self.network.is_dense):
            frames = frames.to_dense()  # the rule or the network needs every frame value
        step = self.learner.training_step(self, frames, labels)
        self.train_acc(step.logits, labels)
        # `loss`: per step, progress bar and divergence check only; the CSV gets epoch means.
        self.log("loss", step.loss, prog_bar=True, logger=False, on_step=True, on_epoch=False)
        self.log("train_loss", step.loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=labels.shape[0])
        self.log("train_acc", self.train_acc, prog_bar=True, on_step=False, on_epoch=True, batch_size=labels.shape[0])
        return step.objective

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        frames, labels = batch
        self.check_frames(frames)
        output = self.learner.evaluate(self, frames)
        loss = per_step_cross_entropy(output.output_membrane, labels)
        metric, mean_loss = (self.val_acc, self.val_loss) if stage == "val" else (self.test_acc, self.test_loss)
        metric(output.scores_for(labels), labels)
        mean_loss(loss, weight=labels.shape[0] if labels.dim() == 1 else (labels != IGNORE_INDEX).sum())
        self.learner.on_evaluation_batch(self, frames, labels, output, stage)
        self.log(f"{stage}_loss", mean_loss, prog_bar=True, batch_size=labels.shape[0])
        self.log(f"{stage}_acc", metric, prog_bar=True, batch_size=labels.shape[0])
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = list(self.parameters())
        # PyTorch's fused Adam: one kernel for all tensors instead of a loop of small ops per tensor
        # (CPU, DVS Gesture FC net: 0.52 vs 5.1 ms per step); online DECOLLE steps T times per batch.
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        return torch.optim.Adam(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay, fused=fused)

    # ------------------------------------------------------- learner hooks
    def on_train_epoch_start(self) -> None:
        self.learner.on_train_epoch_start(self)

    def on_train_epoch_end(self) -> None:
        self.learner.on_train_epoch_end(self)

    def on_validation_epoch_start(self) -> None:
        self.learner.on_validation_epoch_start(self)

    def on_test_epoch_start(self) -> None:
        self.learner.on_test_epoch_start(self)

    def on_fit_end(self) -> None:
        self.learner.on_fit_end(self)
