"""Running one job of the grid: a ``lightning-local`` subprocess in its own folder, then its results.

:func:`execute` is what a local worker thread or a Ray task calls with the store
path and a run key: it claims the run in the store, writes the run's config to
``RUN_DIR/run.yaml``, starts ``lightning-local fit`` (``test`` for CKA jobs) with
the logger pointed at ``RUN_DIR`` - resuming from ``RUN_DIR/checkpoints/last.ckpt``
when an interrupted attempt left one - sends heartbeats while it runs, and
records the outcome: metrics parsed from ``metrics.csv`` and ``analysis/`` plus
the paths, or the failure's last log lines. The child process is killed when
its parent dies (``PR_SET_PDEATHSIG`` on Linux), so killing the benchmark never
leaves orphan runs writing into a folder that a rerun resumes (see
:mod:`lightning_local.benchmark.child`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd
import yaml

from lightning_local.analysis.io import write_text

from .spec import PLACEHOLDER, TUNE_OPTIONS, tuning_deps, with_settings
from .store import HEARTBEAT_EVERY, ResultStore, owner_id

LOG_NAME = "log.txt"
CONFIG_NAME = "run.yaml"
_CHILDREN: set[subprocess.Popen] = set()  # live runs of this process, ended on interrupt
_CHILDREN_LOCK = threading.Lock()
_STOPPING = threading.Event()  # set on Ctrl-C: runs ended by us stay resumable, not "failed"


def last_checkpoint(run_dir: Path) -> Optional[Path]:
    path = Path(run_dir) / "checkpoints" / "last.ckpt"
    return path if path.is_file() else None


def checkpoint_epoch(path: Path) -> Optional[int]:
    """Epochs completed in a Lightning checkpoint (its ``epoch`` counter + 1), None if unreadable."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        return int(state["epoch"]) + 1
    except Exception:  # a half-written or foreign file: resume is then attempted by Lightning itself
        return None


def best_checkpoint(run_dir: Path) -> Optional[Path]:
    """The ``best-*.ckpt`` with the highest ``val_acc`` in its name (else ``last.ckpt``)."""
    scored = []
    for path in (Path(run_dir) / "checkpoints").glob("best-*.ckpt"):
        match = re.search(r"val_acc=([0-9.]+?)(?:-v\d+)?\.ckpt$", path.name)
        scored.append((float(match.group(1)) if match else -1.0, path.stat().st_mtime, path))
    if scored:
        return max(scored)[2]
    return last_checkpoint(run_dir)


def substitute(value: Any, store: ResultStore) -> Any:
    """Replace ``{checkpoint:KEY}`` placeholders by the best checkpoint of run KEY."""
    if isinstance(value, dict):
        return {k: substitute(v, store) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, store) for v in value]
    if isinstance(value, str):
        match = re.fullmatch(PLACEHOLDER.replace("%s", "([0-9a-f]+)").replace("{", r"\{").replace("}", r"\}"), value)
        if match:
            row = store.get(match.group(1))
            path = best_checkpoint(Path(row["run_dir"])) if row else None
            if path is None:
                raise RuntimeError(f"run {match.group(1)} has no checkpoint to compare with")
            return str(path)
    return value


def terminate_children() -> None:
    """End the runs this process started (on Ctrl-C); their folders stay resumable."""
    _STOPPING.set()
    with _CHILDREN_LOCK:
        children = list(_CHILDREN)
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()


def apply_tuned(config: dict, store: ResultStore) -> dict:
    """Replace a run's :data:`TUNED` placeholder by its cell's tuned settings (the tune job's best trial)."""
    deps = tuning_deps(config)
    if not deps:
        return config
    row = store.get(deps[0])
    settings = ((row or {}).get("metrics") or {}).get("settings")
    if settings is None:
        raise RuntimeError(f"the tune job {deps[0]} of this cell has no tuned settings (status {(row or {}).get('status')})")
    return with_settings(config, settings)


def tune_command(run_dir: Path, options: dict, accelerator: Optional[str]) -> list[str]:
    """``lightning-local tune`` of a cell, in its run folder (rerunning it continues the study)."""
    cmd = [sys.executable, "-m", "lightning_local.cli.main", "tune", "--config", str(run_dir / CONFIG_NAME),
           "--output", str(run_dir), "--study", run_dir.name, "--trials", str(options["trials"]),
           "--pruner", options["pruner"], "--seed", str(options["seed"]), "--workers", "1"]
    if options.get("timeout"):
        cmd += ["--timeout", str(options["timeout"])]
    if accelerator:
        cmd += ["--accelerator", accelerator]
    return cmd


