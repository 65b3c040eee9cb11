"""The report folder: ``report.md`` with the paper's Tables III-V, the CSVs behind them, Figures 2-4 as PNG.

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

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lightning_local.analysis.io import save_figure, write_csv, write_text

from . import paper
from . import findings
from .results import adversarial_cka_per_seed, cka_per_seed, fisher_per_seed, layer_order, markdown, runs_frame, mean_std_n, title
from .spec import Job
from .store import ResultStore
from .tuned import tuned_cells, tuned_table

def _cell(mean: float, std: float, n: int, paper_value: Optional[float] = None) -> str:
    if n == 0 or np.isnan(mean):
        text = "–"
    else:
        text = f"{mean:.2f} ± {std:.2f} (n={n})"
    if paper_value is not None and not np.isnan(paper_value):  # the paper has no value for e.g. conversion
        text += f" [paper {paper_value:.2f}]"
    return text


# ----------------------------------------------------------------------------- tables
def table_iii(runs: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy % per dataset, network (linear/conv), rule, arch (the main grid, no backdoor runs).

    The paper's value is Table III's for fully connected nets and Table VI's for the conv net.
    """
    main = runs[(runs.kind == "train") & runs.poison_rate.isna() & (runs.status == "done")]
    rows = []
    for (dataset, network, rule, arch), group in main.groupby(["dataset", "network", "rule", "arch"], sort=False):
        cell = mean_std_n(group.metrics.map(lambda m: 100 * m["test_acc"] if "test_acc" in m else np.nan))
        rows.append({"dataset": dataset, "network": network, "rule": rule, "arch": arch, **cell,
                     "paper": paper.table_iii(rule, dataset, arch, network)})
    return pd.DataFrame(rows, columns=["dataset", "network", "rule", "arch", "mean", "std", "n", "paper"])


def table_iv(runs: pd.DataFrame) -> pd.DataFrame:
    """Accuracy % under FGSM per epsilon (epsilon 0 = clean)."""
    main = runs[(runs.kind == "train") & runs.poison_rate.isna() & (runs.status == "done")]
    rows = []
    for (dataset, rule, arch), group in main.groupby(["dataset", "rule", "arch"], sort=False):
        per_run = [m["fgsm"] for m in group.metrics if "fgsm" in m]
        for eps in sorted({float(e) for r in per_run for e in r}):
            stats = mean_std_n(pd.Series([100 * r[f"{eps:g}"] for r in per_run if f"{eps:g}" in r]))
            rows.append({"dataset": dataset, "rule": rule, "arch": arch, "epsilon": eps, **stats,
                         "paper": paper.table_iv(rule, dataset, arch, eps)})
    return pd.DataFrame(rows, columns=["dataset", "rule", "arch", "epsilon", "mean", "std", "n", "paper"])


def table_v(runs: pd.DataFrame) -> pd.DataFrame:
    """Accuracy under attack %, clean accuracy % and attack success rate % per poison rate, over the (source, target) pairs.

    Accuracy under attack: the whole test split with the source class triggered (the paper's caption); clean: no trigger.
    """
    backdoor = runs[runs.poison_rate.notna() & (runs.status == "done")]
    rows = []
    for (dataset, rule, arch, rate), group in backdoor.groupby(["dataset", "rule", "arch", "poison_rate"], sort=False):
        results = [m["backdoor"] for m in group.metrics if "backdoor" in m]
        clean = mean_std_n(pd.Series([100 * r["clean_accuracy"] for r in results]))
        attacked = mean_std_n(pd.Series([100 * r.get("accuracy_under_attack", np.nan) for r in results]))
        asr = mean_std_n(pd.Series([100 * r["attack_success_rate"] for r in results]))
        ref = paper.table_v(rule, dataset, arch, rate)
        rows.append({"dataset": dataset, "rule": rule, "arch": arch, "poison_rate": rate,
                     "attacked_mean": attacked["mean"], "attacked_std": attacked["std"],
                     "clean_mean": clean["mean"], "clean_std": clean["std"], "asr_mean": asr["mean"], "asr_std": asr["std"],
                     "n": clean["n"], "pairs": ", ".join(f"{r['source']}->{r['target']}" for r in results),
                     "paper_clean": ref[0] if ref else None, "paper_asr": ref[1] if ref else None})
    return pd.DataFrame(rows, columns=["dataset", "rule", "arch", "poison_rate", "attacked_mean", "attacked_std",
                                       "clean_mean", "clean_std", "asr_mean",
                                       "asr_std", "n", "pairs", "paper_clean", "paper_asr"])


