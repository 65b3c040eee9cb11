"""``lightning-local tune``: hyper-parameter search for one rule's config, the same budget for every rule.

Examples::

    lightning-local tune --config configs/nmnist/eprop_ff.yaml --data.init_args.root DIR --trials 20
    lightning-local tune --config configs/nmnist/bptt_rec.yaml --data.init_args.root DIR --trainer.max_epochs 10 \\
        --trials 30 --timeout 3600 --pruner halving --output tune/bptt_rec
    lightning-local tune --config my_rule.yaml --space my_space.yaml --trials 10          # a rule without a space
    lightning-local tune --config configs/nmnist/decolle_ff.yaml --trials 40 --executor ray --ray-address auto \\
        --storage postgresql://user@host/optuna                                               # trials on a cluster

Every trial is a normal ``lightning-local fit`` (its own folder under OUTPUT/trials/, with
checkpoints, metrics.csv and config.yaml) scored by its best val_acc; the test split is never
evaluated. Any flag not listed below goes to every trial's ``fit`` (e.g. --data.init_args.root,
--trainer.max_epochs). The space is the learner's own (Learner.search_space); --space FILE
replaces it. Rerunning the same command continues the study: finished trials are kept, a trial
a killed search left running resumes from its last checkpoint, and only the missing trials run.
Output: OUTPUT/best.yaml (the best trial's complete config: lightning-local fit --config
OUTPUT/best.yaml), trials.csv, history.png, importance.png, space.yaml, study.sqlite3.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from .subcommand import PROG, SubcommandParser, add_executor_arguments, make_executor


def parser() -> SubcommandParser:
    p = SubcommandParser("tune", __doc__)
    p.add_argument("--config", required=True, help="the rule's fit config (YAML), e.g. configs/nmnist/bptt_ff.yaml")
    p.add_argument("--trials", type=int, default=20, help="budget: finished trials in the study (default 20)")
    p.add_argument("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    p.add_argument("--study", default=None, help="study name (default: the config's file name)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite:///OUTPUT/study.sqlite3)")
    p.add_argument("--output", default=None, help="study folder (default: tune/<study>)")
    p.add_argument("--space", default=None, help="search space YAML replacing the learner's (key: {low, high, log} "
                                                 "or {choices: [...]})")
    p.add_argument("--pruner", choices=("median", "halving", "none"), default="median")
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    add_executor_arguments(p, "trials")
    p.add_argument("--trial-cpus", type=float, default=1, help="ray: CPUs each trial asks for (default 1)")
    p.add_argument("--trial-gpus", type=float, default=0, help="ray: GPUs each trial asks for (default 0)")
    return p


def setup_from(options: argparse.Namespace, fit_args: list[str]):
    """The :class:`~lightning_local.tuning.SearchSetup` of a parsed command line (every check done here)."""
    from lightning_local.cli.resolve import ConfigError, resolve_config
    from lightning_local.tuning import SearchSetup, StudyError, learner_space, load_space_file
    from lightning_local.tuning.space import check_keys
    from lightning_local.tuning.study import default_storage

    config = Path(options.config)
    if not config.is_file():
        raise StudyError(f"config {config} does not exist: pass --config PATH.yaml (e.g. configs/nmnist/bptt_ff.yaml).")
    if options.trials < 1:
        raise StudyError(f"--trials must be at least 1 (got {options.trials}).")
    if options.timeout is not None and options.timeout <= 0:
        raise StudyError(f"--timeout must be positive seconds (got {options.timeout:g}).")
    stray = _stray_values(fit_args)
    if stray:
        raise StudyError(f"unexpected argument {stray[0]!r}: tune takes --flags only (see lightning-local tune --help).")
    try:
        resolved = resolve_config("fit", ["--config", str(config), *fit_args])
    except ConfigError as error:
        raise StudyError(f"the fit config does not parse: {error}") from None
    if options.space:
        space = load_space_file(options.space)
    else:
        space = learner_space(_class((resolved.get("learner") or {}).get("class_path", "")))
    check_keys(space, resolved, str(config))
    name = options.study or config.stem
    output = Path(options.output or Path("tune") / name).resolve()
    return SearchSetup(config=config.resolve(), fit_args=fit_args, resolved=resolved, space=space, output=output,
                       study=name, storage=options.storage or default_storage(output), trials=options.trials,
                       timeout=options.timeout, pruner=options.pruner, seed=options.seed)


def _stray_values(args: list[str]) -> list[str]:
    """Words that are neither a ``--flag`` nor the value right after a flag without ``=``."""
    stray = []
    for i, word in enumerate(args):
        follows_flag = i > 0 and args[i - 1].startswith("--") and "=" not in args[i - 1]
        if not word.startswith("--") and not follows_flag:
            stray.append(word)
    return stray


def _class(path: str) -> type:
    from importlib import import_module

    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)


def run(args: Optional[Sequence[str]] = None) -> int:
    """Parse ``args``, run the search and write its outputs; returns the exit code."""
    from lightning_local.tuning import run_search

    options, fit_args = parser().parse_known_args(args)
    setup = setup_from(options, list(fit_args))
    summary = run_search(setup, make_executor(options, {"num_cpus": options.trial_cpus, "num_gpus": options.trial_gpus}))
    best = summary["best"]
    counts = summary["counts"]
    print(f"tune {setup.study}: {summary['finished']}/{setup.trials} trials finished ({counts['complete']} complete, "
          f"{counts['pruned']} pruned, {counts['failed']} failed now) in {summary['seconds']:.0f} s; "
          + (f"best: trial {best.number}, val_acc {best.value:.4f}; config {summary['files']['best']}"
             if best else "no trial completed yet"))
    return 0 if best is not None else 1


def main(args: Optional[Sequence[str]] = None) -> None:
    """Entry point of ``lightning-local tune``; bad input ends in one line (exit 2)."""
    from lightning_local.benchmark.spec import SpecError
    from lightning_local.tuning import SpaceError, StudyError

    from .main import USER_ERRORS

    try:
        code = run(args)
    except (SpaceError, StudyError, SpecError, *USER_ERRORS) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    raise SystemExit(code)
