"""A grid's runs as a frame (one row per run, :func:`runs_frame`) and the formatting that the report's
sections (each analysis's :meth:`~lightning_local.analysis.base.Analysis.report`) and its Findings share.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from lightning_local.analysis.base import ReportSection
from lightning_local.analysis.io import write_csv

from .spec import Job
from .store import ResultStore


DATASET_TITLES = {"nmnist": "N-MNIST", "dvsgesture": "DVS Gesture", "timit": "TIMIT", "saccade_digits": "saccade digits"}


def title(dataset: str) -> str:
    """The dataset's name as the paper writes it."""
    return DATASET_TITLES.get(dataset, dataset)


def mean_std_n(values: pd.Series) -> dict:
    """Mean, sample std (0 for one value) and n of the non-missing values."""
    values = values.dropna().astype(float)
    n = len(values)
    return {"mean": float(values.mean()) if n else np.nan, "std": float(values.std(ddof=1)) if n > 1 else 0.0, "n": n}


def markdown(frame: pd.DataFrame) -> str:
    """A frame as a markdown table."""
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def cell(mean: float, std: float, n: int, paper_value: Optional[float] = None) -> str:
    """A table cell: ``mean ± std (n=N)``, with ``[paper X]`` where the paper has a value."""
    text = "–" if n == 0 or np.isnan(mean) else f"{mean:.2f} ± {std:.2f} (n={n})"
    if paper_value is not None and not np.isnan(paper_value):  # the paper has no value for e.g. conversion
        text += f" [paper {paper_value:.2f}]"
    return text


def pivot_per_setting(table: pd.DataFrame, column: str, format_cell: Callable[[Any], str]) -> dict[str, pd.DataFrame]:
    """Per dataset, one row per rule and architecture and one column per value of ``column`` (e.g. epsilon)."""
    out = {}
    for dataset, part in table.groupby("dataset", sort=False):
        values = sorted(part[column].unique())
        rows = []
        for (rule, arch), group in part.groupby(["rule", "arch"], sort=False):
            row = {"rule": f"{rule} {arch.upper()}"}
            for value in values:
                match = group[group[column] == value]
                row[f"{value:g}"] = format_cell(match.iloc[0]) if len(match) else "–"
            rows.append(row)
        out[dataset] = pd.DataFrame(rows)
    return out


def setting_table_section(order: int, table: pd.DataFrame, column: str, format_cell: Callable[[Any], str], folder: Path,
                          csv: str, intro: list[str], outro: Sequence[str] = ()) -> ReportSection:
    """A table's report section: ``table`` written as ``csv``; unless empty, ``intro``, one markdown table per dataset
    (rows: rule and architecture, columns: the values of ``column``, cells by ``format_cell``) and ``outro``."""
    write_csv(Path(folder) / csv, table)
    if not len(table):
        return ReportSection(order, [], [csv])
    lines = list(intro)
    for dataset, frame in pivot_per_setting(table, column, format_cell).items():
        lines += [f"### {title(dataset)}", "", markdown(frame), ""]
    return ReportSection(order, lines + list(outro), [csv])


def aggregate(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Mean, sample std (0 for one value) and n of ``value`` per group of ``keys``."""
    if frame.empty:
        return pd.DataFrame(columns=keys + ["mean", "std", "n"])
    grouped = frame.groupby(keys, sort=False)[value]
    out = grouped.agg(mean="mean", std=lambda v: float(v.std(ddof=1)) if len(v) > 1 else 0.0, n="count")
    return out.reset_index()


def main_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished main training runs (no backdoor poisoning, no CKA tests)."""
    return runs[(runs.kind == "train") & runs.poison_rate.isna() & (runs.status == "done")]


def runs_frame(jobs: list[Job], store: ResultStore) -> pd.DataFrame:
    """One row per job of the grid with its status, metrics and paths."""
    rows = {row["key"]: row for row in store.runs([j.key for j in jobs])}
    records = []
    for job in jobs:
        row = rows.get(job.key, {})
        records.append({
            "key": job.key, "kind": job.kind, "name": job.name, "dataset": job.dataset,
            "network": (job.config.get("model") or {}).get("synapse", "linear"), "rule": job.rule,
            "arch": job.arch, "seed": job.seed, "poison_rate": job.variant.get("poison_rate"),
            "pair": job.variant.get("pair"), "status": row.get("status", "pending"),
            "seconds": row.get("seconds"), "metrics": row.get("metrics") or {}, "paths": row.get("paths") or {},
            "error": row.get("error"), "run_dir": row.get("run_dir"),
        })
    return pd.DataFrame(records)


def layer_order(frame: pd.DataFrame) -> list[str]:
    """The frame's layer names from input to output (hidden1, hidden2, ..., output)."""
    names = list(dict.fromkeys(frame.layer))
    return sorted(names, key=lambda n: (n == "output", n))
