"""Fisher information per layer, time step and weight kind, recorded during training (paper Figure 4)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, get_args

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from matplotlib.ticker import MaxNLocator
from torch.utils.data import DataLoader, Dataset, Subset

from lightning_local.benchmark.figures import error_lines, figure_section, panel_grid
from lightning_local.benchmark.results import aggregate, main_runs, title

from ..module import SpikingClassifier
from .base import Analysis, ReportSection
from .fisher import WEIGHT_KINDS, Readout, check_readout, normalize_per_step, squared_gradient_norms, weight_kinds_present
from .io import analysis_dir, report, save_figure, write_csv, write_json
from .plots import grouped_bars
from .representations import all_reduce_sum, batches, layer_names, rank_shard

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

Split = Literal["train", "val"]
FisherKind = Literal["empirical", "true"]
CSV = "fig4_fisher.csv"
CAPTION = ("Figure 4: normalized Fisher information per layer (mean over time steps) for LW-FF, LW-REC "
           "and RW-REC over training epochs.")


def _split_dataset(trainer: "pl.Trainer", split: Split) -> Dataset:
    """The datamodule's ``<split>_dataset``, else the dataset behind the trainer's loader for that split."""
    dataset = getattr(trainer.datamodule, f"{split}_dataset", None) if trainer.datamodule is not None else None
    if dataset is None:
        loader = trainer.train_dataloader if split == "train" else trainer.val_dataloaders
        if isinstance(loader, (list, tuple)):
            loader = loader[0] if loader else None
        dataset = getattr(loader, "dataset", None)
    if dataset is None:
        raise RuntimeError(f"FisherInformation found no {split} dataset: use a data module with a {split}_dataset.")
    return dataset


class FisherInformation(Analysis):
    """Records ``F_t = mean_x ||grad_w log f_w(y | x_{<=t})||^2`` per layer for LW and RW at chosen epochs.

    At the end of each chosen training epoch, per-sample gradients of the
    log-likelihood at every step ``t`` (see :mod:`lightning_local.analysis.fisher`
    for ``f`` and the ``readout`` options; by default the prediction accumulated
    over steps ``1..t``, eq. 10) are computed for a fixed, seeded subset of
    ``num_samples`` examples of the ``split``, squared, and averaged over samples,
    separately for each layer's linear weights (LW) and recurrent weights (RW,
    REC hidden layers only). ``y`` is the data label (``fisher="empirical"``) or
    drawn from the model at every step (``fisher="true"``, eq. 9; the draw is
    seeded by :meth:`label_generator`, so a run is reproducible).

    **Normalization (documented choice):** at each step ``t`` the values are
    divided by their sum over all layers' LW and RW, so the entries of one step
    sum to 1 (``fisher_normalized``; NaN at steps without any gradient). The raw
    means are kept in ``fisher``. The bar chart shows the normalized values
    averaged over ``t``; ``fisher_<...>.json`` gives the LW / RW shares per epoch.

    Writes (updated after each recorded epoch) ``fisher_information.csv`` (epoch,
    t, layer, weights, fisher, fisher_normalized), ``fisher_information.json`` and
    ``fisher_information.png``. The rows of earlier epochs are part of the callback's state in the
    run's checkpoints, so a resumed run's files still hold every recorded epoch once.

    Args:
        epochs: 0-based epochs after which to record (None: every epoch).
        num_samples: number of examples averaged over.
        batch_size: examples per backward batch.
        split: ``"val"`` or ``"train"`` examples.
        readout: ``"running_mean"`` (default: prediction accumulated over ``1..t``) or ``"step"``
            (membrane at ``t`` alone).
        fisher: ``"empirical"`` (``y`` = the label) or ``"true"`` (``y`` drawn from the model).
        time_steps: steps ``t`` to evaluate (None: all; each costs one backward pass).
        seed: seed of the sample subset (the same subset at every epoch) and of the drawn ``y``.
        output_dir: folder for the result files (default ``<log_dir>/analysis``).
    """

    name = "fisher_information"
    key = "fisher"
    report_order = 60

    def __init__(
        self,
        epochs: Optional[Sequence[int]] = None,
        num_samples: int = 64,
        batch_size: int = 16,
        split: Split = "val",
        readout: Readout = "running_mean",
        fisher: FisherKind = "empirical",
        time_steps: Optional[Sequence[int]] = None,
        seed: int = 0,
        output_dir: Optional[str] = None,
    ) -> None:
        if num_samples < 1 or batch_size < 1:
            raise ValueError(f"num_samples and batch_size must be positive (got {num_samples}, {batch_size}).")
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val' (got {split!r}).")
        check_readout(readout)
        if fisher not in get_args(FisherKind):
            raise ValueError(f"fisher must be 'empirical' (y = label) or 'true' (y drawn from the model) (got {fisher!r}).")
        self.epochs = None if epochs is None else {int(e) for e in epochs}
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.split = split
        self.readout = readout
        self.fisher = fisher
        self.time_steps = None if time_steps is None else list(time_steps)
        self.seed = seed
        self.output_dir = output_dir
        self.rows: list[dict] = []

    def state_dict(self) -> dict[str, Any]:
        return {"rows": list(self.rows)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        epoch = trainer.current_epoch
        if self.epochs is None or epoch in self.epochs:
            self.record(trainer, pl_module, epoch)  # type: ignore[arg-type]

    def _loader(self, trainer: "pl.Trainer") -> DataLoader:
        dataset = _split_dataset(trainer, self.split)
        generator = torch.Generator().manual_seed(self.seed)
        chosen = torch.randperm(len(dataset), generator=generator)[: self.num_samples].sort().values.tolist()  # type: ignore[arg-type]
        return DataLoader(rank_shard(Subset(dataset, chosen), trainer), batch_size=self.batch_size, shuffle=False)

    def label_generator(self, epoch: int, rank: int = 0) -> torch.Generator:
        """The CPU generator of the drawn ``y`` (``fisher="true"``) for one recording on one process."""
        return torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, epoch, rank]).generate_state(1)[0]))

    def record(self, trainer: "pl.Trainer", pl_module: SpikingClassifier, epoch: int) -> pd.DataFrame:
        """Compute the Fisher information now, append it to the results and rewrite the files."""
        network = pl_module.network
        totals: Optional[torch.Tensor] = None
        count = torch.zeros(1, dtype=torch.float64)
        generator = self.label_generator(epoch, trainer.global_rank)
        with torch.inference_mode(False):
            for frames, labels in batches(self._loader(trainer), pl_module.device):
                targets = labels if self.fisher == "empirical" else None
                norms = squared_gradient_norms(network, frames, targets, self.readout, self.time_steps, generator)
                norms = norms.sum(0).double().cpu()
                totals = norms if totals is None else totals + norms
                count += labels.shape[0]
        if totals is None:
            raise RuntimeError(f"FisherInformation: the {self.split} split is empty.")
        all_reduce_sum(trainer, [totals, count])
        fisher = totals / count
        present = weight_kinds_present(network)
        normalized = normalize_per_step(fisher, present.expand_as(fisher))
        steps = self.time_steps if self.time_steps is not None else list(range(fisher.shape[0]))
        layers = layer_names(network)
        new_rows = [
            {"epoch": epoch, "t": t, "layer": layer, "weights": kind,
             "fisher": float(fisher[k, l, w]), "fisher_normalized": float(normalized[k, l, w])}
            for k, t in enumerate(steps)
            for l, layer in enumerate(layers)
            for w, kind in enumerate(WEIGHT_KINDS)
            if present[l, w]
        ]
        self.rows = [r for r in self.rows if r["epoch"] != epoch] + new_rows
        table = pd.DataFrame(self.rows)
        if trainer.is_global_zero:
            self._write(trainer, table, layers)
        return table

    def _write(self, trainer: "pl.Trainer", table: pd.DataFrame, layers: list[str]) -> None:
        folder = analysis_dir(trainer, self.output_dir)
        write_csv(folder / f"{self.name}.csv", table)
        per_layer = table.groupby(["epoch", "layer", "weights"], sort=False).fisher_normalized.mean()
        valid = table.dropna(subset=["fisher_normalized"])  # steps without any gradient carry no share
        shares = valid.groupby(["epoch", "t", "weights"]).fisher_normalized.sum().groupby(["epoch", "weights"]).mean()
        summary = {
            str(epoch): {kind: float(shares.get((epoch, kind), 0.0)) for kind in WEIGHT_KINDS}
            for epoch in sorted(table.epoch.unique())
        }
        write_json(folder / f"{self.name}.json", {"readout": self.readout, "fisher": self.fisher,
                                                  "num_samples": self.num_samples,
                                                  "normalization": "per step over all layers' LW and RW",
                                                  "share_mean_over_t": summary})
        groups = {
            f"epoch {epoch}": {kind: [float(per_layer.get((epoch, layer, kind), 0.0)) for layer in layers]
                               for kind in WEIGHT_KINDS if kind in set(table.weights)}
            for epoch in sorted(table.epoch.unique())
        }
        save_figure(grouped_bars(groups, layers, "normalized Fisher (mean over t)"), folder / f"{self.name}.png")
        latest = max(summary, key=int)
        report(f"Fisher information epoch {latest}: LW share {summary[latest]['LW']:.3f}, RW share {summary[latest]['RW']:.3f}")

    # ------------------------------------------------------------ benchmark
    @classmethod
    def collect(cls, run_dir: Path, kind: str, config: dict, variant: dict) -> tuple[dict, dict]:
        return cls.result_file(Path(run_dir) / "analysis" / f"{cls.name}.csv")

    @classmethod
    def report(cls, runs: pd.DataFrame, folder: Path) -> list[ReportSection]:
        data = aggregate(fisher_per_seed(runs), ["dataset", "rule", "series", "epoch", "layer"], "fisher_normalized")
        return [figure_section(cls.report_order, "fig4_fisher", CAPTION, data, _plot, folder, CSV)]


def fisher_per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """Figure 4's data before averaging: normalized Fisher (mean over t) per run, epoch, layer and weights (LW/RW)."""
    parts = []
    for r in main_runs(runs).itertuples():
        if "fisher" not in r.paths:
            continue
        table = pd.read_csv(r.paths["fisher"])
        per_layer = table.groupby(["epoch", "layer", "weights"], sort=False).fisher_normalized.mean().reset_index()
        per_layer["series"] = per_layer.weights + "-" + r.arch.upper()
        parts.append(per_layer.assign(dataset=r.dataset, rule=r.rule, arch=r.arch, seed=r.seed))
    columns = ["dataset", "rule", "arch", "weights", "series", "epoch", "layer", "seed", "fisher_normalized"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def _plot(data: pd.DataFrame) -> "Optional[Figure]":
    panels = list(data.groupby(["dataset", "rule", "series"], sort=False))
    if not panels:
        return None
    figure, axes = panel_grid(len(panels))
    for ax, ((dataset, rule, series), group) in zip(axes, panels):
        error_lines(ax, group, "epoch", "layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{title(dataset)} {rule}: {series}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("normalized Fisher (mean over t)")
    return figure
