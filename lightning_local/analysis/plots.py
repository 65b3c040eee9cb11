"""The figures of the analyses, drawn on standalone matplotlib figures (no pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure


def cka_heatmaps(matrices: Mapping[str, np.ndarray], rows: Sequence[str], columns: Mapping[str, Sequence[str]]) -> Figure:
    """One annotated heatmap per reference: model layers (rows) x reference layers (columns)."""
    figure = Figure(figsize=(3.6 * len(matrices) + 0.6, 3.4))
    axes = figure.subplots(1, len(matrices), squeeze=False)[0]
    for ax, (name, matrix) in zip(axes, matrices.items()):
        image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="magma", origin="lower")
        ax.set_xticks(range(matrix.shape[1]), columns[name], rotation=45, ha="right")
        ax.set_yticks(range(matrix.shape[0]), rows)
        ax.set_xlabel(f"reference: {_short(name)}")
        ax.set_ylabel("this model")
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, "nan" if np.isnan(value) else f"{value:.2f}", ha="center", va="center",
                    color="black" if value > 0.6 else "white", fontsize=8)
    figure.colorbar(image, ax=list(axes), label="linear CKA")
    return figure


def lines_per_series(x_labels: Sequence[str], series: Mapping[str, Sequence[float]], ylabel: str, title: str) -> Figure:
    """One line per series over categorical x positions (e.g. CKA per layer for each epsilon)."""
    figure = Figure(figsize=(5, 3.4))
    ax = figure.subplots()
    for label, values in series.items():
        ax.plot(range(len(x_labels)), values, marker="o", label=label)
    ax.set_xticks(range(len(x_labels)), x_labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def accuracy_vs_epsilon(epsilons: Sequence[float], curves: Mapping[str, Sequence[float]], title: str) -> Figure:
    """Accuracy against the FGSM epsilon (log x axis, clean accuracy as a dashed line)."""
    figure = Figure(figsize=(5, 3.4))
    ax = figure.subplots()
    for label, values in curves.items():
        ax.plot(epsilons[1:], values[1:], marker="o", label=label)
        ax.axhline(values[0], linestyle="--", linewidth=0.8, color=ax.lines[-1].get_color())
    ax.set_xscale("log")
    ax.set_xlabel("FGSM epsilon (L-inf)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def grouped_bars(groups: Mapping[str, Mapping[str, Sequence[float]]], x_labels: Sequence[str], ylabel: str) -> Figure:
    """One panel per group (e.g. epoch); inside, bars per x label for each series (e.g. LW, RW)."""
    figure = Figure(figsize=(3.4 * len(groups) + 0.6, 3.2))
    axes = figure.subplots(1, len(groups), squeeze=False, sharey=True)[0]
    for ax, (group, series) in zip(axes, groups.items()):
        width = 0.8 / max(len(series), 1)
        for k, (label, values) in enumerate(series.items()):
            ax.bar(np.arange(len(x_labels)) + (k - (len(series) - 1) / 2) * width, values, width, label=label)
        ax.set_xticks(range(len(x_labels)), x_labels)
        ax.set_title(group)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[-1].legend(fontsize=8)
    return figure


def _short(name: str, keep: int = 28) -> str:
    return name if len(name) <= keep else "..." + name[-keep:]
