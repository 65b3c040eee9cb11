"""What the report's figures share: a grid of panels, error-bar lines per series, their styles and legend, a figure's
section."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from lightning_local.analysis.base import ReportSection
from lightning_local.analysis.io import save_figure, write_csv

# More series than this and the legend goes beside the axes, where it hides no data ...
LEGEND_INSIDE = 6
# ... in columns of at most this many entries (a 3.2-inch panel holds about 22 at font size 7).
LEGEND_ROWS = 22


def panel_grid(count: int, width: float = 4.2, height: float = 3.2) -> tuple[Figure, list]:
    """A figure with ``count`` panels, at most three per row (the unused axes hidden)."""
    columns = min(3, count)
    rows = -(-count // columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for ax in axes[count:]:
        ax.set_visible(False)
    return figure, axes


def series_style(index: int) -> dict:
    """Colour, line style and marker of a figure's ``index``-th series: the ten tab10 colours, then the same colours
    with the next line style and marker, so every series of a many-rule grid (21 rule pairs) stays distinguishable."""
    colours = matplotlib.colormaps["tab10"].colors
    cycle = index // len(colours)
    return {"color": colours[index % len(colours)], "linestyle": ("-", "--", ":", "-.")[cycle % 4],
            "marker": "osD^"[cycle % 4]}


def place_legend(ax, count: int) -> None:
    """The legend of ``count`` series: inside the axes for a few, beside them for more."""
    if count > LEGEND_INSIDE:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                  ncol=1 + (count - 1) // LEGEND_ROWS)
    else:
        ax.legend(fontsize=7)


def error_lines(ax, frame: pd.DataFrame, x: str, series: str, xticks: Optional[list] = None) -> None:
    """One line of ``mean`` ± ``std`` over ``x`` per value of ``series`` (``xticks``: categorical x, in order)."""
    groups = list(frame.groupby(series, sort=False))
    for index, (label, group) in enumerate(groups):
        positions = [xticks.index(v) for v in group[x]] if xticks else group[x]
        ax.errorbar(positions, group["mean"], yerr=group["std"], capsize=2, label=str(label), **series_style(index))
    if xticks:
        ax.set_xticks(range(len(xticks)), xticks)
    ax.grid(alpha=0.3)
    place_legend(ax, len(groups))


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
