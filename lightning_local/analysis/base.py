"""Common base of the analyses that run when a validation or test epoch ends."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from .io import analysis_dir
from .representations import stage_dataloader

if TYPE_CHECKING:  # pragma: no cover
    from ..module import SpikingClassifier

STAGES = ("validate", "test")


class EvaluationAnalysis(Callback):
    """Runs :meth:`analyse` at the end of the chosen evaluation stages.

    The analysis gets the dataloader the trainer is evaluating (so DDP sharding
    and ``trainer.validate(dataloaders=...)`` are respected) and runs with
    gradients available: Lightning evaluates under ``torch.inference_mode``,
    which this base switches off around :meth:`analyse`. Validation during
    ``fit`` (not the sanity check) also counts as ``"validate"``; its files are
    overwritten by each epoch's run.

    Args:
        stages: when to run: any of ``"validate"``, ``"test"``.
        output_dir: folder for the result files (default ``<log_dir>/analysis``).
    """

    #: File-name stem of the results.
    name: str = "analysis"

    def __init__(self, stages: Sequence[str] = ("test",), output_dir: Optional[str] = None) -> None:
        unknown = sorted(set(stages) - set(STAGES))
        if unknown:
            raise ValueError(f"Unknown stages {unknown}: choose from {list(STAGES)}.")
        self.stages = tuple(stages)
        self.output_dir = output_dir

    def on_validation_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if "validate" in self.stages and not trainer.sanity_checking:
            self._run(trainer, pl_module, "validate")

    def on_test_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if "test" in self.stages:
            self._run(trainer, pl_module, "test")

    def _run(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        loader = stage_dataloader(trainer, stage)
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.inference_mode(False), torch.enable_grad():
                self.analyse(trainer, pl_module, stage, loader)  # type: ignore[arg-type]
        finally:
            pl_module.train(was_training)

    def analyse(self, trainer: "pl.Trainer", pl_module: "SpikingClassifier", stage: str, loader: DataLoader) -> None:
        """Compute and write the results for ``stage`` from ``loader``."""
        raise NotImplementedError

    def path(self, trainer: "pl.Trainer", stage: str, suffix: str) -> Path:
        """``<output folder>/<name>_<stage><suffix>``."""
        return analysis_dir(trainer, self.output_dir) / f"{self.name}_{stage}{suffix}"
