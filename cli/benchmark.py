"""``lightning-local benchmark``: run a spec's grid of runs, resumable, and write its report.

Examples::

    lightning-local benchmark --config configs/benchmark/smoke.yaml
    lightning-local benchmark --config configs/benchmark/nmnist_small.yaml --workers 2 --output /tmp/bench
    lightning-local benchmark --config configs/benchmark/paper_nmnist.yaml --accelerator gpu      # one run per GPU
    lightning-local benchmark --config configs/benchmark/paper_nmnist.yaml --executor ray --ray-address auto
    lightning-local benchmark --config configs/benchmark/smoke.yaml --dry-run                     # list the grid

Rerunning the same command skips finished runs and resumes interrupted ones.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from .resolve import validate_config
from .subcommand import PROG, SubcommandParser, add_executor_arguments, make_executor


def parser() -> SubcommandParser:
    p = SubcommandParser("benchmark", __doc__)
    p.add_argument("--config", required=True, help="benchmark spec (YAML), e.g. configs/benchmark/smoke.yaml")
    p.add_argument("--output", help="folder of the store, runs and report (default: the spec's output, "
                                    "else ./benchmark/<name>)")
    add_executor_arguments(p, "runs")
    p.add_argument("--dry-run", action="store_true", help="check the spec, list the runs and their status, run nothing")
    p.add_argument("--report-only", action="store_true", help="only rewrite the report: re-read each finished run's results from its folder into the store, then "
                        "write the report")
    return p


def run(args: Optional[Sequence[str]] = None) -> int:
    """Parse ``args``, run the grid and write the report; returns the exit code (1 if a run failed)."""
    from lightning_local.benchmark import ResultStore, expand, load_spec, run_grid, write_report
    from lightning_local.benchmark.runner import recollect
    from lightning_local.benchmark.tuned import export_tuned

    options = parser().parse_args(args)
    spec = load_spec(options.config, validate=None if options.report_only else validate_config)
    jobs = expand(spec)
    output = Path(options.output or spec.output or Path("benchmark") / spec.name).resolve()
    store = ResultStore(output / "results.sqlite")
    store.register([{"key": j.key, "kind": j.kind, "name": j.name, "dataset": j.dataset, "rule": j.rule, "arch": j.arch,
                     "seed": j.seed, "variant": j.variant, "config": j.config, "deps": j.deps,
                     "run_dir": output / "runs" / j.folder} for j in jobs])
    if options.dry_run:
        status = {r["key"]: r["status"] for r in store.runs([j.key for j in jobs])}
        for job in jobs:
            print(f"{status[job.key]:8s} {job.key}  {job.name}")
        print(f"{len(jobs)} runs; store {store.path}")
        return 0
    summary = None
    if options.report_only:
        print(f"re-read the results of {recollect(store)} finished runs")
    else:
        executor = make_executor(options, spec.resources)
        summary = run_grid(jobs, store, executor)
        store.record_invocation(summary)
        for path in export_tuned(spec, jobs, store, f"lightning-local benchmark --config {options.config}"):
            print(f"tuned config: {path}")
    report = write_report(jobs, store, output / "report", spec.name, summary or store.last_invocation())
    if summary is not None:
        print(f"benchmark {spec.name}: {summary['done']}/{summary['total']} done ({summary['done'] - summary['earlier']} "
              f"now, {summary['earlier']} earlier), {summary['failed']} failed, {summary['seconds']:.0f} s; "
              f"report: {report}")
        return 1 if summary["failed"] else 0
    print(f"report: {report}")
    return 0


def main(args: Optional[Sequence[str]] = None) -> None:
    """Entry point of ``lightning-local benchmark``; bad input ends in one line (exit 2)."""
    from lightning_local.benchmark.spec import SpecError

    from .main import USER_ERRORS

    try:
        code = run(args)
    except (SpecError, *USER_ERRORS) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    raise SystemExit(code)
