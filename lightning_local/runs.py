"""Run folders that can be trusted: checkpoints, resuming in place, concurrent runs, divergence.

* :class:`Checkpoint` keeps the best checkpoints *and* rewrites ``last.ckpt`` after
  every epoch (Lightning's ``save_last`` only rewrites it when a top-k checkpoint is saved).
* :class:`RunLogger` is a CSV logger that flushes after every logging call and keeps
  the rows of a run it resumes, instead of deleting its ``metrics.csv``.
* :func:`reserve_version` claims a fresh ``version_N`` folder with an exclusive
  ``mkdir``, so two runs started together in one folder never share it.
* :func:`latest_resumable` finds the newest run with a ``checkpoints/last.ckpt``.
* :class:`DivergenceStop` ends a run whose training loss is NaN, infinite or above a
  bound, naming the last good checkpoint.
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import Any, Optional, Union

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.trainer.states import TrainerFn

from lightning_local.files import write_text_atomic

VERSION_PATTERN = re.compile(r"version_(\d+)$")
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


class TrainingDivergedError(RuntimeError):
    """The training loss became non-finite or exceeded the divergence bound."""


class RunFolderError(ValueError):
    """A run folder or checkpoint to resume from cannot be used."""


# ----------------------------------------------------------------------------- checkpoints
class Checkpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` always holds the latest epoch.

    Lightning's ``save_last=True`` writes ``last.ckpt`` only when a top-k checkpoint is
    saved, so with ``monitor="val_acc"`` it stays at the best epoch. This subclass
    additionally writes it after every epoch in which it was not written yet, so
    ``last.ckpt`` is always the end of the most recent epoch (the one to resume from).
    Every argument is ``ModelCheckpoint``'s.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_written_step = -1

    def _save_last_checkpoint(self, trainer: "pl.Trainer", monitor_candidates: dict) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        if self.save_last:
            self._last_written_step = trainer.global_step

    def _save_last_every_epoch(self, trainer: "pl.Trainer") -> None:
        if (
            self.save_last is not True
            or trainer.fast_dev_run
            or trainer.state.fn != TrainerFn.FITTING
            or trainer.sanity_checking
            or self._last_written_step == trainer.global_step
        ):
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_every_epoch(trainer)

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_every_epoch(trainer)


# ----------------------------------------------------------------------------- the CSV log
class _KeepingWriter(ExperimentWriter):
    """CSV writer that continues an existing ``metrics.csv`` instead of deleting it."""

    def _check_log_dir_exists(self) -> None:
        # Run folders are fresh (reserve_version) or resumed on purpose: keep what is there.
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
                self.metrics_keys = list(csv.DictReader(handle).fieldnames or [])


class RunLogger(CSVLogger):
    """The default logger: ``CSVLogger`` that writes every row at once and continues resumed runs.

    ``metrics.csv`` is flushed after every logging call, so a killed run loses nothing
    it logged, and a resumed run appends to its folder's ``metrics.csv`` (the command
    line first drops the rows logged after the checkpoint it resumes from).
    Arguments are ``CSVLogger``'s; ``flush_logs_every_n_steps`` defaults to 1.
    """

    def __init__(
        self,
        save_dir: Union[str, Path],
        name: Optional[str] = "lightning_logs",
        version: Optional[Union[int, str]] = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 1,
    ) -> None:
        super().__init__(save_dir, name, version, prefix, flush_logs_every_n_steps)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """The writer (a continuing one, see the class docstring)."""
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment

    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        super().log_metrics(metrics, step)
        self.save()  # CSVLogger only flushes every n steps; epoch rows would wait for the end


def trim_metrics(run_dir: Path, epoch: int) -> None:
    """Drop the rows of ``run_dir/metrics.csv`` logged after epoch ``epoch`` (atomic rewrite)."""
    path = Path(run_dir) / ExperimentWriter.NAME_METRICS_FILE
    if not path.is_file():
        return
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        rows = [row for row in reader if not row.get("epoch") or int(float(row["epoch"])) <= epoch]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, out.getvalue())


# ----------------------------------------------------------------------------- run folders
def _version_of(folder: Path) -> Union[int, str]:
    match = VERSION_PATTERN.match(folder.name)
    return int(match.group(1)) if match else folder.name


def reserve_version(versions_root: Union[str, Path]) -> tuple[int, Path]:
    """Claim the next free ``version_N`` under ``versions_root`` with an exclusive ``mkdir``.

    ``mkdir`` fails if the folder exists, so of two runs racing for ``version_N`` one
    gets it and the other moves on to ``version_N+1``.

    Returns:
        ``(N, folder)``.
    """
    root = Path(versions_root)
    root.mkdir(parents=True, exist_ok=True)
    taken = [v for v in (_version_of(p) for p in root.iterdir() if p.is_dir()) if isinstance(v, int)]
    version = max(taken, default=-1) + 1
    while True:
        folder = root / f"version_{version}"
        try:
            folder.mkdir()
        except FileExistsError:
            version += 1
            continue
        return version, folder


def latest_resumable(versions_root: Union[str, Path]) -> Optional[Path]:
    """The run folder under ``versions_root`` whose ``checkpoints/last.ckpt`` was written last, or None."""
    root = Path(versions_root)
    candidates = [p for p in root.glob("*") if (p / LAST_CHECKPOINT).is_file()] if root.is_dir() else []
    return max(candidates, key=lambda p: (p / LAST_CHECKPOINT).stat().st_mtime_ns, default=None)


def run_folder_of(checkpoint: Union[str, Path], versions_root: Union[str, Path]) -> Optional[Path]:
    """The run folder ``versions_root/<run>`` that holds ``checkpoint`` in its ``checkpoints/``, or None."""
    path = Path(checkpoint).resolve()
    if path.parent.name != "checkpoints" or path.parent.parent.parent != Path(versions_root).resolve():
        return None
    return path.parent.parent


def version_of(folder: Path) -> Union[int, str]:
    """The logger version that writes into ``folder`` (``version_3`` -> 3, other names as they are)."""
    return _version_of(folder)


def discard_if_empty(folder: Path) -> None:
    """Remove a run folder that a failed run left without checkpoints or logged metrics."""
    if not folder.is_dir():
        return
    files = [p for p in folder.rglob("*") if p.is_file()]
    if any(p.suffix == ".ckpt" or p.name == ExperimentWriter.NAME_METRICS_FILE for p in files):
        return
    if all(p.name in {"config.yaml", "hparams.yaml"} and p.parent == folder for p in files):
        for p in files:
            p.unlink()
        for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
            sub.rmdir()
        folder.rmdir()


# ----------------------------------------------------------------------------- divergence
class DivergenceStop(pl.Callback):
    """Stop training when the loss is NaN, infinite or above ``max_loss``.

    Checks the per-step training loss the module logs as ``loss`` (before the next
    step and at the end of every epoch, before checkpoints are written), agrees across
    DDP processes, and raises :class:`TrainingDivergedError` with one line saying what
    happened and which checkpoint is the last good one.

    Args:
        max_loss: Largest training loss (per-step cross-entropy) still considered sane;
            ``None`` checks only for NaN and infinity.
        monitor: The logged per-step loss to watch.
    """

    def __init__(self, max_loss: Optional[float] = 1000.0, monitor: str = "loss") -> None:
        self.max_loss = max_loss
        self.monitor = monitor

    def _problem(self, trainer: "pl.Trainer") -> Optional[str]:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return None
        loss = float(value)
        if not math.isfinite(loss):
            return f"the training loss is {loss}"
        if self.max_loss is not None and loss > self.max_loss:
            return f"the training loss {loss:.4g} exceeds the divergence bound {self.max_loss:g}"
        return None

    def _check(self, trainer: "pl.Trainer") -> None:
        problem = self._problem(trainer)
        if not trainer.strategy.reduce_boolean_decision(problem is not None, all=False):
            return
        if problem is None:
            problem = "the training loss diverged on another process"
        last = _last_good_checkpoint(trainer)
        saved = f"the last good checkpoint is {last}" if last else "no checkpoint was saved before it"
        raise TrainingDivergedError(
            f"training diverged at epoch {trainer.current_epoch}, step {trainer.global_step}: {problem}; {saved} "
            "(lower --model.lr, or change --divergence.max_loss)."
        )

    def on_train_batch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", batch: Any, batch_idx: int) -> None:
        self._check(trainer)

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._check(trainer)


def _last_good_checkpoint(trainer: "pl.Trainer") -> str:
    """The most recent checkpoint on disk (saved before the loss went bad), or ''."""
    paths = []
    for callback in trainer.checkpoint_callbacks:
        paths += [p for p in (callback.last_model_path, callback.best_model_path) if p and Path(p).is_file()]
    return max(paths, key=lambda p: Path(p).stat().st_mtime_ns, default="")
