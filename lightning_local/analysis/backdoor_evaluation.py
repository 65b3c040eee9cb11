"""Attack success rate of a backdoor: metric and test-time callback (paper Table V)."""

from __future__ import annotations

from typing import Any, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from matplotlib.figure import Figure
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchmetrics import Metric

from .io import analysis_dir, report, save_figure, write_csv, write_json
from .representations import all_reduce_sum, batches, evaluate, rank_shard


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


class BackdoorEvaluation(Callback):
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

    Args:
        output_dir: folder for the result files (default ``<log_dir>/analysis``).
    """

    name = "backdoor"

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


def _bars(result: dict[str, Any]) -> Figure:
    figure = Figure(figsize=(3.2, 3))
    ax = figure.subplots()
    ax.bar(["clean acc", "under attack", "ASR", "no trigger"],
           [result["clean_accuracy"], result["accuracy_under_attack"], result["attack_success_rate"], result["asr_baseline"]],
           color=["tab:blue", "tab:cyan", "tab:red", "tab:gray"])
    ax.set_ylim(0, 1)
    ax.set_title(f"{result['source']}->{result['target']}, rate {result['poison_rate']:g}")
    return figure
