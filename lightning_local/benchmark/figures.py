"""What the report's figures share: a grid of panels, error-bar lines per series, a figure's section."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import pandas as pd
from matplotlib.figure import Figure

from lightning_local.analysis.base import ReportSection
from lightning_local.analysis.io import save_figure, write_csv


def panel_grid(count: int, width: float = 4.2, height: float = 3.2) -> tuple[Figure, list]:
    """A figure with ``count`` panels, at most three per row (the unused axes hidden)."""
    columns = min(3, count)
    rows = -(-count // columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for ax in axes[count:]:
        ax.set_visible(False)
    return figure, axes


def error_lines(ax, frame: pd.DataFrame, x: str, series: str, xticks: Optional[list] = None) -> None:
    """One line of ``mean`` ± ``std`` over ``x`` per value of ``series`` (``xticks``: categorical x, in order)."""
    for label, group in frame.groupby(series, sort=False):
        positions = [xticks.index(v) for v in group[x]] if xticks else group[x]
        ax.errorbar(positions, group["mean"], yerr=group["std"], marker="o", capsize=2, label=str(label))
    if xticks:
        ax.set_xticks(range(len(xticks)), xticks)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def figure_section(order: int, name: str, caption: str, data: pd.DataFrame, plot: Callable[[pd.DataFrame], Optional[Figure]],
                   folder: Path, csv: str) -> ReportSection:
    """A figure's report section: ``data`` written as ``csv``, ``plot(data)`` saved as ``<name>.png`` and shown under
    ``caption``'s first words. No figure (no data): no text, the CSV is still written and listed."""
    folder = Path(folder)
    write_csv(folder / csv, data)
    figure = plot(data)
    if figure is None:
        return ReportSection(order, [], [csv])
    save_figure(figure, folder / f"{name}.png")
    return ReportSection(order, [f"## {caption.split(':')[0]}", "", caption, "", f"![{name}]({name}.png)", ""], [csv])
