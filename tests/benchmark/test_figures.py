"""The report's figure styles: every series of a many-rule grid distinguishable, legends beside crowded axes."""

from __future__ import annotations

import itertools

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lightning_local.analysis.cost import accuracy_vs_memory_figure
from lightning_local.benchmark.figures import LEGEND_INSIDE, error_lines, series_style


def drawn_lines(series: int) -> tuple[Figure, object]:
    frame = pd.DataFrame([{"pair": f"pair {k}", "layer": layer, "mean": 0.5, "std": 0.1}
                          for k in range(series) for layer in ("hidden1", "hidden2", "output")])
    figure = Figure()
    ax = figure.subplots()
    error_lines(ax, frame, "layer", "pair", ["hidden1", "hidden2", "output"])
    FigureCanvasAgg(figure).draw()
    return figure, ax


def test_every_series_of_a_six_rule_grid_has_its_own_style():
    styles = [tuple(series_style(k).values()) for k in range(21)]  # the 21 rule pairs of six rules and conversion
    assert len(set(styles)) == 21


def test_a_crowded_legend_goes_beside_the_axes_and_a_short_one_inside():
    for series, beside in ((LEGEND_INSIDE + 15, True), (3, False)):
        _, ax = drawn_lines(series)
        legend, box = ax.get_legend().get_window_extent(), ax.get_window_extent()
        assert bool(legend.x0 >= box.x1) == beside, f"{series} series"
        lines = [container.lines[0] for container in ax.containers]
        assert len({(line.get_color(), line.get_linestyle(), line.get_marker()) for line in lines}) == series


def test_the_cost_figure_gives_each_rule_a_colour_and_each_architecture_a_marker():
    rules = ["bptt", "eprop", "decolle", "ottt", "sltt", "ostl"]
    table = pd.DataFrame([{"dataset": "nmnist", "rule": rule, "arch": arch, "memory_mb_mean": 1.0 + k, "memory_mb_std": 0.1,
                           "acc_mean": 80.0, "acc_std": 1.0} for k, (rule, arch) in enumerate(itertools.product(rules, ["ff", "rec"]))])
    figure = accuracy_vs_memory_figure(table)
    ax = figure.axes[0]
    points = {text.get_text(): container.lines[0] for text, container in zip(ax.get_legend().get_texts(), ax.containers)}
    assert len(points) == 12
    for rule in rules:
        ff, rec = points[f"{rule} FF"], points[f"{rule} REC"]
        assert ff.get_color() == rec.get_color() and (ff.get_marker(), rec.get_marker()) == ("o", "s")
    assert len({points[f"{rule} FF"].get_color() for rule in rules}) == 6