# ----------------------------------------------------------------------------- figures' data
def figure_2(runs: pd.DataFrame) -> pd.DataFrame:
    """Layer-wise CKA (same layer in both models) between rules and with the converted SNN, over seeds."""
    return _aggregate(cka_per_seed(runs), ["dataset", "arch", "pair", "layer"], "cka")


def figure_3(runs: pd.DataFrame) -> pd.DataFrame:
    """Per layer and epsilon, CKA(clean, FGSM) of REC minus FF, paired by seed, then over seeds."""
    return _aggregate(adversarial_cka_per_seed(runs), ["dataset", "rule", "epsilon", "layer"], "cka")


def figure_4(runs: pd.DataFrame) -> pd.DataFrame:
    """Normalized Fisher information per layer (mean over t) for LW-FF, LW-REC, RW-REC per epoch, over seeds."""
    return _aggregate(fisher_per_seed(runs), ["dataset", "rule", "series", "epoch", "layer"], "fisher_normalized")


def _aggregate(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame(columns=keys + ["mean", "std", "n"])
    grouped = frame.groupby(keys, sort=False)[value]
    out = grouped.agg(mean="mean", std=lambda v: float(v.std(ddof=1)) if len(v) > 1 else 0.0, n="count")
    return out.reset_index()


# ----------------------------------------------------------------------------- plots
def _grid(panels: list, width: float = 4.2, height: float = 3.2) -> tuple[Figure, list]:
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return figure, axes


def _lines(ax, frame: pd.DataFrame, x: str, series: str, xticks: Optional[list] = None) -> None:
    for label, group in frame.groupby(series, sort=False):
        positions = [xticks.index(v) for v in group[x]] if xticks else group[x]
        ax.errorbar(positions, group["mean"], yerr=group["std"], marker="o", capsize=2, label=str(label))
    if xticks:
        ax.set_xticks(range(len(xticks)), xticks)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_figure_2(data: pd.DataFrame) -> Optional[Figure]:
    panels = list(data.groupby(["dataset", "arch"], sort=False))
    if not panels:
        return None
    figure, axes = _grid(panels)
    for ax, ((dataset, arch), group) in zip(axes, panels):
        _lines(ax, group, "layer", "pair", layer_order(group))
        ax.set_title(f"{title(dataset)} {arch.upper()}: layer-wise CKA", fontsize=10)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("linear CKA")
    return figure


def plot_figure_3(data: pd.DataFrame) -> Optional[Figure]:
    panels = list(data.groupby(["dataset", "rule"], sort=False))
    if not panels:
        return None
    figure, axes = _grid(panels)
    for ax, ((dataset, rule), group) in zip(axes, panels):
        group = group.assign(eps=group.epsilon.map(lambda e: f"eps={e:g}"))
        _lines(ax, group, "layer", "eps", layer_order(group))
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(f"{title(dataset)} {rule}: REC - FF", fontsize=10)
        ax.set_ylabel("CKA(clean, FGSM) difference")
    return figure


def plot_figure_4(data: pd.DataFrame) -> Optional[Figure]:
    panels = list(data.groupby(["dataset", "rule", "series"], sort=False))
    if not panels:
        return None
    figure, axes = _grid(panels)
    for ax, ((dataset, rule, series), group) in zip(axes, panels):
        _lines(ax, group, "epoch", "layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{title(dataset)} {rule}: {series}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("normalized Fisher (mean over t)")
    return figure


# ----------------------------------------------------------------------------- markdown
def _pivot_iii(table: pd.DataFrame) -> pd.DataFrame:
    columns = list(dict.fromkeys(zip(table.dataset, table.network, table.arch)))
    rows = []
    for rule in dict.fromkeys(table.rule):
        row = {"rule": rule}
        for dataset, network, arch in columns:
            match = table[(table.rule == rule) & (table.dataset == dataset) & (table.network == network) & (table.arch == arch)]
            conv = " conv (Table VI)" if network == "conv" else ""
            row[f"{title(dataset)}{conv} {arch.upper()}"] = (
                _cell(match["mean"].iloc[0], match["std"].iloc[0], int(match.n.iloc[0]), match.paper.iloc[0])
                if len(match) else "–")
        rows.append(row)
    return pd.DataFrame(rows)


def _pivot_per_setting(table: pd.DataFrame, column: str, cell) -> dict[str, pd.DataFrame]:
    out = {}
    for dataset, part in table.groupby("dataset", sort=False):
        values = sorted(part[column].unique())
        rows = []
        for (rule, arch), group in part.groupby(["rule", "arch"], sort=False):
            row = {"rule": f"{rule} {arch.upper()}"}
            for value in values:
                match = group[group[column] == value]
                row[f"{value:g}"] = cell(match.iloc[0]) if len(match) else "–"
            rows.append(row)
        out[dataset] = pd.DataFrame(rows)
    return out


def _cell_iv(r) -> str:
    return _cell(r["mean"], r["std"], int(r.n), None if pd.isna(r.paper) else r.paper)


def _cell_v(r) -> str:
    text = f"{r.attacked_mean:.2f} ± {r.attacked_std:.2f} / {r.asr_mean:.2f} ± {r.asr_std:.2f} (n={int(r.n)})"
    if not pd.isna(r.paper_clean):
        text += f" [paper {r.paper_clean:.2f} / {r.paper_asr:.2f}]"
    return text


def _tuning_section(jobs: list[Job], runs: pd.DataFrame, folder: Path) -> list[str]:
    """Which cells used tuned settings, and the tuned values beside the untuned config's and Table VII's."""
    cells = tuned_cells(jobs)
    if not cells:
        return []
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
    return lines


def write_report(jobs: list[Job], store: ResultStore, folder: Path, spec_name: str,
                 summary: Optional[dict] = None) -> Path:
    """Write ``report.md``, the CSVs and the figures into ``folder``; returns the report's path."""

    folder = Path(folder)
    runs = runs_frame(jobs, store)
    iii, iv, v = table_iii(runs), table_iv(runs), table_v(runs)
    fig2, fig3, fig4 = figure_2(runs), figure_3(runs), figure_4(runs)
    found = findings.findings(runs)
    for name, frame in {"findings": found, "table3_accuracy": iii, "table4_fgsm": iv, "table5_backdoor": v, "fig2_cka": fig2,
                        "fig3_adversarial_cka_rec_minus_ff": fig3, "fig4_fisher": fig4}.items():
        write_csv(folder / f"{name}.csv", frame)
    status_csv = runs.drop(columns=["metrics", "paths"])
    write_csv(folder / "runs.csv", status_csv)
    figures = {}
    for name, plot, data in (("fig2_cka", plot_figure_2, fig2), ("fig3_adversarial_cka", plot_figure_3, fig3),
                             ("fig4_fisher", plot_figure_4, fig4)):
        figure = plot(data)
        if figure is not None:
            save_figure(figure, folder / f"{name}.png")
            figures[name] = f"{name}.png"

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
    lines += ["## Table III: test accuracy (%)", ""]
    lines += [markdown(_pivot_iii(iii)) if len(iii) else "No finished training runs.", ""]
    lines += _tuning_section(jobs, runs, folder)
    if len(iv):
        lines += ["## Table IV: accuracy (%) under FGSM per epsilon", "",
                  "Epsilon 0 is the clean accuracy on the samples the attack used (`fgsm.num_samples`), so it can "
                  "differ from Table III.", ""]
        for dataset, frame in _pivot_per_setting(iv, "epsilon", _cell_iv).items():
            lines += [f"### {title(dataset)}", "", markdown(frame), ""]
    if len(v):
        lines += ["## Table V: backdoor, accuracy under attack (%) / attack success rate (%) per poison rate", "",
                  "Accuracy under attack: the test split with the trigger on the source class's samples (the paper's "
                  "caption); ASR: the share of triggered source-class test samples predicted as the target. The clean "
                  "accuracy (no trigger) is in table5_backdoor.csv. Protocol: docs/protocols.md.", ""]
        for dataset, frame in _pivot_per_setting(v, "poison_rate", _cell_v).items():
            lines += [f"### {title(dataset)}", "", markdown(frame), ""]
        lines += ["Pairs (source->target) per row: see table5_backdoor.csv.", ""]
    captions = {
        "fig2_cka": "Figure 2: layer-wise linear CKA between rules and between conversion and each rule "
                    "(same layer in both models, mean ± std over seeds).",
        "fig3_adversarial_cka": "Figure 3: CKA(clean, FGSM) of REC minus FF per layer and epsilon (paired by seed).",
        "fig4_fisher": "Figure 4: normalized Fisher information per layer (mean over time steps) for LW-FF, LW-REC "
                       "and RW-REC over training epochs.",
    }
    for name, file in figures.items():
        lines += [f"## {captions[name].split(':')[0]}", "", captions[name], "", f"![{name}]({file})", ""]
    failed = runs[runs.status == "failed"]
    if len(failed):
        lines += ["## Failed runs", ""] + [f"- {r.name} ({r.run_dir}): {r.error}" for r in failed.itertuples()] + [""]
    lines += ["Files: findings.csv, table3_accuracy.csv, table4_fgsm.csv, table5_backdoor.csv, fig2_cka.csv, "
              "fig3_adversarial_cka_rec_minus_ff.csv, fig4_fisher.csv, runs.csv (status and folder of every run).", ""]
    return write_text(folder / "report.md", "\n".join(lines))
