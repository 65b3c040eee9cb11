"""One trial: a normal ``lightning-local fit`` in its own run folder, and how its outcome is read.

:func:`run_trial` is what a local worker thread or a Ray task calls. It starts the fit as a
subprocess (tied to the search's life, :func:`~lightning_local.benchmark.runner.run_logged`),
continuing from the folder's ``last.ckpt`` when a killed search left one, sends the trial's
heartbeat while it runs, and returns the outcome read from the folder:

* ``complete``: the best ``val_acc`` over its epochs (``metrics.csv``);
* ``pruned``: the pruner stopped it (``pruned.json``), or the divergence stop ended it
  (a diverging trial is hopeless, not a crash);
* ``failed``: anything else, with the log's last lines;
* ``interrupted``: the search was stopped (Ctrl-C): the trial stays running and resumes.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import optuna
import pandas as pd

from lightning_local.benchmark.runner import LOG_NAME, checkpoint_epoch, last_checkpoint, run_logged, stopping, tail

from .reporting import PRUNED_MARKER, ReportToStudy, open_storage
from .space import Parameter, flags
from .study import METRIC, beat

DIVERGED = "training diverged"  # the divergence stop's one-line message (lightning_local.runs)


def trial_command(config: Path, fit_args: Sequence[str], params: dict, space: Sequence[Parameter], folder: Path,
                  storage: str, study: str, trial_id: int, pruner: str) -> list[str]:
    """The trial's ``fit`` command line: base config, the user's fit flags, the trial's values, its folder."""
    callback = f"{ReportToStudy.__module__}.{ReportToStudy.__qualname__}"
    return [sys.executable, "-m", "lightning_local.cli.main", "fit", "--config", str(config), *fit_args,
            *flags(params, space),
            "--trainer.logger.init_args.save_dir", str(folder.parent), "--trainer.logger.init_args.name", "",
            "--trainer.logger.init_args.version", folder.name,
            "--trainer.enable_progress_bar", "false", "--test_after_fit", "false",
            f"--trainer.callbacks+={callback}", "--trainer.callbacks.storage", storage,
            "--trainer.callbacks.study", study, "--trainer.callbacks.trial_id", str(trial_id),
            "--trainer.callbacks.pruner", pruner]


def _resume_point(folder: Path) -> Optional[Path]:
    """``last.ckpt`` to continue from; a folder without a readable one starts afresh (no epoch finished there)."""
    resume = last_checkpoint(folder)
    if resume is not None and checkpoint_epoch(resume) is not None:
        return resume
    if folder.exists():
        log = folder / LOG_NAME
        kept = log.read_text(errors="replace") if log.is_file() else ""
        shutil.rmtree(folder)
        folder.mkdir(parents=True)
        if kept:
            log.write_text(kept)
    return None


def run_trial(storage: str, study_name: str, trial_id: int, command: list[str], folder: str, cwd: str,
              threads: Optional[int] = None, accelerator: Optional[str] = None, env: Optional[dict] = None) -> dict:
    """Run one trial's fit to its end; returns ``{"state", "value", "epochs", "reason", "seconds", "resumed"}``."""
    run_dir = Path(folder)
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    resume = _resume_point(run_dir)
    cmd = list(command) + (["--trainer.accelerator", accelerator] if accelerator else [])
    if resume is not None:
        cmd += ["--ckpt_path", str(resume)]
    backend = open_storage(storage)
    rc = run_logged(cmd, run_dir, threads, env, heartbeat=lambda: beat_trial(backend, study_name, trial_id),
                    cwd=Path(cwd))
    result = outcome(run_dir, rc, interrupted=stopping())
    result.update(seconds=time.time() - start, resumed=resume is not None)
    return result


def beat_trial(storage: optuna.storages.BaseStorage, study_name: str, trial_id: int) -> None:
    """The running trial's heartbeat, from whichever process or node runs it."""
    beat(optuna.load_study(study_name=study_name, storage=storage), trial_id)


def _epochs_and_best(run_dir: Path) -> tuple[int, Optional[float]]:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return 0, None
    table = pd.read_csv(path)
    if METRIC not in table or not table[METRIC].notna().any():
        return 0, None
    values = table[METRIC].dropna()
    return int(table.loc[values.index, "epoch"].max()) + 1, float(values.max())


def outcome(run_dir: Path, rc: int, interrupted: bool = False) -> dict[str, Any]:
    """The trial's state and value from its exit code and folder (see the module docstring)."""
    epochs, best = _epochs_and_best(run_dir)
    result: dict[str, Any] = {"epochs": epochs, "value": best, "reason": ""}
    log_tail = tail(run_dir / LOG_NAME)
    if rc != 0 and interrupted:
        return {**result, "state": "interrupted"}
    if rc == 0 and (run_dir / PRUNED_MARKER).is_file():
        return {**result, "state": "pruned", "reason": f"pruned after epoch {epochs}"}
    if rc == 0 and best is not None:
        return {**result, "state": "complete"}
    if rc != 0 and DIVERGED in log_tail:
        message = log_tail.split("error:", 1)[-1].strip()
        return {**result, "state": "pruned", "reason": f"diverged: {message}"[:500]}
    reason = f"exit code {rc}: {log_tail}" if rc != 0 else f"no {METRIC} in metrics.csv"
    return {**result, "state": "failed", "reason": reason[:500]}


def strip_trial_settings(config: dict) -> dict:
    """A trial's saved ``config.yaml`` without what only the trial needed (its logger, folder, reporting callback)."""
    config = dict(config)
    trainer = dict(config.get("trainer") or {})
    callbacks = [c for c in (trainer.get("callbacks") or [])
                 if not str((c or {}).get("class_path", "")).endswith(ReportToStudy.__qualname__)]
    trainer["callbacks"] = callbacks or None
    for key in ("logger", "enable_progress_bar", "accelerator"):
        trainer.pop(key, None)
    config["trainer"] = trainer
    for key in ("ckpt_path", "test_after_fit"):
        config.pop(key, None)
    init = (config.get("data") or {}).get("init_args")
    if isinstance(init, dict) and "sparse_input" in init:
        init["sparse_input"] = None  # chosen per machine (README, sparse training batches)
    return config

