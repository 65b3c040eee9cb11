"""Attack success rate of a backdoor: metric and test-time callback (paper Table V)."""

from __future__ import annotations

import copy
import inspect
import json
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import lightning.pytorch as pl
import pandas as pd
import torch
from lightning.pytorch.utilities import rank_zero_warn
from matplotlib.figure import Figure
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchmetrics import Metric

from lightning_local.benchmark import paper
from lightning_local.benchmark.results import mean_std_n, setting_table_section
from lightning_local.data.backdoor import Backdoor, distinct_pairs

from .base import Analysis, ReportSection
from .io import analysis_dir, report, save_figure, write_csv, write_json
from .representations import all_reduce_sum, batches, evaluate, rank_shard

if TYPE_CHECKING:  # pragma: no cover
    from lightning_local.benchmark.spec import Grid

BACKDOOR_DATA = f"{Backdoor.__module__}.{Backdoor.__name__}"
RESULTS = ("clean_accuracy", "accuracy_under_attack", "attack_success_rate", "asr_baseline", "source", "target",
           "poison_rate", "poison_from", "relabel", "num_triggered")  # what the store keeps of a run's result
CSV = "table5_backdoor.csv"
DEFAULT_RATES = [0.1, 0.3, 0.5, 0.7, 0.9]  # the paper's Table V


