"""Per-layer CKA between clean and FGSM-perturbed inputs (paper Figure 3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import lightning.pytorch as pl
import pandas as pd
import torch
from torch.utils.data import DataLoader

from lightning_local.benchmark.figures import error_lines, figure_section, panel_grid
from lightning_local.benchmark.results import aggregate, layer_order, main_runs, title

from ..module import SpikingClassifier
from .adversarial import Attack, AttackModel, fgsm
from .base import EvaluationAnalysis, ReportSection
from .cka import MIN_BATCH, MinibatchCKA
from .fgsm_transfer import DEFAULT_EPSILONS
from .io import report, save_figure, write_csv
from .plots import lines_per_series
from .representations import all_reduce_sum, batches, layer_names, representations

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

KEYS = ["epsilon", "layer"]
CSV = "fig3_adversarial_cka_rec_minus_ff.csv"
CAPTION = "Figure 3: CKA(clean, FGSM) of REC minus FF per layer and epsilon (paired by seed)."


def cka_difference(this: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """``this.cka - other.cka`` matched on (epsilon, layer), e.g. REC minus FF.

    Only pairs present in both tables are kept; columns: epsilon, layer,
    cka (the difference), cka_this, cka_other.
    """
    merged = this[KEYS + ["cka"]].merge(other[KEYS + ["cka"]], on=KEYS, suffixes=("_this", "_other"))
    if merged.empty:
        raise ValueError("The two CKA tables share no (epsilon, layer) pair: were they run with the same epsilons?")
    merged["cka"] = merged["cka_this"] - merged["cka_other"]
    return merged[KEYS + ["cka", "cka_this", "cka_other"]]


class AdversarialCKA(EvaluationAnalysis):
    """For each layer and epsilon, linear CKA between the SNN's representations of clean and FGSM inputs.

    Representations are the layers' spike trains concatenated over time (as in
    :class:`~lightning_local.analysis.CKAComparison`); FGSM inputs come from the
    same attack as :class:`~lightning_local.analysis.FGSMTransfer` (a trained ANN
    from ``ann_checkpoint``, the paper's, so FF and REC nets see the same perturbed samples). CKA near 1 means the perturbation leaves the layer's
    representation unchanged.

    Writes ``adversarial_cka_<stage>.csv`` (epsilon, layer, cka) and a line plot;
    with ``subtract`` (another run's CSV, e.g. the FF model's when this is REC) also
    ``adversarial_cka_<stage>_difference.csv`` (this minus that) and its plot.

    Args:
        epsilons: FGSM L-inf sizes.
        num_samples: number of evaluation examples (None: all); batches under 4 examples are skipped.
        attack_model: ``"ann"``, ``"counterpart"``, ``"smoothed_snn"`` or ``"snn"`` (None: ``"ann"`` with
            ``ann_checkpoint``, else ``"counterpart"``; see :class:`~lightning_local.analysis.FGSMTransfer`).
        slope: sigmoid slope of the smoothed SNN (``attack_model="smoothed_snn"`` only).
        ann_checkpoint: checkpoint of a conversion run on the same data, whose ANN crafts the attack.
        subtract: path of a CSV written by this callback for another model.
        stages: when to run: ``"validate"`` and/or ``"test"``.
        output_dir: folder for the result files (default ``<log_dir>/analysis``).
    """

    name = "adversarial_cka"
    key = "adversarial_cka"
    attacks_with_ann = True
    report_order = 50

    def __init__(
        self,
        epsilons: Sequence[float] = DEFAULT_EPSILONS,
        num_samples: Optional[int] = 1024,
        attack_model: Optional[AttackModel] = None,
        slope: float = 5.0,
        ann_checkpoint: Optional[str] = None,
        subtract: Optional[str] = None,
        stages: Sequence[str] = ("test",),
        output_dir: Optional[str] = None,
    ) -> None:
        super().__init__(stages, output_dir)
        if not epsilons or any(eps <= 0 for eps in epsilons):
            raise ValueError(f"epsilons must be positive (got {list(epsilons)}).")
        self.epsilons = sorted(float(e) for e in epsilons)
        self.num_samples = num_samples
        self.attack = Attack(attack_model, slope, ann_checkpoint)
        self.attack_model = self.attack.kind
        self.subtract = subtract

    def analyse(self, trainer: "pl.Trainer", pl_module: SpikingClassifier, stage: str, loader: DataLoader) -> None:
        attacker = self.attack.model(pl_module.network, pl_module.device)
        layers = layer_names(pl_module.network)
        accumulators = [MinibatchCKA(len(layers), len(layers)) for _ in self.epsilons]
        count = torch.zeros(1, dtype=torch.float64)
        for frames, labels in batches(loader, pl_module.device, self.num_samples):
            if frames.shape[0] < MIN_BATCH:
                continue
            with torch.no_grad():
                clean = representations(pl_module, frames)
            for epsilon, accumulator in zip(self.epsilons, accumulators):
                perturbed = fgsm(attacker, frames, labels, epsilon)
                with torch.no_grad():
                    accumulator.update(clean, representations(pl_module, perturbed))
            count += labels.shape[0]
        all_reduce_sum(trainer, [count, *(t for acc in accumulators for t in acc.state)])
        if count.item() == 0 or not trainer.is_global_zero:
            return
        table = pd.DataFrame(
            [
                {"epsilon": eps, "layer": layer, "cka": float(acc.compute()[i, i]), "num_samples": int(count.item())}
                for eps, acc in zip(self.epsilons, accumulators)
                for i, layer in enumerate(layers)
            ]
        )
        self._write(trainer, stage, table, layers, "", "CKA(clean, FGSM)")
        summary = ", ".join(f"{r.layer}={r.cka:.3f}" for r in table[table.epsilon == self.epsilons[-1]].itertuples())
        report(f"Clean vs FGSM CKA ({stage}, eps={self.epsilons[-1]:g}): {summary}")
        if self.subtract is not None:
            difference = cka_difference(table, pd.read_csv(self.subtract))
            self._write(trainer, stage, difference, layers, "_difference", f"CKA difference (minus {Path(self.subtract).name})")

    def _write(self, trainer: "pl.Trainer", stage: str, table: pd.DataFrame, layers: list[str], suffix: str, ylabel: str) -> None:
        write_csv(self.path(trainer, stage, f"{suffix}.csv"), table)
        series = {
            f"eps={eps:g}": [float(table[(table.epsilon == eps) & (table.layer == layer)].cka.mean()) for layer in layers]
            for eps in sorted(table.epsilon.unique())
        }
        figure = lines_per_series(layers, series, ylabel, f"clean vs FGSM ({self.attack_model}, {stage})")
        save_figure(figure, self.path(trainer, stage, f"{suffix}.png"))

    # ------------------------------------------------------------ benchmark
    @classmethod
    def check_options(cls, options: dict, architectures: list[str]) -> dict:
        if set(architectures) != {"ff", "rec"}:
            raise ValueError("adversarial_cka reports REC minus FF (Figure 3): list both architectures, ff and rec.")
        return super().check_options(options, architectures)

    @classmethod
    def collect(cls, run_dir: Path, kind: str, config: dict, variant: dict) -> tuple[dict, dict]:
        return cls.result_file(Path(run_dir) / "analysis" / f"{cls.name}_test.csv")

    @classmethod
    def report(cls, runs: pd.DataFrame, folder: Path) -> list[ReportSection]:
        data = aggregate(adversarial_cka_per_seed(runs), ["dataset", "rule", "epsilon", "layer"], "cka")
        return [figure_section(cls.report_order, "fig3_adversarial_cka", CAPTION, data, _plot, folder, CSV)]


def adversarial_cka_per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """Figure 3's data before averaging: CKA(clean, FGSM) of REC minus FF per dataset, rule, seed, epsilon, layer."""
    tables = {(r.dataset, r.rule, r.arch, r.seed): r.paths["adversarial_cka"]
              for r in main_runs(runs).itertuples() if "adversarial_cka" in r.paths}
    rows = []
    for (dataset, rule, arch, seed), path in tables.items():
        if arch != "rec" or (dataset, rule, "ff", seed) not in tables:
            continue
        diff = cka_difference(pd.read_csv(path), pd.read_csv(tables[(dataset, rule, "ff", seed)]))
        rows += [{"dataset": dataset, "rule": rule, "seed": seed, "epsilon": d.epsilon, "layer": d.layer,
                  "cka": d.cka} for d in diff.itertuples()]
    return pd.DataFrame(rows, columns=["dataset", "rule", "seed", "epsilon", "layer", "cka"])


def _plot(data: pd.DataFrame) -> "Optional[Figure]":
    panels = list(data.groupby(["dataset", "rule"], sort=False))
    if not panels:
        return None
    figure, axes = panel_grid(len(panels))
    for ax, ((dataset, rule), group) in zip(axes, panels):
        group = group.assign(eps=group.epsilon.map(lambda e: f"eps={e:g}"))
        error_lines(ax, group, "layer", "eps", layer_order(group))
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(f"{title(dataset)} {rule}: REC - FF", fontsize=10)
        ax.set_ylabel("CKA(clean, FGSM) difference")
    return figure
