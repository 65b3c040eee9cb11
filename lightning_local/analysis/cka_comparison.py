"""Layer-by-layer CKA between the model under evaluation and reference checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from ..module import SpikingClassifier
from .base import EvaluationAnalysis
from .cka import MIN_BATCH, MinibatchCKA
from .io import report, save_figure, write_csv, write_json
from .plots import cka_heatmaps
from .representations import all_reduce_sum, batches, layer_names, representations

SELF = "self"


class CKAComparison(EvaluationAnalysis):
    """Minibatch linear CKA (unbiased HSIC) between every layer of this model and of each reference.

    A layer's representation is its spike train concatenated over time,
    ``[b, T * n_l]``; HSIC is accumulated over the evaluation batches (see
    :mod:`lightning_local.analysis.cka`) for the first ``num_samples`` examples
    of the validation/test split (all of them if the split is smaller). Batches
    with fewer than 4 examples (possible as the last one) are skipped.

    Writes ``cka_<stage>.csv`` (long format: reference, model_layer,
    reference_layer, cka), ``cka_<stage>.json`` (one matrix per reference) and
    ``cka_<stage>.png`` (heatmaps).

    Args:
        references: checkpoint paths of :class:`SpikingClassifier` models to compare
            with; empty compares the model with itself.
        num_samples: number of evaluation examples (paper: 4096).
        stages: when to run: ``"validate"`` and/or ``"test"``.
        output_dir: folder for the result files (default ``<log_dir>/analysis``).
    """

    name = "cka"

    def __init__(
        self,
        references: Sequence[str] = (),
        num_samples: int = 4096,
        stages: Sequence[str] = ("test",),
        output_dir: Optional[str] = None,
    ) -> None:
        super().__init__(stages, output_dir)
        if num_samples < MIN_BATCH:
            raise ValueError(f"num_samples must be at least {MIN_BATCH} (got {num_samples}).")
        self.references = list(references)
        self.num_samples = num_samples
        self._loaded: dict[str, SpikingClassifier] = {}

    def _reference_models(self, pl_module: SpikingClassifier) -> dict[str, SpikingClassifier]:
        if not self.references:
            return {SELF: pl_module}
        models = {}
        for path in self.references:
            if path not in self._loaded:
                self._loaded[path] = SpikingClassifier.load_from_checkpoint(path, map_location=pl_module.device).eval()
            model = self._loaded[path].to(pl_module.device)
            if model.network.num_inputs != pl_module.network.num_inputs:
                raise ValueError(
                    f"Reference {path} expects {model.network.num_inputs} inputs per step but the data has "
                    f"{pl_module.network.num_inputs}: compare models trained on the same data."
                )
            models[path] = model
        return models

    def analyse(self, trainer: "pl.Trainer", pl_module: SpikingClassifier, stage: str, loader: DataLoader) -> None:
        references = self._reference_models(pl_module)
        own_layers = layer_names(pl_module.network)
        ref_layers = {name: layer_names(model.network) for name, model in references.items()}
        accumulators = {name: MinibatchCKA(len(own_layers), len(ref_layers[name])) for name in references}
        seen = 0
        with torch.no_grad():
            for frames, _ in batches(loader, pl_module.device, self.num_samples):
                if frames.shape[0] < MIN_BATCH:
                    continue
                own = representations(pl_module, frames)
                for name, model in references.items():
                    theirs = own if model is pl_module else representations(model, frames)
                    accumulators[name].update(own, theirs)
                seen += frames.shape[0]
        count = torch.tensor([float(seen)])
        all_reduce_sum(trainer, [count, *(t for acc in accumulators.values() for t in acc.state)])
        if count.item() == 0 or not trainer.is_global_zero:
            return
        matrices = {name: acc.compute().numpy() for name, acc in accumulators.items()}
        rows = [
            {"reference": name, "model_layer": own_layers[i], "reference_layer": ref_layers[name][j], "cka": float(m[i, j])}
            for name, m in matrices.items()
            for i in range(m.shape[0])
            for j in range(m.shape[1])
        ]
        write_csv(self.path(trainer, stage, ".csv"), rows)
        write_json(
            self.path(trainer, stage, ".json"),
            {
                "num_samples": int(count.item()),
                "model_layers": own_layers,
                "references": {
                    name: {"layers": ref_layers[name], "matrix": m.tolist()} for name, m in matrices.items()
                },
            },
        )
        save_figure(cka_heatmaps(matrices, own_layers, ref_layers), self.path(trainer, stage, ".png"))
        for name, m in matrices.items():
            diagonal = ", ".join(f"{own_layers[i]}={m[i, i]:.3f}" for i in range(min(m.shape)))
            report(f"CKA ({stage}, {int(count.item())} samples) vs {name}: diagonal {diagonal}")