def command(kind: str, run_dir: Path, accelerator: Optional[str], resume: Optional[Path]) -> list[str]:
    """The ``lightning-local`` command line of a run (also stored, to rerun one by hand)."""
    cmd = [sys.executable, "-m", "lightning_local.cli.main", "test" if kind == "cka" else "fit",
           "--config", str(run_dir / CONFIG_NAME),
           "--trainer.logger.init_args.save_dir", str(run_dir),
           "--trainer.logger.init_args.name", "", "--trainer.logger.init_args.version", "",
           "--trainer.enable_progress_bar", "false"]
    if accelerator:
        cmd += ["--trainer.accelerator", accelerator]
    if resume is not None:
        cmd += ["--ckpt_path", str(resume)]
    return cmd


def execute(store_path: str, key: str, threads: Optional[int] = None, accelerator: Optional[str] = "cpu",
            env: Optional[dict] = None) -> dict:
    """Claim run ``key`` in the store, run it to the end and record the outcome; returns a summary dict."""
    store = ResultStore(store_path)
    owner = owner_id()
    previous = store.claim(key, owner)
    if previous is None:
        return {"key": key, "status": "skipped"}
    start = time.time()
    row = store.get(key)
    run_dir = Path(row["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        config = apply_tuned(substitute(row["config"], store), store)
        tune_options = config.pop(TUNE_OPTIONS, None)
        write_text(run_dir / CONFIG_NAME, yaml.safe_dump(config, sort_keys=False))
        resume = last_checkpoint(run_dir) if row["kind"] == "train" else None
        resumed_epoch = checkpoint_epoch(resume) if resume else None
        if resume is not None and resumed_epoch is None:  # torn by the kill: start this run afresh
            os.replace(resume, resume.with_suffix(".ckpt.unreadable"))
            resume = None
        if row["kind"] == "tune":
            cmd = tune_command(run_dir, tune_options, accelerator)
        else:
            cmd = command(row["kind"], run_dir, accelerator, resume)
        store.record(key, "start", {"resume_epoch": resumed_epoch, "previous": previous}, command=json.dumps(cmd))
        rc = run_logged(cmd, run_dir, threads, env, heartbeat=lambda: store.heartbeat(key, owner))
    except Exception as error:  # the run could not even start: record why, keep going with the grid
        store.finish(key, owner, "failed", time.time() - start, error=f"{type(error).__name__}: {error}")
        return {"key": key, "status": "failed", "error": str(error), "seconds": time.time() - start}
    seconds = time.time() - start
    if rc != 0 and _STOPPING.is_set():  # left "running": its owner is gone after exit, so a rerun resumes it
        return {"key": key, "status": "interrupted", "seconds": seconds}
    if rc != 0:
        error = f"exit code {rc}: {tail(run_dir / LOG_NAME)}"
        store.finish(key, owner, "failed", seconds, error=error)
        return {"key": key, "status": "failed", "error": error, "seconds": seconds, "resume_epoch": resumed_epoch}
    try:
        metrics, paths = collect(run_dir, row["kind"], config, row["variant"])
    except Exception as error:
        store.finish(key, owner, "failed", seconds, error=f"results unreadable: {type(error).__name__}: {error}")
        return {"key": key, "status": "failed", "error": str(error), "seconds": seconds}
    store.finish(key, owner, "done", seconds, metrics=metrics, paths=paths)
    return {"key": key, "status": "done", "seconds": seconds, "metrics": metrics, "resume_epoch": resumed_epoch}


def run_logged(cmd: list[str], run_dir: Path, threads: Optional[int], env: Optional[dict],
               heartbeat: Callable[[], None], cwd: Optional[Path] = None) -> int:
    """Run ``cmd`` in ``cwd`` (default ``run_dir``), its output appended to ``run_dir/LOG_NAME``; calls
    ``heartbeat`` while it runs.

    The run dies with this process (:mod:`~lightning_local.benchmark.child`) and is ended by
    :func:`terminate_children` on Ctrl-C. ``threads`` caps the child's BLAS/OpenMP threads.
    Returns the exit code.
    """
    child_env = {**os.environ, **(env or {})}
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            child_env[name] = str(threads)
    with open(run_dir / LOG_NAME, "a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        # The launcher kills the run with the benchmark; a new session keeps Ctrl-C for the benchmark,
        # which then ends its runs itself (terminate_children).
        launcher = [sys.executable, "-m", "lightning_local.benchmark.child", str(os.getpid()), *cmd]
        child = subprocess.Popen(launcher, cwd=cwd or run_dir, stdout=log, stderr=subprocess.STDOUT, env=child_env,
                                 start_new_session=True)
        with _CHILDREN_LOCK:
            _CHILDREN.add(child)
        try:
            while True:
                try:
                    return child.wait(timeout=HEARTBEAT_EVERY)
                except subprocess.TimeoutExpired:
                    heartbeat()
        finally:
            with _CHILDREN_LOCK:
                _CHILDREN.discard(child)


def stopping() -> bool:
    """True once Ctrl-C asked this process to end its runs (they stay resumable)."""
    return _STOPPING.is_set()


def tail(path: Path, lines: int = 3) -> str:
    """The last ``lines`` non-empty lines of a log, joined by `` | `` (at most 600 characters)."""
    try:
        text = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:])[-600:]


# ----------------------------------------------------------------------------- results
def _last(frame: pd.DataFrame, column: str) -> Optional[float]:
    if column not in frame:
        return None
    values = frame[column].dropna()
    return float(values.iloc[-1]) if len(values) else None


def collect(run_dir: Path, kind: str, config: dict, variant: dict) -> tuple[dict, dict]:
    """Metrics (small, into the store) and result paths of a finished run: the last value of every logged
    ``test_*`` metric, the best val_acc, checkpoints, and what each installed analysis reads from its files."""
    from lightning_local.analysis.registry import registered_analyses  # noqa: PLC0415 (analyses import the benchmark)

    run_dir = Path(run_dir)
    metrics: dict[str, Any] = {}
    paths: dict[str, str] = {"run_dir": str(run_dir), "log": str(run_dir / LOG_NAME)}
    if kind == "tune":
        return _collect_tune(run_dir, paths)
    table = pd.read_csv(run_dir / "metrics.csv")
    for column in table.columns:
        value = _last(table, column) if column.startswith("test_") else None
        if value is not None:
            metrics[column] = value
    if kind == "train":
        if "val_acc" in table and table.val_acc.notna().any():
            metrics["best_val_acc"] = float(table.val_acc.max())
            metrics["epochs"] = int(table.loc[table.val_acc.notna(), "epoch"].max()) + 1
        for name, path in (("best_checkpoint", best_checkpoint(run_dir)), ("last_checkpoint", last_checkpoint(run_dir))):
            if path is not None:
                paths[name] = str(path)
        if "test_acc" not in metrics:
            raise RuntimeError("metrics.csv has no test_acc (the run did not test its best checkpoint)")
    for analysis in registered_analyses().values():
        found, files = analysis.cls.collect(run_dir, kind, config, variant)
        metrics.update(found)
        paths.update(files)
    return metrics, paths


def recollect(store: ResultStore) -> int:
    """Re-read the results of every finished run from its folder into the store; returns how many were read.

    A report of a newer version may use results that an older :func:`collect` did not keep (e.g. Table V's
    accuracy under attack); the run folders still hold them. Runs whose folder is gone keep what the store has.
    """
    count = 0
    for row in store.runs():
        run_dir = Path(row["run_dir"])
        if row["status"] != "done" or not (run_dir / CONFIG_NAME).is_file():
            continue
        config = yaml.safe_load((run_dir / CONFIG_NAME).read_text())  # what the run was given
        metrics, paths = collect(run_dir, row["kind"], config, row["variant"])
        store.record(row["key"], "recollected", metrics=metrics, paths=paths)
        count += 1
    return count


def _collect_tune(run_dir: Path, paths: dict) -> tuple[dict, dict]:
    """A finished search: its best trial's settings (what the cell's runs then use) and its files."""
    from lightning_local.tuning.outputs import BEST_CONFIG, BEST_JSON, TRIALS_CSV

    best = json.loads((run_dir / BEST_JSON).read_text())
    paths.update(best_config=str(run_dir / BEST_CONFIG), trials=str(run_dir / TRIALS_CSV))
    return best, paths
