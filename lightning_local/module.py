"""The LightningModule that wraps a spiking network and delegates learning to a plugin."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import lightning.pytorch as pl
import torch
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from .learners import Learner, build_learner
from .models import Architecture, SpikingNetwork, per_step_cross_entropy
from .neurons import LIFParameters


class InvalidInputError(ValueError):
    """A batch the network cannot take (wrong shape, NaN or infinite values)."""


class SpikingClassifier(pl.LightningModule):
    """A FF or REC LIF network trained by a swappable learning rule.

    Args:
        num_inputs: input features per time step (linked from the data module).
        num_classes: number of classes (linked from the data module).
        learner: the learning rule (``--learner NAME`` on the command line).
        architecture: ``ff`` or ``rec`` (recurrent weights on hidden layers).
        hidden_sizes: neurons per hidden layer.
        recurrent_init_gain: initial recurrent weights are nn.Linear's initialisation times this (REC).
        tau_syn: synaptic time constant in steps (alpha = exp(-1/tau_syn)).
        tau_mem: membrane time constant in steps (beta = exp(-1/tau_mem)).
        v_th: firing threshold.
        surrogate: surrogate spike derivative: ``fast_sigmoid`` or ``atan``.
        surrogate_scale: its steepness.
        lr: Adam learning rate (``--optimizer`` on the CLI overrides the optimizer).
        weight_decay: Adam weight decay.
    """

    def __init__(
        self,
        num_inputs: int,
        num_classes: int,
        learner: Union[Learner, str, dict, None] = None,
        architecture: Architecture = "ff",
        hidden_sizes: Sequence[int] = (120, 84),
        recurrent_init_gain: float = 0.1,
        tau_syn: float = 5.0,
        tau_mem: float = 10.0,
        v_th: float = 1.0,
        surrogate: str = "fast_sigmoid",
        surrogate_scale: float = 25.0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.learner: Learner = build_learner(learner if learner is not None else "bptt")
        self.save_hyperparameters(ignore=["learner"])
        # Record the rule itself so load_from_checkpoint rebuilds the same learner.
        self.hparams["learner"] = self.learner.spec()
        params = LIFParameters(tau_syn=tau_syn, tau_mem=tau_mem, v_th=v_th, surrogate=surrogate, surrogate_scale=surrogate_scale)
        self.network = SpikingNetwork(num_inputs, list(hidden_sizes), num_classes, architecture, params, recurrent_init_gain)
        self.learner.attach(self.network)
        self.automatic_optimization = not self.learner.manual_optimization
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    # ------------------------------------------------------------------ checks
    def check_frames(self, frames: Tensor) -> None:
        """Reject input that would silently give wrong results."""
        expected = self.network.num_inputs
        if frames.dim() != 3 or frames.shape[-1] != expected:
            raise InvalidInputError(
                f"Expected input frames of shape [batch, time, {expected}], got {tuple(frames.shape)}: "
                "check that the data module's num_inputs matches the model."
            )
        if not torch.isfinite(frames).all():
            raise InvalidInputError("Input frames contain NaN or infinite values: check the data pipeline or the dataset files.")

    # ------------------------------------------------------------------ steps
    def forward(self, frames: Tensor) -> Tensor:
        """Class scores ``[B, classes]`` for ``frames [B, T, num_inputs]``."""
        return self.network(frames).logits

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Optional[Tensor]:
        frames, labels = batch
        self.check_frames(frames)
        step = self.learner.training_step(self, frames, labels)
        self.train_acc(step.logits, labels)
        self.log("train_loss", step.loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=labels.shape[0])
        self.log("train_acc", self.train_acc, prog_bar=True, on_step=False, on_epoch=True, batch_size=labels.shape[0])
        return step.objective

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        frames, labels = batch
        self.check_frames(frames)
        output = self.learner.evaluate(self, frames)
        loss = per_step_cross_entropy(output.output_membrane, labels)
        metric = self.val_acc if stage == "val" else self.test_acc
        metric(output.logits, labels)
        self.learner.on_evaluation_batch(self, frames, labels, output, stage)
        self.log(f"{stage}_loss", loss, prog_bar=True, sync_dist=True, batch_size=labels.shape[0])
        self.log(f"{stage}_acc", metric, prog_bar=True, batch_size=labels.shape[0])
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

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
