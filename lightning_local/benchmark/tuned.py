"""Tuned cells of a benchmark: exporting their configs and the report's table of tuned settings.

A spec with a ``tune:`` section searches every (dataset, rule, architecture) cell once with the
same budget (``lightning-local tune``, a job of kind ``tune``) before the cell's runs, which then
use the best trial's settings. :func:`export_tuned` writes each cell's tuned config to
``tune.export`` (e.g. ``configs/tuned/nmnist_small/{rule}_{arch}.yaml``): the config of the cell's
seed-0 run, usable as is by ``lightning-local fit --config``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import yaml

from lightning_local.analysis.io import write_text

from . import paper
from lightning_local.learners import NEURON_SPACE
from lightning_local.tuning.space import lookup

from .spec import TUNED, Job, Spec, _base_config, with_settings
from .store import ResultStore

#: Tuned time constants and the Table VII decay each replaces (a = exp(-1/tau_syn), b = exp(-1/tau_mem)):
#: what the neuron space's ``clears`` says.
DECAY_OF = {key: spec["clears"][0] for key, spec in NEURON_SPACE.items() if spec.get("clears")}


def export_tuned(spec: Spec, jobs: list[Job], store: ResultStore, command: str) -> list[Path]:
    """Write the tuned config of every finished tune job to the spec's ``tune.export`` template."""
    template = (spec.tune or {}).get("export")
    if not template:
        return []
    rows = {row["key"]: row for row in store.runs([j.key for j in jobs if j.kind == "tune"])}
    written = []
    for job in jobs:
        row = rows.get(job.key)
        if job.kind != "tune" or row is None or row["status"] != "done":
            continue
        best = row["metrics"]
        config = with_settings(_base_config(spec, job.dataset, job.rule, job.arch, 0, tuned=False), best["settings"])
        written_root = spec.datasets[job.dataset].get("root_as_written")
        if written_root is not None:
            config["data"]["init_args"]["root"] = written_root
        path = Path(template.format(dataset=job.dataset, rule=job.rule, arch=job.arch))
        header = (f"# Tuned settings for {job.dataset} / {job.rule} / {job.arch.upper()}: trial {best['trial']} of "
                  f"{best['trials']} (best val_acc {best['best_val_acc']:.4f}; {spec.tune['trials']} trials per cell, "
                  f"pruner {spec.tune['pruner']}).\n# Written by: {command}\n"
                  f"# lightning-local fit --config {path}\n")
        written.append(write_text(path, header + yaml.safe_dump(config, sort_keys=False)))
    return written


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _with_decay(key: str, value: Any) -> str:
    """A time constant with the decay factor it gives, as Table VII states it."""
    text = _number(value)
    if key in DECAY_OF and isinstance(value, (int, float)) and value > 0:
        text += f" ({DECAY_OF[key].split('.')[-1]} {math.exp(-1.0 / value):.3f})"
    return text


def _table_vii_value(key: str, row: Optional[dict]) -> str:
    if row is None:
        return "–"
    if key in DECAY_OF and row.get(DECAY_OF[key]) is not None:
        decay = row[DECAY_OF[key]]
        return f"{-1.0 / math.log(decay):.4g} ({DECAY_OF[key].split('.')[-1]} {decay:g})"
    return _number(row.get(key))


def tuned_table(jobs: list[Job], runs: pd.DataFrame) -> pd.DataFrame:
    """One row per tuned setting of every finished tune job: tuned value, the untuned config's, Table VII's."""
    by_key = {job.key: job for job in jobs}
    records = []
    for run in runs[(runs.kind == "tune") & (runs.status == "done")].itertuples():
        job, best = by_key[run.key], run.metrics
        table_vii = paper.table_vii(job.dataset, job.rule, job.arch)
        for key, value in best.get("params", {}).items():
            found, untuned = lookup(job.config, key)
            records.append({
                "dataset": job.dataset, "rule": job.rule, "arch": job.arch, "setting": key,
                "tuned": _with_decay(key, value),
                "untuned": _with_decay(key, untuned) if found and untuned is not None else "default",
                "table_vii": _table_vii_value(key, table_vii), "best_val_acc": best.get("best_val_acc"),
                "trial": best.get("trial"), "trials": best.get("trials"),
            })
    return pd.DataFrame(records)


def tuned_cells(jobs: list[Job]) -> list[str]:
    """Readable names of the cells whose runs use tuned settings."""
    return sorted({f"{j.dataset} {j.rule} {j.arch.upper()}" for j in jobs if j.kind == "train" and TUNED in j.config})
