"""Helpers of the benchmark tests: tiny specs written to tmp folders."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def tiny_spec(root: Path, **changes) -> dict:
    """A spec of 1-2 second runs on ``root``: T = 10, 9x9x2 inputs, 16-8 hidden, 2 epochs of 3 batches."""
    spec = {
        "name": "tiny",
        "config": str(REPO / "configs" / "nmnist" / "{rule}_{arch}.yaml"),
        "datasets": {"saccade_digits": {
            "root": str(root),
            "overrides": {"data": {
                "class_path": "lightning_local.data.saccade_digits.SaccadeDigits",
                "init_args": {"n_time_bins": 10, "downsample": 4, "batch_size": 16, "max_samples_per_class": 10}}},
        }},
        "rules": ["bptt"],
        "architectures": ["ff"],
        "seeds": [0],
        "overrides": {"model.hidden_sizes": [16, 8],
                      "trainer": {"max_epochs": 2, "limit_train_batches": 3, "limit_val_batches": 1}},
        "analyses": {"accuracy": {}},
    }
    spec.update(changes)
    return spec


def write_spec(folder: Path, spec: dict, name: str = "spec.yaml") -> Path:
    path = Path(folder) / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def benchmark_env() -> dict:
    """Environment of a benchmark subprocess whose runs can import this module and ``support`` (:class:`SleepEachEpoch`)."""
    import os

    here = Path(__file__).resolve().parent
    paths = [str(here), str(here.parent), os.environ.get("PYTHONPATH")]  # benchmark_helpers and support.*
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}


from support.callbacks import SleepEachEpoch  # noqa: E402,F401  (runs name it benchmark_helpers.SleepEachEpoch)

__all__ = ["REPO", "SleepEachEpoch", "benchmark_env", "tiny_spec", "write_spec"]
