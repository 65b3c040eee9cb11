"""A grid's runs as frames: one row per run (:func:`runs_frame`), the figures' per-seed data, and the
formatting the report and its Findings share.

The per-seed functions read each finished run's result files (named in its ``paths``) and pair
REC with FF where a figure needs it; the report averages them, the Findings test them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lightning_local.analysis.adversarial_cka import cka_difference

from .spec import Job
from .store import ResultStore


DATASET_TITLES = {"nmnist": "N-MNIST", "dvsgesture": "DVS Gesture", "timit": "TIMIT", "saccade_digits": "saccade digits"}


def title(dataset: str) -> str:
    """The dataset's name as the paper writes it."""
    return DATASET_TITLES.get(dataset, dataset)


def mean_std_n(values: pd.Series) -> dict:
    """Mean, sample std (0 for one value) and n of the non-missing values."""
    values = values.dropna().astype(float)
    n = len(values)
    return {"mean": float(values.mean()) if n else np.nan, "std": float(values.std(ddof=1)) if n > 1 else 0.0, "n": n}


def markdown(frame: pd.DataFrame) -> str:
    """A frame as a markdown table."""
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def runs_frame(jobs: list[Job], store: ResultStore) -> pd.DataFrame:
    """One row per job of the grid with its status, metrics and paths."""
    rows = {row["key"]: row for row in store.runs([j.key for j in jobs])}
    records = []
    for job in jobs:
        row = rows.get(job.key, {})
        records.append({
            "key": job.key, "kind": job.kind, "name": job.name, "dataset": job.dataset,
            "network": (job.config.get("model") or {}).get("synapse", "linear"), "rule": job.rule,
            "arch": job.arch, "seed": job.seed, "poison_rate": job.variant.get("poison_rate"),
            "pair": job.variant.get("pair"), "status": row.get("status", "pending"),
            "seconds": row.get("seconds"), "metrics": row.get("metrics") or {}, "paths": row.get("paths") or {},
            "error": row.get("error"), "run_dir": row.get("run_dir"),
        })
    return pd.DataFrame(records)


def cka_per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """Figure 2's data before averaging: one row per CKA test, reference and layer (same layer in both models)."""
    cka = runs[(runs.kind == "cka") & (runs.status == "done")]
    rows = [
        {"dataset": r.dataset, "arch": r.arch, "seed": r.seed, "rule": r.rule, "reference": e["reference"],
         "pair": f"{r.rule} vs {e['reference']}", "layer": e["model_layer"], "cka": e["cka"]}
        for r in cka.itertuples() for e in r.metrics.get("cka", []) if e["model_layer"] == e["reference_layer"]
    ]
    return pd.DataFrame(rows, columns=["dataset", "arch", "seed", "rule", "reference", "pair", "layer", "cka"])


def adversarial_cka_per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """Figure 3's data before averaging: CKA(clean, FGSM) of REC minus FF per dataset, rule, seed, epsilon, layer."""
    main = runs[(runs.kind == "train") & runs.poison_rate.isna() & (runs.status == "done")]
    tables = {(r.dataset, r.rule, r.arch, r.seed): r.paths["adversarial_cka"]
              for r in main.itertuples() if "adversarial_cka" in r.paths}
    rows = []
    for (dataset, rule, arch, seed), path in tables.items():
        if arch != "rec" or (dataset, rule, "ff", seed) not in tables:
            continue
        diff = cka_difference(pd.read_csv(path), pd.read_csv(tables[(dataset, rule, "ff", seed)]))
        rows += [{"dataset": dataset, "rule": rule, "seed": seed, "epsilon": d.epsilon, "layer": d.layer,
                  "cka": d.cka} for d in diff.itertuples()]
    return pd.DataFrame(rows, columns=["dataset", "rule", "seed", "epsilon", "layer", "cka"])


def fisher_per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """Figure 4's data before averaging: normalized Fisher (mean over t) per run, epoch, layer and weights (LW/RW)."""
    main = runs[(runs.kind == "train") & runs.poison_rate.isna() & (runs.status == "done")]
    parts = []
    for r in main.itertuples():
        if "fisher" not in r.paths:
            continue
        table = pd.read_csv(r.paths["fisher"])
        per_layer = table.groupby(["epoch", "layer", "weights"], sort=False).fisher_normalized.mean().reset_index()
        per_layer["series"] = per_layer.weights + "-" + r.arch.upper()
        parts.append(per_layer.assign(dataset=r.dataset, rule=r.rule, arch=r.arch, seed=r.seed))
    columns = ["dataset", "rule", "arch", "weights", "series", "epoch", "layer", "seed", "fisher_normalized"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def layer_order(frame: pd.DataFrame) -> list[str]:
    """The frame's layer names from input to output (hidden1, hidden2, ..., output)."""
    names = list(dict.fromkeys(frame.layer))
    return sorted(names, key=lambda n: (n == "output", n))
