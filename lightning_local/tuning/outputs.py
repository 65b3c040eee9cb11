"""What a search leaves in its folder: ``trials.csv``, ``best.yaml`` and the plots (all written atomically)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional, Sequence

import optuna
import pandas as pd
import yaml

from lightning_local.analysis.io import save_figure, write_csv, write_json, write_text

from .space import Parameter, settings
from .study import best_trial, finished, trial_folder
from .trial import strip_trial_settings

TRIALS_CSV = "trials.csv"
BEST_CONFIG = "best.yaml"
BEST_JSON = "best.json"
HISTORY_PNG = "history.png"
IMPORTANCE_PNG = "importance.png"
TRIAL_ATTRS = ("epochs", "reason", "seconds")


def trials_frame(study: optuna.Study, output: Path) -> pd.DataFrame:
    """One row per trial: number, state, value, every parameter, epochs run, why it stopped, its folder."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        row = {"number": trial.number, "state": trial.state.name.lower(), "value": trial.value}
        row.update({f"param {key}": value for key, value in trial.params.items()})
        row.update({key: trial.user_attrs.get(key) for key in TRIAL_ATTRS})
        row["folder"] = str(trial_folder(output, trial.number))
        rows.append(row)
    return pd.DataFrame(rows)


def write_trials_csv(study: optuna.Study, output: Path) -> Path:
    return write_csv(Path(output) / TRIALS_CSV, trials_frame(study, output))


def best_config(study: optuna.Study, output: Path, header: str) -> Optional[Path]:
    """``best.yaml``: the best trial's complete ``fit`` config (its saved ``config.yaml`` less trial-only settings)."""
    best = best_trial(study)
    if best is None:
        return None
    saved = trial_folder(output, best.number) / "config.yaml"
    if not saved.is_file():  # a trial added to the storage by hand, not run by a search
        return None
    config = strip_trial_settings(yaml.safe_load(saved.read_text()))
    comment = "".join(f"# {line}\n" for line in header.format(number=best.number, value=best.value).splitlines())
    return write_text(Path(output) / BEST_CONFIG, comment + yaml.safe_dump(config, sort_keys=False))


def best_summary(study: optuna.Study, output: Path, space: Sequence[Parameter]) -> Optional[Path]:
    """``best.json``: the best trial's number, ``val_acc``, parameters and the config settings they make."""
    best = best_trial(study)
    if best is None:
        return None
    return write_json(Path(output) / BEST_JSON, {
        "trial": best.number, "best_val_acc": best.value, "trials": len(finished(study)),
        "params": best.params, "settings": settings(best.params, space)})


def write_plots(study: optuna.Study, output: Path) -> list[Path]:
    """Optimisation history and parameter importances (Optuna's matplotlib plots) as PNGs, where computable."""
    from matplotlib import pyplot
    from optuna.visualization import matplotlib as plots

    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        for name, plot in ((HISTORY_PNG, plots.plot_optimization_history), (IMPORTANCE_PNG, plots.plot_param_importances)):
            try:
                axes = plot(study)
            except (ValueError, RuntimeError):  # importances need two complete trials with varied values
                continue
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.tight_layout()
            written.append(save_figure(figure, Path(output) / name))
            pyplot.close(figure)
    return written
