"""Callbacks the tests add from the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning.pytorch as pl
import torch


class RecordEpochs(pl.Callback):
    """Writes the epochs it saw and the final logged metrics to ``path`` (JSON)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.epochs: list[int] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs.append(trainer.current_epoch)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.path.write_text(json.dumps({"epochs": self.epochs, "metrics": metrics}))


class SaveRankWeights(pl.Callback):
    """Saves every rank's network weights as ``<directory>/start_rank<k>.pt`` and ``rank<k>.pt``, and the
    type of its first training batch's frames as ``frames_rank<k>.txt`` (DDP tests)."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def _save(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prefix: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.network.state_dict().items()}
        torch.save(state, self.directory / f"{prefix}rank{trainer.global_rank}.pt")

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer, pl_module, "start_")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer, pl_module, "")

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if batch_idx == 0:  # what kind of frames this rank trains on
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / f"frames_rank{trainer.global_rank}.txt").write_text(type(batch[0]).__name__)


class KillAtEpoch(pl.Callback):
    """Ends the process abruptly (no clean-up, like a kill) when epoch ``epoch`` starts."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            os._exit(17)


class SleepEachEpoch(pl.Callback):
    """Sleeps after each training epoch, so a test can kill a run between two epochs."""

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        import time

        time.sleep(self.seconds)


class RecordDataChoices(pl.Callback):
    """Writes what the data module chose for the model to ``path`` (JSON), at the first training batch: the
    ``layout`` and ``sparse_input`` of every module of the chain (a wrapper, its base, ...) that has them, and
    the type and frame shape of the batch."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if batch_idx:
            return
        chain, module = [], trainer.datamodule
        while module is not None:
            if hasattr(module, "layout"):
                chain.append({"layout": module.layout, "sparse_input": module.sparse_input})
            module = getattr(module, "base", None)
        frames = batch[0]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"modules": chain, "frames": type(frames).__name__,
                                         "frame_shape": list(frames.shape[2:])}))
