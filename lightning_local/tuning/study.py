"""A study: the Optuna storage of a search, opened safely, resumed in place, and what it records of its setup.

The storage (a SQLite file ``study.sqlite3`` in the study folder unless ``--storage`` names
another database) is the single source of truth: trials, their parameters, every epoch's
``val_acc`` (reported by the trial itself, :mod:`lightning_local.tuning.reporting`) and the
outcome. The study also records its setup (the base config, the ``fit`` flags, the space,
the metric), so a rerun with another setup is refused instead of mixing two searches.

Resume: a trial left ``RUNNING`` by a killed search (its owner process is gone, or it sent
no heartbeat for :data:`STALE_AFTER` seconds) is continued in place - the same trial
number and folder, from its ``last.ckpt`` - so a resumed search adds no duplicate trials.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Optional

import optuna

from lightning_local.benchmark.store import _owner_alive, owner_id

from .reporting import open_storage

STUDY_FILE = "study.sqlite3"
TRIALS_FOLDER = "trials"
METRIC = "val_acc"
STALE_AFTER = 600.0  # seconds without a heartbeat after which a trial of another host counts as abandoned
OWNER, HEARTBEAT = "owner", "heartbeat"
SETUP = "setup"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


class StudyError(ValueError):
    """A study that cannot be opened or continued (corrupt file, another setup): one sentence."""


def default_storage(output: Path) -> str:
    """The embedded storage: ``sqlite:///OUTPUT/study.sqlite3``."""
    return f"sqlite:///{(Path(output) / STUDY_FILE).resolve()}"


def _check_sqlite_file(url: str, output: Path) -> None:
    """A study file that exists must be a readable SQLite database (else one line, the file untouched)."""
    if not url.startswith("sqlite:///"):
        return
    path = Path(url[len("sqlite:///"):])
    if not path.is_file():
        return
    try:
        # read-write, never create: a killed search can leave a hot journal that SQLite rolls back on opening
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True)) as connection:
            check = connection.execute("PRAGMA quick_check").fetchone()
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as error:
        check, tables = (str(error),), set()
    if check[0] != "ok" or (tables and "studies" not in tables):
        reason = check[0] if check[0] != "ok" else "no Optuna tables"
        raise StudyError(
            f"study file {path} is not a readable Optuna study ({reason}); nothing was changed: the finished "
            f"trials' folders and trials.csv under {Path(output) / TRIALS_FOLDER} are kept - move the file away to "
            "start a new study there, or pass another --output."
        )


def open_study(storage: str, name: str, output: Path, setup: dict, sampler: optuna.samplers.BaseSampler,
               pruner: optuna.pruners.BasePruner) -> optuna.Study:
    """Create study ``name`` or load it to continue; refuses a corrupt file or a study of another setup."""
    _check_sqlite_file(storage, output)
    Path(output).mkdir(parents=True, exist_ok=True)
    try:
        study = optuna.create_study(storage=open_storage(storage), study_name=name, direction="maximize",
                                    sampler=sampler, pruner=pruner, load_if_exists=True)
    except Exception as error:  # the database answered, but not as an Optuna storage
        raise StudyError(f"cannot open study {name!r} in {storage} ({type(error).__name__}: "
                         f"{str(error).splitlines()[0][:200]}): check --storage, or pass another --output.") from None
    recorded = study.user_attrs.get(SETUP)
    if recorded is None:
        study.set_user_attr(SETUP, setup)
    elif json.dumps(recorded, sort_keys=True) != json.dumps(setup, sort_keys=True):
        changed = sorted(k for k in set(recorded) | set(setup) if recorded.get(k) != setup.get(k))
        raise StudyError(
            f"study {name!r} in {storage} was started with another setup ({', '.join(changed)} differ): rerun it "
            "with the same --config, fit flags and --space to continue it, or pass another --study or --output."
        )
    return study


def abandoned(study: optuna.Study, now: Optional[float] = None) -> list[optuna.trial.FrozenTrial]:
    """``RUNNING`` trials whose search is gone: resumed in place by the next search."""
    now = time.time() if now is None else now
    out = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = trial.user_attrs.get(OWNER)
        beat = float(trial.user_attrs.get(HEARTBEAT, 0.0))
        if not _owner_alive(owner) or now - beat > STALE_AFTER:
            out.append(trial)
    return out


def beat(study: optuna.Study, trial_id: int) -> None:
    """The heartbeat of a running trial (a timestamp in its user attributes)."""
    set_attrs(study, trial_id, {HEARTBEAT: time.time()})


def claim(study: optuna.Study, trial_id: int) -> None:
    """Mark trial ``trial_id`` as run by this process (owner and a first heartbeat)."""
    set_attrs(study, trial_id, {OWNER: owner_id(), HEARTBEAT: time.time()})


def set_attrs(study: optuna.Study, trial_id: int, attrs: dict[str, Any]) -> None:
    """Set user attributes of a trial (a running one: Optuna's ``Trial`` is the public way in)."""
    trial = optuna.trial.Trial(study, trial_id)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that count against the budget: complete, pruned (the divergence stop included) or failed."""
    return study.get_trials(deepcopy=False, states=FINISHED)


def best_trial(study: optuna.Study) -> Optional[optuna.trial.FrozenTrial]:
    """The complete trial with the highest value (None before any completes)."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def trial_folder(output: Path, number: int) -> Path:
    """``OUTPUT/trials/trial_NNNN``: the trial's run folder (a normal ``fit`` run)."""
    return Path(output) / TRIALS_FOLDER / f"trial_{number:04d}"
