"""Per-layer CKA between clean and FGSM-perturbed inputs (paper Figure 3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import lightning.pytorch as pl
import pandas as pd
import torch
from torch.utils.data import DataLoader

from ..module import SpikingClassifier
from .adversarial import Attack, AttackModel, fgsm
from .base import EvaluationAnalysis
from .cka import MIN_BATCH, MinibatchCKA
from .fgsm_transfer import DEFAULT_EPSILONS
from .io import report, save_figure, write_csv
from .plots import lines_per_series
from .representations import all_reduce_sum, batches, layer_names, representations

KEYS = ["epsilon", "layer"]


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
