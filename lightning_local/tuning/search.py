"""The search loop of ``lightning-local tune``: ask Optuna for trials, run them on an executor, tell the results.

The driver is the only process that asks and tells; trials report their epochs to the
storage themselves. Executors are the benchmark's (local worker threads, or Ray tasks on a
cluster), so ``--executor ray`` runs trials in parallel with the same storage as the single
source of truth. The budget is ``trials`` finished trials (complete, pruned or failed) in the
study, counted over every search that worked on it; a resumed search first continues the
trials a killed one left running, then asks for the rest.

Sampler: TPE (seeded, ``constant_liar`` so parallel trials spread out) after a random start of
``max(2, trials // 4)`` trials; the first trial of a new study is the base config's own values
(those inside the space), so the search starts from the untuned settings and never reports
worse than them on validation. Pruners: ``median`` (Optuna's MedianPruner: stop a trial whose
``val_acc`` at an epoch is below the median of earlier trials at that epoch, after 3 trials and
from the second epoch), ``halving`` (asynchronous successive halving from one epoch, factor 3)
or ``none``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import optuna

from lightning_local.benchmark.runner import terminate_children

from . import outputs
from .space import Parameter, distributions, space_yaml, starting_point
from .reporting import make_pruner
from .study import FINISHED, METRIC, StudyError, abandoned, best_trial, claim, open_study, set_attrs, trial_folder
from .trial import run_trial, trial_command



@dataclass
class SearchSetup:
    """Everything one search needs (what ``lightning-local tune`` parsed).

    Attributes:
        config: the base ``fit`` config (absolute path).
        fit_args: further ``fit`` flags, applied to every trial before its own values.
        resolved: the complete config those two give (``--print_config``), for the starting point.
        space: the searched parameters.
        output: the study folder (trials, ``best.yaml``, ``trials.csv``, plots).
        study: the study's name.
        storage: the Optuna storage URL.
        trials: the budget of finished trials.
        timeout: seconds after which no new trial starts (running ones finish); None: no limit.
        pruner: one of :data:`PRUNERS`.
        seed: the sampler's seed.
    """

    config: Path
    fit_args: list[str]
    resolved: dict
    space: list[Parameter]
    output: Path
    study: str
    storage: str
    trials: int
    timeout: Optional[float] = None
    pruner: str = "median"
    seed: int = 0
    cwd: Path = field(default_factory=Path.cwd)

    def record(self) -> dict:
        """What the study stores of its setup (a rerun must match it to continue the study)."""
        return {"config": str(self.config), "fit_args": list(self.fit_args), "metric": METRIC,
                "space": {p.key: p.as_dict() for p in self.space}}


def make_sampler(trials: int, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, trials // 4), constant_liar=True)


def _header(setup: SearchSetup, count: int) -> str:
    epochs = (setup.resolved.get("trainer") or {}).get("max_epochs")
    return (f"Tuned by lightning-local tune: study {setup.study}, trial {{number}} of {count} "
            f"(best {METRIC} {{value:.4f}}); budget {setup.trials} trials x {epochs} epochs, pruner {setup.pruner}.\n"
            f"Base config {setup.config}; fit flags: {' '.join(setup.fit_args) or '(none)'}.\n"
            f"lightning-local fit --config THIS_FILE")


def write_outputs(study: optuna.Study, setup: SearchSetup) -> dict[str, Optional[Path]]:
    """``trials.csv``, ``best.yaml``, ``space.yaml`` and the plots from the study as it is now."""
    written: dict[str, Optional[Path]] = {"trials": outputs.write_trials_csv(study, setup.output)}
    written["best"] = outputs.best_config(study, setup.output, _header(setup, len(study.trials)))
    written["summary"] = outputs.best_summary(study, setup.output, setup.space)
    outputs.write_text(setup.output / "space.yaml", space_yaml(setup.space))
    for path in outputs.write_plots(study, setup.output):
        written[path.stem] = path
    return written


def _tell(study: optuna.Study, number: int, trial_id: int, result: dict) -> None:
    set_attrs(study, trial_id, {"epochs": result.get("epochs"), "reason": result.get("reason", ""),
                                "seconds": round(float(result.get("seconds", 0.0)), 1)})
    state = result["state"]
    if state == "complete":
        study.tell(number, result["value"])
    elif state == "pruned":
        study.tell(number, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(number, state=optuna.trial.TrialState.FAIL)


def _counted(study: optuna.Study) -> int:
    """Trials finished or running (in any search on this storage): the budget already spoken for."""
    return len(study.get_trials(deepcopy=False, states=(*FINISHED, optuna.trial.TrialState.RUNNING)))


def run_search(setup: SearchSetup, executor: Any, log: Callable[[str], None] = print) -> dict:
    """Run the search to its budget (or timeout); returns counts, the best trial and the written files."""
    setup.output.mkdir(parents=True, exist_ok=True)
    study = open_study(setup.storage, setup.study, setup.output, setup.record(),
                       make_sampler(setup.trials, setup.seed), make_pruner(setup.pruner))
    if not study.trials:
        study.enqueue_trial(starting_point(setup.space, setup.resolved))
    resumable = abandoned(study)
    done_before = len(study.get_trials(deepcopy=False, states=FINISHED))
    log(f"tune {setup.study}: {setup.trials} trials, {done_before} finished earlier, {len(resumable)} to resume; "
        f"{len(setup.space)} parameters; {executor.describe()}; folder {setup.output}")
    started = time.time()
    in_flight: dict[Any, tuple[int, int]] = {}
    counts = {"complete": 0, "pruned": 0, "failed": 0}

    def start(trial_id: int, number: int, params: dict, note: str = "") -> None:
        claim(study, trial_id)
        folder = trial_folder(setup.output, number)
        command = trial_command(setup.config, setup.fit_args, params, setup.space, folder, setup.storage,
                                setup.study, trial_id, setup.pruner)
        set_attrs(study, trial_id, {"command": " ".join(command)})
        handle = executor.submit(run_trial, setup.storage, setup.study, trial_id, command, str(folder), str(setup.cwd))
        in_flight[handle] = (number, trial_id)
        outputs.write_trials_csv(study, setup.output)  # running trials are listed too
        log(f"[trial {number}] start{note}: " + ", ".join(f"{k}={_short(v)}" for k, v in params.items()))

    def may_start() -> bool:
        in_time = setup.timeout is None or time.time() - started < setup.timeout
        return in_time and _counted(study) < setup.trials

    try:
        while True:
            while len(in_flight) < executor.capacity and (resumable or may_start()):
                if resumable:
                    frozen = resumable.pop(0)
                    start(frozen._trial_id, frozen.number, frozen.params, " (resumed)")
                else:
                    trial = study.ask(distributions(setup.space))
                    start(trial._trial_id, trial.number, trial.params)
            if not in_flight:
                break
            for handle, result in executor.wait(list(in_flight)):
                number, trial_id = in_flight.pop(handle)
                if result["state"] == "interrupted":
                    continue
                _tell(study, number, trial_id, result)
                counts[result["state"]] += 1
                outputs.write_trials_csv(study, setup.output)
                value = "" if result.get("value") is None else f" {METRIC} {result['value']:.4f}"
                best = best_trial(study)
                log(f"[trial {number}] {result['state']}{value} after {result.get('epochs', 0)} epoch(s) in "
                    f"{result.get('seconds', 0):.0f} s{': ' + result['reason'] if result.get('reason') else ''}"
                    + (f" | best: trial {best.number} {best.value:.4f}" if best else ""))
                if result["state"] == "failed" and not any(t.state != optuna.trial.TrialState.FAIL
                                                           for t in study.get_trials(deepcopy=False, states=FINISHED)):
                    terminate_children()  # the others in flight stay running in the study: a rerun resumes them
                    raise StudyError(f"the first trial failed, so the others would too: {result['reason']} "
                                     f"(its log: {trial_folder(setup.output, number) / 'log.txt'}).")
    except KeyboardInterrupt:
        log("tune: interrupted - ending the trials in flight; rerun the same command to resume them")
        terminate_children()
        raise
    finally:
        executor.shutdown()
    written = write_outputs(study, setup)
    best = best_trial(study)
    return {"counts": counts, "finished": len(study.get_trials(deepcopy=False, states=FINISHED)),
            "seconds": time.time() - started, "best": best, "files": written}


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