class AttackSuccessRate(Metric):
    """Share of (triggered) samples predicted as the backdoor's ``target`` class.

    ``update`` takes predicted classes ``[B]`` or class scores ``[B, C]``. The
    states are summed across processes, so the metric is exact under DDP.

    Args:
        target: the class the backdoor maps triggered inputs to.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    hits: Tensor
    total: Tensor

    def __init__(self, target: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = int(target)
        self.add_state("hits", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor) -> None:
        """Add a batch of predictions ``[B]`` (or scores ``[B, C]``, arg-maxed)."""
        if preds.dim() == 2:
            preds = preds.argmax(dim=-1)
        if preds.dim() != 1:
            raise ValueError(f"AttackSuccessRate expects predictions [B] or scores [B, C], got shape {tuple(preds.shape)}.")
        self.hits += (preds == self.target).sum()
        self.total += preds.numel()

    def compute(self) -> Tensor:
        """``hits / total`` (NaN when no sample was seen)."""
        if self.total == 0:
            return torch.tensor(float("nan"))
        return self.hits.float() / self.total


class BackdoorEvaluation(Analysis):
    """At the end of ``trainer.test``, measures the attack success rate on the triggered test set.

    **How the test sees triggered samples (documented choice):** the model's own
    test step runs on the clean test split as usual (``test_acc`` is the clean
    accuracy); this callback then runs the data module's
    ``triggered_test_dataset`` (every source-class test sample with the trigger
    stamped on, see :class:`lightning_local.data.backdoor.Backdoor`) through the
    model's evaluation forward pass, logs ``test_asr`` and writes
    ``backdoor_test.json``/``.csv`` (clean accuracy, ASR, source, target,
    poison rate, counts) and a bar chart. It also logs ``test_acc_under_attack``:
    the accuracy on the whole test split with the trigger stamped on the source
    class's samples (the data module's ``attacked_test_dataset``; "accuracy under
    attack" in the paper's Table V caption). As a control it also logs
    ``test_asr_baseline``: the share of the same source-class samples
    *without* trigger predicted as the target (what ASR would be with no
    backdoor effect). It does nothing (with a warning) when
    the data module is not a backdoor one.

    In a benchmark spec (``backdoor: {poison_rates: [...], pairs: N, pair_seed: S, ...}``) it trains
    its own runs: per rule and architecture, ``pairs`` distinct (source, target) pairs, each at every
    poison rate, on the :class:`~lightning_local.data.backdoor.Backdoor` data module (the other options
    are that module's, e.g. ``trigger``, ``poison_from``), and gives the report Table V.

    Args:
        output_dir: folder for the result files (default ``<log_dir>/analysis``).
    """

    name = "backdoor"
    key = "backdoor"
    benchmark_options = frozenset({"poison_rates", "pairs", "pair_seed"})
    on_training_runs = False
    report_order = 30

    def __init__(self, output_dir: Optional[str] = None) -> None:
        self.output_dir = output_dir
        self._result: Optional[dict[str, Any]] = None

    def on_test_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        datamodule = trainer.datamodule
        dataset = getattr(datamodule, "triggered_test_dataset", None)
        if dataset is None:
            rank_zero_warn("BackdoorEvaluation: the data module has no triggered_test_dataset (use the Backdoor data module).")
            self._result = None
            return
        asr, total = self._target_rate(trainer, pl_module, dataset, datamodule)
        pl_module.log("test_asr", asr)
        attacked = getattr(datamodule, "attacked_test_dataset", None)
        under_attack = float("nan")
        if attacked is not None:
            under_attack = float(self._accuracy(trainer, pl_module, attacked, datamodule))
            pl_module.log("test_acc_under_attack", under_attack)
        clean_source = getattr(datamodule, "source_test_dataset", None)
        baseline = float("nan")
        if clean_source is not None:
            baseline_rate, _ = self._target_rate(trainer, pl_module, clean_source, datamodule)
            pl_module.log("test_asr_baseline", baseline_rate)
            baseline = float(baseline_rate)
        self._result = {
            "attack_success_rate": float(asr),
            "accuracy_under_attack": under_attack,
            "asr_baseline": baseline,
            "num_triggered": total,
            "source": int(datamodule.source),
            "target": int(datamodule.target),
            "pair": getattr(datamodule, "pair", None),
            "poison_rate": float(datamodule.poison_rate),
            "poison_from": getattr(datamodule, "poison_from", "source"),
            "relabel": bool(getattr(datamodule, "relabel", True)),
            "num_poisoned": len(datamodule.poisoned_indices),
            "trigger_indices": datamodule.trigger.indices.tolist(),
        }

    @staticmethod
    def _loader(trainer: "pl.Trainer", dataset: Dataset, datamodule: Any) -> DataLoader:
        """This process's shard of ``dataset`` in order, with the data module's batch size and workers."""
        return DataLoader(rank_shard(dataset, trainer), batch_size=datamodule.batch_size, shuffle=False,
                          num_workers=datamodule.num_workers)

    def _target_rate(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", dataset: Dataset, datamodule: Any) -> tuple[Tensor, int]:
        """Share of ``dataset`` predicted as the target (synced over processes) and the global count."""
        metric = AttackSuccessRate(datamodule.target).to(pl_module.device)
        with torch.no_grad():
            for frames, _ in batches(self._loader(trainer, dataset, datamodule), pl_module.device):
                metric.update(evaluate(pl_module, frames).logits)
        rate = metric.compute()  # synced over processes
        total = metric.total.double().reshape(1)
        all_reduce_sum(trainer, [total])
        return rate, int(total.item())

    def _accuracy(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", dataset: Dataset, datamodule: Any) -> float:
        """Accuracy on ``dataset`` against its own labels, summed over processes."""
        counts = torch.zeros(2, dtype=torch.float64)  # correct, total
        with torch.no_grad():
            for frames, labels in batches(self._loader(trainer, dataset, datamodule), pl_module.device):
                counts += torch.tensor([(evaluate(pl_module, frames).logits.argmax(-1) == labels).sum().item(), labels.numel()],
                                       dtype=torch.float64)
        all_reduce_sum(trainer, [counts])
        return float(counts[0] / counts[1]) if counts[1] > 0 else float("nan")

    def on_test_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self._result is None or not trainer.is_global_zero:
            return
        clean = trainer.callback_metrics.get("test_acc")
        result = {"clean_accuracy": float(clean) if clean is not None else float("nan"), **self._result}
        folder = analysis_dir(trainer, self.output_dir)
        write_json(folder / f"{self.name}_test.json", result)
        write_csv(folder / f"{self.name}_test.csv", [{k: v for k, v in result.items() if k != "trigger_indices"}])
        save_figure(_bars(result), folder / f"{self.name}_test.png")
        report(
            f"Backdoor (source {result['source']} -> target {result['target']}, poison rate {result['poison_rate']:g}): "
            f"clean accuracy {result['clean_accuracy']:.3f}, under attack {result['accuracy_under_attack']:.3f}, "
            f"ASR {result['attack_success_rate']:.3f} "
            f"(without trigger {result['asr_baseline']:.3f}) "
            f"on {result['num_triggered']} triggered samples"
        )


    # ------------------------------------------------------------ benchmark
    @classmethod
    def check_options(cls, options: dict, architectures: list[str]) -> dict:
        rates = options.get("poison_rates", DEFAULT_RATES)
        if not isinstance(rates, list) or not rates or not all(isinstance(r, (int, float)) and 0 <= r <= 1 for r in rates):
            raise ValueError(f"backdoor.poison_rates must be a list of numbers in [0, 1] (got {rates!r}).")
        pairs = options.get("pairs", 5)
        if not isinstance(pairs, int) or pairs < 1:
            raise ValueError(f"backdoor.pairs must be a positive integer (got {pairs!r}).")
        data_options = set(inspect.signature(Backdoor.__init__).parameters) - {"self", "base", "poison_rate", "source",
                                                                                  "target", "seed"}
        unknown = sorted(set(options) - cls.benchmark_options - data_options)
        if unknown:
            raise ValueError(f"Unknown option(s) {unknown} for analysis 'backdoor': allowed are "
                             f"{sorted(cls.benchmark_options | data_options)}.")
        return {**options, "poison_rates": [float(r) for r in rates], "pairs": pairs,
                "pair_seed": int(options.get("pair_seed", 0))}

    @classmethod
    def jobs(cls, options: dict, grid: "Grid") -> list:
        """Per rule and architecture, every (pair, poison rate): a run on the Backdoor data module (pair k
        uses the k-th seed, cycling), testing with this callback."""
        from lightning_local.benchmark.spec import tuning_deps  # noqa: PLC0415 (the benchmark imports analyses)

        extra = {k: v for k, v in options.items() if k not in cls.benchmark_options}  # the data module's, e.g. trigger
        seeds = grid.spec.seeds
        pairs = None
        jobs = []
        for rule in grid.spec.rules:
            for arch in grid.spec.architectures:
                for pair_index in range(options["pairs"]):
                    seed = seeds[pair_index % len(seeds)]
                    base = grid.base_config(rule, arch, seed)
                    if pairs is None:
                        pairs = _pairs(base, grid.dataset, options)
                    source, target = pairs[pair_index]
                    for rate in options["poison_rates"]:
                        config = copy.deepcopy(base)
                        config["data"] = {"class_path": BACKDOOR_DATA, "init_args": {
                            "base": base["data"], "poison_rate": rate, "source": source, "target": target,
                            "seed": pair_index, **extra}}
                        config = grid.with_callbacks(config, [grid.callback(cls.key, {})])
                        variant = {"poison_rate": rate, "pair": pair_index, "source": source, "target": target}
                        jobs.append(grid.job("train", rule, arch, seed, config, variant, deps=tuning_deps(config)))
        return jobs

    @classmethod
    def collect(cls, run_dir: Path, kind: str, config: dict, variant: dict) -> tuple[dict, dict]:
        path = Path(run_dir) / "analysis" / f"{cls.name}_test.json"
        if not path.is_file():
            return {}, {}
        result = json.loads(path.read_text())
        return {"backdoor": {k: result.get(k) for k in RESULTS}}, {}

    @classmethod
    def report(cls, runs: pd.DataFrame, folder: Path) -> list[ReportSection]:
        intro = ["## Table V: backdoor, accuracy under attack (%) / attack success rate (%) per poison rate", "",
                 "Accuracy under attack: the test split with the trigger on the source class's samples (the paper's "
                 "caption); ASR: the share of triggered source-class test samples predicted as the target. The clean "
                 "accuracy (no trigger) is in table5_backdoor.csv. Protocol: docs/protocols.md.", ""]
        outro = ["Pairs (source->target) per row: see table5_backdoor.csv.", ""]
        return [setting_table_section(cls.report_order, table_v(runs), "poison_rate", _cell, folder, CSV, intro, outro)]


def _pairs(base: dict, dataset: str, options: dict) -> list[tuple[int, int]]:
    """The spec's (source, target) pairs, drawn over the classes of the run's event data module."""
    data = base.get("data") or {}
    module, _, attr = str(data.get("class_path", "")).rpartition(".")
    try:
        data_class = getattr(import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        data_class = None
    if data_class is None or not getattr(data_class, "class_names", None):
        raise ValueError(f"Backdoor runs need an event data module with class names; {dataset}'s config names "
                         f"{data.get('class_path')!r}.")
    try:
        return distinct_pairs(len(data_class.class_names), options["pairs"], options["pair_seed"])
    except ValueError as error:
        raise ValueError(f"backdoor.pairs: {error}") from None


def table_v(runs: pd.DataFrame) -> pd.DataFrame:
    """Accuracy under attack %, clean accuracy % and attack success rate % per poison rate, over the (source, target) pairs.

    Accuracy under attack: the whole test split with the source class triggered (the paper's caption); clean: no trigger.
    """
    backdoor = runs[runs.poison_rate.notna() & (runs.status == "done")]
    rows = []
    for (dataset, rule, arch, rate), group in backdoor.groupby(["dataset", "rule", "arch", "poison_rate"], sort=False):
        results = [m["backdoor"] for m in group.metrics if "backdoor" in m]
        clean = mean_std_n(pd.Series([100 * r["clean_accuracy"] for r in results]))
        attacked = mean_std_n(pd.Series([100 * _number(r.get("accuracy_under_attack")) for r in results]))
        asr = mean_std_n(pd.Series([100 * r["attack_success_rate"] for r in results]))
        ref = paper.table_v(rule, dataset, arch, rate)
        rows.append({"dataset": dataset, "rule": rule, "arch": arch, "poison_rate": rate,
                     "attacked_mean": attacked["mean"], "attacked_std": attacked["std"],
                     "clean_mean": clean["mean"], "clean_std": clean["std"], "asr_mean": asr["mean"], "asr_std": asr["std"],
                     "n": clean["n"], "pairs": ", ".join(f"{r['source']}->{r['target']}" for r in results),
                     "paper_clean": ref[0] if ref else None, "paper_asr": ref[1] if ref else None})
    return pd.DataFrame(rows, columns=["dataset", "rule", "arch", "poison_rate", "attacked_mean", "attacked_std",
                                       "clean_mean", "clean_std", "asr_mean", "asr_std", "n", "pairs", "paper_clean",
                                       "paper_asr"])


def _number(value: Any) -> float:
    """A stored number, NaN where a run's result lacks it (``None``)."""
    return float("nan") if value is None else float(value)


def _cell(row) -> str:
    text = f"{row.attacked_mean:.2f} ± {row.attacked_std:.2f} / {row.asr_mean:.2f} ± {row.asr_std:.2f} (n={int(row.n)})"
    if not pd.isna(row.paper_clean):
        text += f" [paper {row.paper_clean:.2f} / {row.paper_asr:.2f}]"
    return text


def _bars(result: dict[str, Any]) -> Figure:
    figure = Figure(figsize=(3.2, 3))
    ax = figure.subplots()
    ax.bar(["clean acc", "under attack", "ASR", "no trigger"],
           [result["clean_accuracy"], result["accuracy_under_attack"], result["attack_success_rate"], result["asr_baseline"]],
           color=["tab:blue", "tab:cyan", "tab:red", "tab:gray"])
    ax.set_ylim(0, 1)
    ax.set_title(f"{result['source']}->{result['target']}, rate {result['poison_rate']:g}")
    return figure
