"""Layer-by-layer CKA between the model under evaluation and reference checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import lightning.pytorch as pl
import pandas as pd
import torch
from torch.utils.data import DataLoader

from lightning_local.benchmark.figures import error_lines, figure_section, panel_grid
from lightning_local.benchmark.results import aggregate, layer_order, title

from ..module import SpikingClassifier
from .base import EvaluationAnalysis, ReportSection
from .cka import MIN_BATCH, MinibatchCKA
from .io import report, save_figure, write_csv, write_json
from .plots import cka_heatmaps
from .representations import all_reduce_sum, batches, layer_names, representations

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from lightning_local.benchmark.spec import Grid

SELF = "self"
CSV = "fig2_cka.csv"
CAPTION = ("Figure 2: layer-wise linear CKA between rules and between conversion and each rule "
           "(same layer in both models, mean ± std over seeds).")


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

    In a benchmark spec (``cka: {conversion: CONFIG, architectures: [...], num_samples: N}``) it runs as
    tests of their own (Figure 2): per architecture and seed, every rule against the later rules and
    the seed's ANN->SNN conversion run (``conversion``: its config template; empty: no conversion).

    Args:
        references: checkpoint paths of :class:`SpikingClassifier` models to compare
            with; empty compares the model with itself.
        num_samples: number of evaluation examples (paper: 4096).
        stages: when to run: ``"validate"`` and/or ``"test"``.
        output_dir: folder for the result files (default ``<log_dir>/analysis``).
    """

    name = "cka"
    key = "cka"
    benchmark_options = frozenset({"conversion", "architectures"})
    on_training_runs = False
    report_order = 40

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

    # ------------------------------------------------------------ benchmark
    @classmethod
    def check_options(cls, options: dict, architectures: list[str]) -> dict:
        from lightning_local.benchmark.spec import DEFAULT_CONVERSION_CONFIG  # noqa: PLC0415

        options = super().check_options(options, architectures)
        chosen = options.get("architectures", architectures)
        chosen = [str(a).lower() for a in (chosen if isinstance(chosen, list) else [chosen])]
        if not chosen or not set(chosen) <= set(architectures):
            raise ValueError(f"cka.architectures {chosen} must be among the spec's architectures {architectures}.")
        return {**options, "conversion": options.get("conversion", DEFAULT_CONVERSION_CONFIG), "architectures": chosen}

    @classmethod
    def conversion_config(cls, options: dict) -> Optional[str]:
        return options.get("conversion") or None

    @classmethod
    def jobs(cls, options: dict, grid: "Grid") -> list:
        """Figure 2: per arch and seed, every rule against the later rules and the seed's converted SNN (CKA is
        symmetric, so each pair is tested once)."""
        compared = {seed: job.key for seed, job in grid.conversions.items()} if options.get("conversion") else {}
        rules = grid.spec.rules
        jobs = []
        for arch in options["architectures"]:
            for seed in grid.spec.seeds:
                for i, rule in enumerate(rules):
                    references = [(r, grid.models[(r, arch, seed)]) for r in rules[i + 1:]]
                    if seed in compared:
                        references.append(("conversion", compared[seed]))
                    if not references:
                        continue
                    own = grid.models[(rule, arch, seed)]
                    config = grid.base_config(rule, arch, seed)
                    config.setdefault("trainer", {})["callbacks"] = [grid.callback(cls.key, {
                        **options, "references": [grid.checkpoint(key) for _, key in references]})]
                    config["ckpt_path"] = grid.checkpoint(own)
                    variant = {"references": [r for r, _ in references], "reference_keys": [k for _, k in references]}
                    jobs.append(grid.job("cka", rule, arch, seed, config, variant, deps=(own, *(k for _, k in references))))
        return jobs

    @classmethod
    def collect(cls, run_dir: Path, kind: str, config: dict, variant: dict) -> tuple[dict, dict]:
        path = Path(run_dir) / "analysis" / f"{cls.name}_test.csv"
        if kind != "cka":  # the kind of the tests this analysis adds to a grid
            return {}, {}
        if not path.is_file():
            raise RuntimeError(f"the CKA test wrote no {path}")
        callback = config["trainer"]["callbacks"][0]["init_args"]
        rule_of = dict(zip(callback["references"], variant["references"]))
        entries = [{"reference": rule_of.get(r.reference, r.reference), "model_layer": r.model_layer,
                    "reference_layer": r.reference_layer, "cka": float(r.cka)} for r in pd.read_csv(path).itertuples()]
        return {"cka": entries}, {"cka": str(path)}

    @classmethod
    def report(cls, runs: pd.DataFrame, folder: Path) -> list[ReportSection]:
        data = aggregate(cka_per_seed(runs), ["dataset", "arch", "pair", "layer"], "cka")
        return [figure_section(cls.report_order, "fig2_cka", CAPTION, data, _plot, folder, CSV)]


def cka_per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """Figure 2's data before averaging: one row per CKA test, reference and layer (same layer in both models)."""
    cka = runs[(runs.kind == "cka") & (runs.status == "done")]
    rows = [
        {"dataset": r.dataset, "arch": r.arch, "seed": r.seed, "rule": r.rule, "reference": e["reference"],
         "pair": f"{r.rule} vs {e['reference']}", "layer": e["model_layer"], "cka": e["cka"]}
        for r in cka.itertuples() for e in r.metrics.get("cka", []) if e["model_layer"] == e["reference_layer"]
    ]
    return pd.DataFrame(rows, columns=["dataset", "arch", "seed", "rule", "reference", "pair", "layer", "cka"])


def _plot(data: pd.DataFrame) -> "Optional[Figure]":
    panels = list(data.groupby(["dataset", "arch"], sort=False))
    if not panels:
        return None
    figure, axes = panel_grid(len(panels))
    for ax, ((dataset, arch), group) in zip(axes, panels):
        error_lines(ax, group, "layer", "pair", layer_order(group))
        ax.set_title(f"{title(dataset)} {arch.upper()}: layer-wise CKA", fontsize=10)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("linear CKA")
    return figure
