"""Test accuracy per rule and architecture (the paper's Table III, and Table VI for conv nets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lightning_local.benchmark import paper
from lightning_local.benchmark.results import cell, main_runs, markdown, mean_std_n, title

from .base import Analysis, ReportSection
from .io import write_csv

CSV = "table3_accuracy.csv"


class Accuracy(Analysis):
    """Table III: the test accuracy that every run logs (``test_acc``) - as a callback it adds nothing.

    The report's table holds one column per dataset, network (linear / conv) and architecture; the
    paper's value is Table III's for fully connected nets and Table VI's for the conv net.
    """

    key = "accuracy"
    on_training_runs = False
    report_order = 10

    @classmethod
    def report(cls, runs: pd.DataFrame, folder: Path) -> list[ReportSection]:
        table = table_iii(runs)
        write_csv(Path(folder) / CSV, table)
        body = markdown(_pivot(table)) if len(table) else "No finished training runs."
        return [ReportSection(cls.report_order, ["## Table III: test accuracy (%)", "", body, ""], [CSV])]


def table_iii(runs: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy % per dataset, network (linear/conv), rule, arch (the main grid, no backdoor runs)."""
    rows = []
    for (dataset, network, rule, arch), group in main_runs(runs).groupby(["dataset", "network", "rule", "arch"], sort=False):
        stats = mean_std_n(group.metrics.map(lambda m: 100 * m["test_acc"] if "test_acc" in m else np.nan))
        rows.append({"dataset": dataset, "network": network, "rule": rule, "arch": arch, **stats,
                     "paper": paper.table_iii(rule, dataset, arch, network)})
    return pd.DataFrame(rows, columns=["dataset", "network", "rule", "arch", "mean", "std", "n", "paper"])


def _pivot(table: pd.DataFrame) -> pd.DataFrame:
    columns = list(dict.fromkeys(zip(table.dataset, table.network, table.arch)))
    rows = []
    for rule in dict.fromkeys(table.rule):
        row = {"rule": rule}
        for dataset, network, arch in columns:
            match = table[(table.rule == rule) & (table.dataset == dataset) & (table.network == network) & (table.arch == arch)]
            conv = " conv (Table VI)" if network == "conv" else ""
            row[f"{title(dataset)}{conv} {arch.upper()}"] = (
                cell(match["mean"].iloc[0], match["std"].iloc[0], int(match.n.iloc[0]), match.paper.iloc[0])
                if len(match) else "–")
        rows.append(row)
    return pd.DataFrame(rows)
