"""The trial's side of a study: a Callback that reports each epoch's ``val_acc`` and stops pruned trials.

Written here rather than using ``optuna_integration.PyTorchLightningPruningCallback``:
that callback raises ``optuna.TrialPruned`` inside ``Trainer.fit`` in a single process
(the fit then ends in an exception - a traceback from the command, no checkpoint of the
pruned epoch), and it needs the ``Trial`` object, which a trial running as its own
``lightning-local fit`` process cannot be handed. This one is built from plain arguments
(the storage URL, study name and trial id, so it goes in a config like any callback),
reports to the shared storage, and stops the Trainer cleanly: the pruned trial keeps its
``last.ckpt``, ``metrics.csv`` and exit status 0, and leaves ``pruned.json`` in its run folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import lightning.pytorch as pl
import optuna

from lightning_local.files import write_text_atomic

PRUNED_MARKER = "pruned.json"
PRUNERS = ("median", "halving", "none")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """The pruner called ``name`` (the storage keeps no pruner, so the search and each trial build the same one)."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}: use one of {', '.join(PRUNERS)}.")


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's database storage for ``url``; SQLite waits up to a minute for a lock (trials write concurrently)."""
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else None
    return optuna.storages.RDBStorage(url, engine_kwargs=engine)


class ReportToStudy(pl.Callback):
    """Reports ``monitor`` after every validation epoch to Optuna trial ``trial_id`` and stops it when pruned.

    Args:
        storage: the study's storage URL (e.g. ``sqlite:///tune/bptt_ff/study.sqlite3``).
        study: the study's name.
        trial_id: the trial's storage id.
        pruner: the search's pruner (:data:`PRUNERS`): Optuna's storage does not keep it.
        monitor: the metric reported (maximised by ``lightning-local tune``).
    """

    def __init__(self, storage: str, study: str, trial_id: int, pruner: str = "median", monitor: str = "val_acc") -> None:
        self.storage, self.study, self.trial_id, self.monitor = storage, study, trial_id, monitor
        self.pruner = make_pruner(pruner)
        self._trial: Optional[optuna.trial.Trial] = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.is_global_zero and self._trial is None:
            study = optuna.load_study(study_name=self.study, storage=open_storage(self.storage), pruner=self.pruner)
            self._trial = optuna.trial.Trial(study, self.trial_id)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.is_global_zero and self._trial is not None and value is not None:
            epoch = trainer.current_epoch
            self._trial.report(float(value), step=epoch)
            prune = self._trial.should_prune()
            if prune:
                write_text_atomic(Path(trainer.log_dir) / PRUNED_MARKER, json.dumps({"epoch": epoch, self.monitor: float(value)}))
        if trainer.strategy.broadcast(prune):
            trainer.should_stop = True
