"""The cost of a rule: training memory and time (measured, over T), and inference cost with NeuroBench's definitions.

Training: see :mod:`lightning_local.analysis.training_cost`. Inference, below.

NeuroBench (the ``neurobench`` package, Yik et al. 2024) defines the metrics on ``nn.Linear``/``nn.Conv``
modules and snnTorch neurons, found through forward hooks. Our layers are neither: a synapse module
feeds a fused LIF scan over the whole sequence. So the definitions are implemented here on our
:class:`~lightning_local.synapses.Synapse` modules and the per-layer spikes of a forward pass, and
``tests/analysis/test_cost.py`` holds them equal to ``neurobench`` on a snnTorch twin of the same net:

* **footprint**: bytes of the network's parameters and buffers;
* **connection sparsity**: share of zero weights over every synapse (feed-forward ``W`` and recurrent ``V``);
* **activation sparsity**: share of zero entries of every layer's spikes over all steps and samples
  (also per layer);
* **synaptic operations per sample**: for each synapse and step, ``sum_j sum_i [W_ji != 0][x_i != 0]`` -
  the synapse applied to binarised inputs with binarised weights (for a convolution, every kernel tap
  that meets a non-zero input). They count as effective **ACs** when the synapse's inputs are spikes
  (values in {-1, 0, 1}, NeuroBench's test) and as effective **MACs** otherwise (dense input features).
  **Dense** operations count every weight at every step (all-ones inputs and weights). A recurrent
  synapse's input at step t is the layer's spikes at t - 1 (zero at t = 0, the initial state);
* **membrane updates per sample**: every neuron's membrane is updated once per step (the fused scan
  updates all of them), so neurons x steps. NeuroBench counts updates that change the potential,
  which for a leaky membrane is every step unless it sits exactly at 0; this is the one metric not
  compared with ``neurobench`` in the tests.

Biases are not synaptic operations (NeuroBench's default); our synapses have none.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lightning_local.benchmark.figures import figure_section, panel_grid, place_legend, series_style
from lightning_local.benchmark.results import main_runs, markdown, mean_std_n, title

from ..learners.traces import BLOCK_STEPS
from ..models import NetworkOutput, SpikingNetwork
from ..synapses import Synapse
from .base import EvaluationAnalysis, ReportSection
from .io import report, write_csv, write_json
from .representations import all_reduce_sum, batches, evaluate, layer_names
from .training_cost import cost_over_steps

CSV = "cost.csv"
FIGURE_CSV = "cost_accuracy_vs_memory.csv"
CAPTION = ("Cost figure: test accuracy against the measured memory of one training step (saved for backward plus the "
           "state a rule carries), one point per rule and architecture, mean ± std over seeds.")
PROBE_STEPS = (25, 50, 100, 200)


def footprint_bytes(module: nn.Module) -> int:
    """Bytes of ``module``'s parameters and buffers (NeuroBench's footprint)."""
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def connection_sparsity(network: SpikingNetwork) -> float:
    """Share of zero weights over every synapse of ``network`` (NeuroBench's connection sparsity)."""
    weights = [synapse.weight for layer in network.layers for synapse in layer.synapses]
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / sum(w.numel() for w in weights)


def is_spiking(x: Tensor) -> bool:
    """NeuroBench's test of a synapse input: spikes when every value is -1, 0 or 1."""
    return bool(((x == 0) | (x == 1) | (x == -1)).all())


@torch.no_grad()
def synaptic_operations(synapse: Synapse, inputs: Tensor) -> tuple[int, int]:
    """``(effective, dense)`` operations of ``synapse`` on ``inputs`` ``[..., *in_shape]`` (all leading dims summed)."""
    weight = synapse.weight
    flat = inputs.reshape(-1, *synapse.in_shape)
    effective = synapse.transmit((flat != 0).to(weight.dtype), weight=(weight != 0).to(weight.dtype)).sum()
    ones = torch.ones(1, *synapse.in_shape, dtype=weight.dtype, device=weight.device)
    dense_per_input = synapse.transmit(ones, weight=torch.ones_like(weight)).sum()
    return int(effective.round().item()), int(dense_per_input.round().item()) * flat.shape[0]


def synapse_inputs(frames: Tensor, output: NetworkOutput, network: SpikingNetwork) -> list[list[tuple[Synapse, Tensor]]]:
    """Per layer, each synapse with its inputs over the sequence: the frames (layer 0, batch-major) or the previous
    layer's spikes for ``W``; the layer's own spikes one step earlier (zero at t = 0) for a recurrent ``V``."""
    out = []
    for l, layer in enumerate(network.layers):
        pairs = [(layer.synapse, frames if l == 0 else output.spikes[l - 1])]
        if layer.recurrent is not None:
            own = output.spikes[l]
            pairs.append((layer.recurrent, torch.cat([torch.zeros_like(own[:1]), own[:-1]])))
        out.append(pairs)
    return out


_SUMS = ("acs", "macs", "dense", "spikes", "activations", "membrane_updates")  # CostCounter's per-layer sums


@dataclass
class CostCounter:
    """Accumulates NeuroBench's workload metrics over evaluation batches (:meth:`update`), per layer."""

    layers: list[str]
    samples: int = 0
    acs: np.ndarray = field(init=False)
    macs: np.ndarray = field(init=False)
    dense: np.ndarray = field(init=False)
    spikes: np.ndarray = field(init=False)
    activations: np.ndarray = field(init=False)
    membrane_updates: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        for name in _SUMS:
            setattr(self, name, np.zeros(len(self.layers), dtype=np.float64))

    def update(self, network: SpikingNetwork, frames: Tensor, output: NetworkOutput) -> None:
        """Add one batch: ``frames`` ``[B, T, *input_shape]`` and the network's ``output`` on them."""
        for l, pairs in enumerate(synapse_inputs(frames, output, network)):
            for synapse, inputs in pairs:
                effective, dense = synaptic_operations(synapse, inputs)
                (self.acs if is_spiking(inputs) else self.macs)[l] += effective
                self.dense[l] += dense
            spikes = output.spikes[l]
            self.spikes[l] += int(torch.count_nonzero(spikes))
            self.activations[l] += spikes.numel()
            self.membrane_updates[l] += spikes.numel()  # one update per neuron and step
        self.samples += frames.shape[0]

    def state(self) -> list[Tensor]:
        """The sums as tensors ``[per-layer sums [6, L], samples [1]]`` (to add them over DDP processes)."""
        sums = np.stack([getattr(self, name) for name in _SUMS])
        return [torch.from_numpy(sums), torch.tensor([float(self.samples)], dtype=torch.float64)]

    def load(self, tensors: Sequence[Tensor]) -> None:
        """Take the sums back from :meth:`state`'s tensors (after they were added over processes)."""
        sums, samples = tensors
        for name, row in zip(_SUMS, sums.double().numpy()):
            setattr(self, name, row.copy())
        self.samples = int(samples.item())

    def per_layer(self) -> pd.DataFrame:
        """Per layer and per sample: effective ACs / MACs, dense operations, activation sparsity, membrane updates."""
        n = max(self.samples, 1)
        return pd.DataFrame({
            "layer": self.layers, "effective_acs": self.acs / n, "effective_macs": self.macs / n,
            "dense_ops": self.dense / n, "activation_sparsity": 1 - self.spikes / np.maximum(self.activations, 1),
            "membrane_updates": self.membrane_updates / n})

    def totals(self) -> dict[str, float]:
        """The whole network's metrics per sample (activation sparsity over all layers' activations)."""
        n = max(self.samples, 1)
        return {"effective_acs": float(self.acs.sum() / n), "effective_macs": float(self.macs.sum() / n),
                "dense_ops": float(self.dense.sum() / n),
                "activation_sparsity": float(1 - self.spikes.sum() / max(self.activations.sum(), 1)),
                "membrane_updates": float(self.membrane_updates.sum() / n), "num_samples": self.samples}


class Cost(EvaluationAnalysis):
    """What a rule costs: training memory and step time (at the run's T and over T), and inference cost.

    At the end of the chosen stage, on the evaluation split:

    * **training** (on a probe copy of the module, so the run's weights stay as they are): memory of one
      training step and its time (mean ± std over ``train_steps`` steps after warm-up) on the first
      ``probe_batch`` examples at the run's T and at every T of ``probe_steps`` (the batch repeated along
      time; one measurement per T), with the least-squares slopes of memory and time over all of them (the paper's Table I, measured); see
      :mod:`lightning_local.analysis.training_cost`;
    * **inference**, NeuroBench's metrics of the evaluated network over the first ``num_samples`` examples
      (a conversion run: its converted SNN); see the module docstring.

    Writes ``cost_<stage>.json`` (totals), ``cost_<stage>.csv`` (per layer) and ``cost_<stage>_over_T.csv``.
    In a benchmark spec (``cost: {...}``) it runs on every main training run and gives the report a Cost
    table and a figure of accuracy against training memory.

    Args:
        num_samples: inference metrics over the first ``num_samples`` examples (None: all).
        probe_batch: examples of the training probe.
        train_steps: timed training steps (after two warm-up steps).
        probe_steps: values of T for the slopes over T (empty: only the run's T).
        stages: when to run: ``"validate"`` and/or ``"test"``.
        output_dir: folder for the result files (default ``<log_dir>/analysis``).
    """

    name = "cost"
    key = "cost"
    report_order = 35  # after the tables of the paper, before the figures

    def __init__(self, num_samples: Optional[int] = None, probe_batch: int = 16, train_steps: int = 5,
                 probe_steps: Sequence[int] = PROBE_STEPS, stages: Sequence[str] = ("test",),
                 output_dir: Optional[str] = None) -> None:
        super().__init__(stages, output_dir)
        if num_samples is not None and num_samples < 1:
            raise ValueError(f"num_samples must be positive or None (got {num_samples}).")
        if probe_batch < 1 or train_steps < 1 or any(int(t) < 1 for t in probe_steps):
            raise ValueError(f"probe_batch, train_steps and probe_steps must be positive (got {probe_batch}, "
                             f"{train_steps}, {list(probe_steps)}).")
        self.num_samples = num_samples
        self.probe_batch = probe_batch
        self.train_steps = train_steps
        self.probe_steps = [int(t) for t in probe_steps]

    def analyse(self, trainer: "pl.Trainer", pl_module, stage: str, loader: DataLoader) -> None:
        network = pl_module.network
        counter = CostCounter(layer_names(network))
        probe = None
        with torch.no_grad():
            for frames, labels in batches(loader, pl_module.device, self.num_samples):
                counter.update(network, frames, evaluate(pl_module, frames))
                if probe is None:
                    probe = frames[: self.probe_batch], labels[: self.probe_batch]
        state = counter.state()
        all_reduce_sum(trainer, state)
        counter.load(state)
        if counter.samples == 0 or probe is None:
            return
        steps = probe[0].shape[1]
        report(f"Cost probe ({stage}): {self.train_steps} training steps of batch {probe[0].shape[0]} at T = {steps}, "
               f"then at T = {', '.join(map(str, self.probe_steps)) or '(none)'}")
        # one measurement per T, the run's own among them
        over_t, slopes = cost_over_steps(pl_module, *probe, sorted({*self.probe_steps, steps}), repeats=self.train_steps,
                                         warmup=2)
        training = next({k: v for k, v in row.items() if k != "T"} for row in over_t if row["T"] == steps)
        if not trainer.is_global_zero:
            return
        totals = {**counter.totals(), "footprint_bytes": footprint_bytes(network),
                  "connection_sparsity": connection_sparsity(network),
                  **{f"train_{k}": v for k, v in training.items()}, "train_T": steps, "train_batch": probe[0].shape[0],
                  **slopes}
        write_csv(self.path(trainer, stage, ".csv"), counter.per_layer())
        write_csv(self.path(trainer, stage, "_over_T.csv"), over_t)
        write_json(self.path(trainer, stage, ".json"), totals)
        report(f"Cost ({stage}): training step {training['memory_bytes'] / 2**20:.2f} MB, {training['step_ms_mean']:.1f} ± "
               f"{training['step_ms_std']:.1f} ms at T = {steps}; per sample {totals['effective_acs']:.4g} ACs, "
               f"{totals['effective_macs']:.4g} MACs, {totals['dense_ops']:.4g} dense ops, activation sparsity "
               f"{totals['activation_sparsity']:.3f}, footprint {totals['footprint_bytes']} B")

    # ------------------------------------------------------------ benchmark
    @classmethod
    def collect(cls, run_dir: Path, kind: str, config: dict, variant: dict) -> tuple[dict, dict]:
        path = Path(run_dir) / "analysis" / f"{cls.name}_test.json"
        if not path.is_file():
            return {}, {}
        return {"cost": json.loads(path.read_text())}, {"cost": str(path)}

    @classmethod
    def report(cls, runs: pd.DataFrame, folder: Path) -> list[ReportSection]:
        table = cost_table(runs)
        write_csv(Path(folder) / CSV, table)
        if not len(table):
            return [ReportSection(cls.report_order, [], [CSV])]
        lines = ["## Cost: training memory and time, inference operations", "",
                 "Mean ± std over seeds. Training: memory of one training step (autograd's saved tensors plus the state "
                 "a rule carries between steps and its accumulated updates; not the weights, optimizer or input), its "
                 "time, and the slopes over the probe's T values (default 25, 50, 100, 200; the measured Table I), on a "
                 "probe copy with the cost callback's probe batch. The built-in online rules simulate the sequence in "
                 f"blocks of {BLOCK_STEPS} steps and hold one block's state from T = {BLOCK_STEPS} on: their memory is "
                 "flat from there, and their small memory slope is the step up from a probe T below one block (every "
                 "T: each run's analysis/cost_*_over_T.csv). Inference, NeuroBench's definitions per sample: ACs on spike inputs, MACs on "
                 "dense inputs, dense ops (every weight at every step), activation sparsity (zero spikes over all "
                 "layers and steps), footprint (parameter and buffer bytes). Definitions: lightning_local/analysis/"
                 "cost.py and training_cost.py.", ""]
        for dataset, part in table.groupby("dataset", sort=False):
            shown = pd.DataFrame({"rule": part.rule + " " + part.arch.str.upper(),
                                  **{label: [_cell(r[f"{k}_mean"], r[f"{k}_std"], spec) for _, r in part.iterrows()]
                                     for k, label, spec in COLUMNS},
                                  "dense ops": [f"{v:.4g}" for v in part.dense_ops],
                                  "footprint (KiB)": [f"{v / 1024:.1f}" for v in part.footprint_bytes],
                                  "n": part.n.astype(int).tolist()})
            lines += [f"### {title(dataset)}", "", markdown(shown), ""]
        plotted = table[["dataset", "rule", "arch", "acc_mean", "acc_std", "memory_mb_mean", "memory_mb_std"]]
        figure = figure_section(cls.report_order + 1, "cost_accuracy_vs_memory", CAPTION, plotted,
                                accuracy_vs_memory_figure, folder, FIGURE_CSV)
        return [ReportSection(cls.report_order, lines, [CSV]), figure]


#: Cost table columns: (key in :func:`cost_table`, heading, number format).
COLUMNS = (("acc", "test acc (%)", ".2f"), ("memory_mb", "train step memory (MB)", ".3g"),
           ("step_ms", "train step (ms)", ".3g"), ("memory_slope_kb", "memory slope (KB / step)", ".3g"),
           ("time_slope_ms", "time slope (ms / step)", ".3g"), ("acs", "effective ACs", ".4g"),
           ("macs", "effective MACs", ".4g"), ("sparsity", "activation sparsity", ".3f"))
#: Where each column's per-run value comes from: (metric, key in the run's cost results, scale).
_SOURCES = {"memory_mb": ("cost", "train_memory_bytes", 2**-20), "step_ms": ("cost", "train_step_ms_mean", 1.0),
            "memory_slope_kb": ("cost", "memory_bytes_per_step", 2**-10),
            "time_slope_ms": ("cost", "step_ms_per_step", 1.0), "acs": ("cost", "effective_acs", 1.0),
            "macs": ("cost", "effective_macs", 1.0), "sparsity": ("cost", "activation_sparsity", 1.0)}


def cost_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, rule and arch: test accuracy %, training cost and inference cost, mean and std over seeds."""
    rows = []
    for (dataset, rule, arch), group in main_runs(runs).groupby(["dataset", "rule", "arch"], sort=False):
        measured = [m for m in group.metrics if "cost" in m]
        if not measured:
            continue
        row = {"dataset": dataset, "rule": rule, "arch": arch}
        accuracy = mean_std_n(pd.Series([100 * m["test_acc"] for m in measured if "test_acc" in m]))
        row.update(acc_mean=accuracy["mean"], acc_std=accuracy["std"])
        for name, (metric, key, scale) in _SOURCES.items():
            stats = mean_std_n(pd.Series([scale * m[metric][key] for m in measured if key in m[metric]], dtype=float))
            row.update({f"{name}_mean": stats["mean"], f"{name}_std": stats["std"]})
        row.update(dense_ops=measured[0]["cost"]["dense_ops"], footprint_bytes=measured[0]["cost"]["footprint_bytes"],
                   n=len(measured))
        rows.append(row)
    columns = ["dataset", "rule", "arch", *(f"{k}_{s}" for k, _, _ in COLUMNS for s in ("mean", "std")), "dense_ops",
               "footprint_bytes", "n"]
    return pd.DataFrame(rows, columns=columns)


def accuracy_vs_memory_figure(table: pd.DataFrame):
    """Accuracy against training-step memory, one point per rule and architecture, a panel per dataset."""
    panels = list(table.groupby("dataset", sort=False))
    if not panels:
        return None
    figure, axes = panel_grid(len(panels))
    for ax, (dataset, part) in zip(axes, panels):
        rules = list(dict.fromkeys(part.rule))  # a colour per rule, a marker per architecture
        for r in part.itertuples():
            ax.errorbar(r.memory_mb_mean, r.acc_mean, xerr=r.memory_mb_std, yerr=r.acc_std,
                        color=series_style(rules.index(r.rule))["color"], marker="o" if r.arch == "ff" else "s",
                        capsize=2, label=f"{r.rule} {r.arch.upper()}")
        ax.set_xscale("log")
        ax.set_xlabel("training step memory (MB, log)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{title(dataset)}: accuracy vs training memory", fontsize=10)
        ax.grid(alpha=0.3)
        place_legend(ax, len(part))
    return figure


def _cell(mean: float, std: float, spec: str) -> str:
    return "–" if np.isnan(mean) else f"{mean:{spec}} ± {std:{spec}}"
