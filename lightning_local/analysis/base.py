"""The base of every analysis: a Lightning callback plus what a benchmark grid needs of it.

:class:`Analysis` is what the benchmark knows of an analysis (its key in a spec, option checks,
extra jobs, reading its result files, its report sections); :class:`EvaluationAnalysis` adds
running at the end of evaluation stages, with gradients available.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from .io import analysis_dir
from .representations import stage_dataloader

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..benchmark.spec import Grid
    from ..module import SpikingClassifier

STAGES = ("validate", "test")


@dataclass
class ReportSection:
    """Part of a benchmark report: markdown ``lines``, the result ``files`` it wrote, and where it stands
    (sections are sorted by ``order``; the report's own tuning table stands at 15)."""

    order: int
    lines: list[str]
    files: list[str] = field(default_factory=list)


class Analysis(Callback):
    """An analysis of trained networks, as a callback for ``fit``/``test``, and as a benchmark spec's ``KEY``.

    Register a subclass under the ``lightning_local.analyses`` entry-point group (see
    :mod:`lightning_local.analysis.registry`) and a benchmark spec can name it in ``analyses:``;
    its class methods are all the benchmark needs, so a new analysis touches only its own module:

    * :meth:`check_options` - the spec's options for it, checked (one-sentence ``ValueError``);
    * the callback goes into every main training run (``on_training_runs``) with
      :meth:`callback_args`; :meth:`jobs` adds runs of its own (backdoor's poisoned runs, CKA tests);
    * :meth:`collect` reads its result files of a finished run into the store;
    * :meth:`report` turns the grid's runs into report sections (tables, CSVs, figures).

    State that must survive a resumed run goes through ``state_dict``/``load_state_dict``, which
    Lightning saves in the run's checkpoints.
    """

    #: Name in a benchmark spec's ``analyses:`` section.
    key: ClassVar[str] = ""
    #: Options the benchmark consumes itself (not passed to the callback).
    benchmark_options: ClassVar[frozenset[str]] = frozenset()
    #: Whether the benchmark adds the callback to every main (unpoisoned) training run.
    on_training_runs: ClassVar[bool] = True
    #: Whether it crafts FGSM on the seed's trained ANN (the benchmark passes ``ann_checkpoint``).
    attacks_with_ann: ClassVar[bool] = False
    #: Where its report sections stand.
    report_order: ClassVar[int] = 100

    @classmethod
    def check_options(cls, options: dict, architectures: list[str]) -> dict:
        """The spec's options for this analysis, checked and completed; ``architectures``: the spec's.

        By default every option that the benchmark does not consume must be an argument of the callback.
        """
        accepted = _init_parameters(cls)
        unknown = sorted(set(options) - cls.benchmark_options - accepted) if accepted is not None else []
        if unknown:
            raise ValueError(f"Unknown option(s) {unknown} for analysis {cls.key!r}: allowed are "
                             f"{sorted(cls.benchmark_options | accepted)}.")
        return options

    @classmethod
    def callback_args(cls, options: dict) -> dict:
        """The callback's ``init_args`` in a run's config: the options the benchmark does not consume."""
        return {k: v for k, v in options.items() if k not in cls.benchmark_options}

    @classmethod
    def wants_ann(cls, options: dict) -> bool:
        """Whether the grid must train the seed's ANN (an ANN->SNN conversion run) for this analysis to attack with."""
        return cls.attacks_with_ann and options.get("attack_model", "ann") == "ann" and not options.get("ann_checkpoint")

    @classmethod
    def conversion_config(cls, options: dict) -> Optional[str]:
        """The config template of the seed's conversion run, where this analysis fixes one (else None)."""
        return None

    @classmethod
    def jobs(cls, options: dict, grid: "Grid") -> list:
        """Runs of its own for one dataset of the grid (beyond adding the callback to the main runs)."""
        return []

    @classmethod
    def collect(cls, run_dir: Path, kind: str, config: dict, variant: dict) -> tuple[dict, dict]:
        """``(metrics, paths)`` of its results in a finished run's folder (both empty when it did not run there)."""
        return {}, {}

    @classmethod
    def report(cls, runs: "pd.DataFrame", folder: Path) -> list[ReportSection]:
        """Its sections of the report over the grid's ``runs``, writing its CSVs and figures into ``folder``."""
        return []

    @classmethod
    def result_file(cls, path: Path) -> tuple[dict, dict]:
        """:meth:`collect`'s answer for a result file the report reads itself: its path under :attr:`key`, if written."""
        return ({}, {cls.key: str(path)}) if Path(path).is_file() else ({}, {})


def _init_parameters(cls: type) -> Optional[set[str]]:
    """Names the class's ``__init__`` takes (None when it takes ``**kwargs``)."""
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return {name for name in parameters if name != "self"}


class EvaluationAnalysis(Analysis):
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
