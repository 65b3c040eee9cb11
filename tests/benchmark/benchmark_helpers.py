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
    """Environment of a benchmark subprocess whose runs can import this module (for :class:`SleepEachEpoch`)."""
    import os

    here = str(Path(__file__).resolve().parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}


try:
    import lightning.pytorch as pl

    class SleepEachEpoch(pl.Callback):
        """Sleeps after each training epoch, so a test can kill a run between two epochs."""

        def __init__(self, seconds: float = 1.0) -> None:
            self.seconds = seconds

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            import time

            time.sleep(self.seconds)
except ImportError:  # pragma: no cover
    pass
