"""The report folder: ``report.md`` with the Findings, each analysis's sections (the paper's Tables III-V and
Figures 2-4 from the installed analyses' :meth:`~lightning_local.analysis.base.Analysis.report`), the CSVs
behind them and the figures as PNG.

Every number is mean +- std (sample std, ``ddof=1``; 0 for one run) and n over
the finished runs of the grid (seeds; for Table V the (source, target) pairs).
The paper's numbers (:mod:`lightning_local.benchmark.paper`) stand beside ours
wherever the dataset name and setting match. Only the jobs of the current grid
are read from the store, so runs of an edited spec never mix in.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Optional

import pandas as pd

from lightning_local.analysis.base import ReportSection
from lightning_local.analysis.io import write_csv, write_text

from . import findings, paper
from .results import markdown, runs_frame
from .spec import Job, installed_analyses
from .store import ResultStore
from .tuned import tuned_cells, tuned_table

TUNING_ORDER = 15  # after Table III


def _tuning_section(jobs: list[Job], runs: pd.DataFrame, folder: Path) -> ReportSection:
    """Which cells used tuned settings, and the tuned values beside the untuned config's and Table VII's."""
    cells = tuned_cells(jobs)
    if not cells:
        return ReportSection(TUNING_ORDER, [])
    table = tuned_table(jobs, runs)
    write_csv(folder / "tuned_settings.csv", table)
    tune_runs = runs[runs.kind == "tune"]
    budget = next((j.config.get("tune_options") for j in jobs if j.kind == "tune"), {}) or {}
    lines = ["## Tuned settings", "",
             f"Every cell was tuned once with the same budget before its seeds ran: {budget.get('trials')} trials "
             f"(`lightning-local tune`, TPE, pruner {budget.get('pruner')}), each a `fit` scored on its best val_acc; "
             f"the test split was never evaluated while tuning. Cells with tuned settings: {', '.join(cells)}. "
             f"Searches: {int((tune_runs.status == 'done').sum())} of {len(tune_runs)} done, "
             f"{float(tune_runs.seconds.fillna(0).sum()):.0f} s in all.", ""]
    if len(table):
        shown = table.assign(cell=table.dataset + " " + table.rule + " " + table.arch.str.upper(),
                             val=table.best_val_acc.map(lambda v: f"{100 * v:.2f}"))
        shown = shown[["cell", "setting", "tuned", "untuned", "table_vii", "val", "trial"]].rename(columns={
            "untuned": "untuned config", "table_vii": "Table VII", "val": "best val_acc (%)", "trial": "best trial"})
        lines += [markdown(shown), "", "Time constants are in steps, with the decay factor they give "
                  "(Table VII states decays: alpha = exp(-1/tau_syn), beta = exp(-1/tau_mem)). File: tuned_settings.csv.", ""]
    return ReportSection(TUNING_ORDER, lines)


def write_report(jobs: list[Job], store: ResultStore, folder: Path, spec_name: str,
                 summary: Optional[dict] = None) -> Path:
    """Write ``report.md``, the CSVs and the figures into ``folder``; returns the report's path."""

    folder = Path(folder)
    runs = runs_frame(jobs, store)
    found = findings.findings(runs)
    write_csv(folder / "findings.csv", found)
    sections = [_tuning_section(jobs, runs, folder)]
    for analysis in installed_analyses().values():
        sections += analysis.cls.report(runs, folder)
    sections.sort(key=lambda section: section.order)
    write_csv(folder / "runs.csv", runs.drop(columns=["metrics", "paths"]))

    counts = runs.status.value_counts().to_dict()
    lines = [f"# Benchmark report: {spec_name}", "",
             f"Generated {datetime.datetime.now().isoformat(timespec='seconds')}. Runs: "
             + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("done", "failed", "running", "pending")) + f" of {len(runs)}.",
             f"Cells: mean ± std (n) over seeds (Table V: over (source, target) pairs), in %; "
             f"[paper X]: {paper.CITATION}, mean of 5 runs on the full dataset - shown where the dataset and setting "
             f"match by name; our runs use the spec's settings (see each run's run.yaml), which may be smaller.", ""]
    if summary:
        lines += [f"Wall time of the last invocation: {summary['seconds']:.0f} s "
                  f"({summary['done'] - summary['earlier']} runs finished now, {summary['earlier']} earlier, "
                  f"{summary['failed']} failed).", ""]
    lines += findings.section(found)
    for section in sections:
        lines += section.lines
    failed = runs[runs.status == "failed"]
    if len(failed):
        lines += ["## Failed runs", ""] + [f"- {r.name} ({r.run_dir}): {r.error}" for r in failed.itertuples()] + [""]
    files = ["findings.csv", *(name for section in sections for name in section.files)]
    lines += [f"Files: {', '.join(files)}, runs.csv (status and folder of every run).", ""]
    return write_text(folder / "report.md", "\n".join(lines))
