"""SNN accuracy under FGSM perturbations crafted on its ANN counterpart (paper Table IV)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import lightning.pytorch as pl
import pandas as pd
import torch
from torch.utils.data import DataLoader

from lightning_local.benchmark import paper
from lightning_local.benchmark.results import cell, main_runs, mean_std_n, setting_table_section

from ..module import SpikingClassifier
from .adversarial import Attack, AttackModel, fgsm
from .base import EvaluationAnalysis, ReportSection
from .io import report, save_figure, write_csv, write_json
from .plots import accuracy_vs_epsilon
from .representations import all_reduce_sum, batches, evaluate

DEFAULT_EPSILONS = (0.001, 0.005, 0.01, 0.02, 0.05)
CSV = "table4_fgsm.csv"


class FGSMTransfer(EvaluationAnalysis):
    """Accuracy of the SNN on FGSM inputs crafted on a differentiable counterpart, per epsilon.

    For every evaluation batch and epsilon, ``torchattacks.FGSM`` perturbs the
    binary frames against the attack model (the paper's: a trained ReLU ANN,
    whose sign perturbation lands on every frame alike; see
    :mod:`lightning_local.analysis.adversarial` for the attack models and the
    ``[0, 1]`` input scaling) and the SNN classifies the
    perturbed frames with its usual evaluation forward pass. Row ``epsilon = 0`` is the clean accuracy.
    The attack model's own accuracy is reported too (it shows the attack works).
    Runs its own pass over the evaluation dataloader with inference mode off, so
    it works under ``trainer.validate``/``trainer.test`` as they are.

    Writes ``fgsm_<stage>.csv`` (epsilon, snn_accuracy, attack_model_accuracy,
    num_samples), the same as JSON, and ``fgsm_<stage>.png``.

    Args:
        epsilons: L-inf sizes of the perturbation (paper: 0.001 ... 0.05).
        num_samples: evaluate the first ``num_samples`` examples (None: all).
        attack_model: ``"ann"`` (the paper's: a trained ANN from ``ann_checkpoint``, the same perturbed
            samples for every model), ``"counterpart"`` (this SNN's own weights as a ReLU ANN),
            ``"smoothed_snn"`` (the SNN with sigmoid spikes) or ``"snn"`` (white-box through the SNN's
            surrogate gradient); None: ``"ann"`` with ``ann_checkpoint``, else ``"counterpart"``.
        slope: sigmoid slope of the smoothed SNN (``attack_model="smoothed_snn"`` only).
        ann_checkpoint: checkpoint of a conversion run on the same data, whose ANN crafts the attack.
        stages: when to run: ``"validate"`` and/or ``"test"``.
        output_dir: folder for the result files (default ``<log_dir>/analysis``).
    """

    name = "fgsm"
    key = "fgsm"
    attacks_with_ann = True
    report_order = 20

    def __init__(
        self,
        epsilons: Sequence[float] = DEFAULT_EPSILONS,
        num_samples: Optional[int] = None,
        attack_model: Optional[AttackModel] = None,
        slope: float = 5.0,
        ann_checkpoint: Optional[str] = None,
        stages: Sequence[str] = ("test",),
        output_dir: Optional[str] = None,
    ) -> None:
        super().__init__(stages, output_dir)
        if any(eps < 0 for eps in epsilons):
            raise ValueError(f"FGSM epsilons must be non-negative (got {list(epsilons)}).")
        self.epsilons = [0.0] + sorted(float(e) for e in epsilons if e > 0)
        self.num_samples = num_samples
        self.attack = Attack(attack_model, slope, ann_checkpoint)
        self.attack_model = self.attack.kind

    def analyse(self, trainer: "pl.Trainer", pl_module: SpikingClassifier, stage: str, loader: DataLoader) -> None:
        attacker = self.attack.model(pl_module.network, pl_module.device)
        snn_correct = torch.zeros(len(self.epsilons), dtype=torch.float64)
        attacker_correct = torch.zeros_like(snn_correct)
        count = torch.zeros(1, dtype=torch.float64)
        for frames, labels in batches(loader, pl_module.device, self.num_samples):
            for k, epsilon in enumerate(self.epsilons):
                perturbed = fgsm(attacker, frames, labels, epsilon)
                with torch.no_grad():
                    snn_correct[k] += (evaluate(pl_module, perturbed).logits.argmax(-1) == labels).sum().cpu()
                    attacker_correct[k] += (attacker(perturbed).argmax(-1) == labels).sum().cpu()
            count += labels.shape[0]
        all_reduce_sum(trainer, [snn_correct, attacker_correct, count])
        if count.item() == 0 or not trainer.is_global_zero:
            return
        n = count.item()
        rows = [
            {"epsilon": eps, "snn_accuracy": float(s / n), "attack_model_accuracy": float(a / n), "num_samples": int(n)}
            for eps, s, a in zip(self.epsilons, snn_correct.tolist(), attacker_correct.tolist())
        ]
        write_csv(self.path(trainer, stage, ".csv"), rows)
        write_json(self.path(trainer, stage, ".json"), {**self.attack.describe(), "rows": rows})
        curves = {
            "SNN": [r["snn_accuracy"] for r in rows],
            f"attack model ({self.attack_model})": [r["attack_model_accuracy"] for r in rows],
        }
        save_figure(accuracy_vs_epsilon(self.epsilons, curves, f"FGSM via {self.attack_model} ({stage})"),
                    self.path(trainer, stage, ".png"))
        table = ", ".join(f"eps={r['epsilon']:g}: {r['snn_accuracy']:.3f}" for r in rows)
        report(f"FGSM ({stage}, {int(n)} samples, attack on {self.attack_model}) SNN accuracy: {table}")

    # ------------------------------------------------------------ benchmark
    @classmethod
    def collect(cls, run_dir: Path, kind: str, config: dict, variant: dict) -> tuple[dict, dict]:
        path = Path(run_dir) / "analysis" / "fgsm_test.csv"
        if not path.is_file():
            return {}, {}
        table = pd.read_csv(path)
        return {"fgsm": {f"{e:g}": float(a) for e, a in zip(table.epsilon, table.snn_accuracy)}}, {"fgsm": str(path)}

    @classmethod
    def report(cls, runs: pd.DataFrame, folder: Path) -> list[ReportSection]:
        intro = ["## Table IV: accuracy (%) under FGSM per epsilon", "",
                 "Epsilon 0 is the clean accuracy on the samples the attack used (`fgsm.num_samples`), so it can "
                 "differ from Table III.", ""]
        return [setting_table_section(cls.report_order, table_iv(runs), "epsilon", _cell, folder, CSV, intro)]


def table_iv(runs: pd.DataFrame) -> pd.DataFrame:
    """Accuracy % under FGSM per dataset, rule, arch and epsilon (epsilon 0 = clean), over seeds."""
    rows = []
    for (dataset, rule, arch), group in main_runs(runs).groupby(["dataset", "rule", "arch"], sort=False):
        per_run = [m["fgsm"] for m in group.metrics if "fgsm" in m]
        for eps in sorted({float(e) for r in per_run for e in r}):
            stats = mean_std_n(pd.Series([100 * r[f"{eps:g}"] for r in per_run if f"{eps:g}" in r]))
            rows.append({"dataset": dataset, "rule": rule, "arch": arch, "epsilon": eps, **stats,
                         "paper": paper.table_iv(rule, dataset, arch, eps)})
    return pd.DataFrame(rows, columns=["dataset", "rule", "arch", "epsilon", "mean", "std", "n", "paper"])


def _cell(row) -> str:
    return cell(row["mean"], row["std"], int(row.n), None if pd.isna(row.paper) else row.paper)
