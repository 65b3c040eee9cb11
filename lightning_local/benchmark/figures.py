"""What the report's figures share: a grid of panels, error-bar lines per series, a figure's section."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd
from matplotlib.figure import Figure

from lightning_local.analysis.base import ReportSection
from lightning_local.analysis.io import save_figure


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


def figure_section(order: int, name: str, caption: str, figure: Optional[Figure], folder: Path,
                   files: list[str]) -> ReportSection:
    """A report section showing ``figure`` (saved as ``<name>.png``) under ``caption``'s first words; ``files``:
    the CSVs behind it. No figure (no data): no text, the files are still listed."""
    if figure is None:
        return ReportSection(order, [], files)
    save_figure(figure, Path(folder) / f"{name}.png")
    return ReportSection(order, [f"## {caption.split(':')[0]}", "", caption, "", f"![{name}]({name}.png)", ""], files)
