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

import argparse
import sys
from pathlib import Path
from typing import NoReturn, Optional, Sequence

PROG = "lightning-local"


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags in the CLI's one-line format."""

    def error(self, message: str) -> NoReturn:
        print(f"{PROG}: error: benchmark: {message} (see lightning-local benchmark --help)", file=sys.stderr)
        raise SystemExit(2)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"{PROG} benchmark", description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--config", required=True, help="benchmark spec (YAML), e.g. configs/benchmark/smoke.yaml")
    p.add_argument("--output", help="folder of the store, runs and report (default: the spec's output, "
                                    "else ./benchmark/<name>)")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--workers", type=int, help="local: runs at once (default: 1 on CPU, one per GPU)")
    p.add_argument("--accelerator", choices=("cpu", "gpu", "auto"), default="auto",
                   help="local: where runs train (auto: gpu when torch sees one)")
    p.add_argument("--ray-address", default=None, help="ray: cluster address ('auto' = running cluster; "
                                                       "default: start a local instance)")
    p.add_argument("--ray-cpus", type=int, default=None, help="ray: CPUs of a new local instance (default: all)")
    p.add_argument("--dry-run", action="store_true", help="check the spec, list the runs and their status, run nothing")
    p.add_argument("--report-only", action="store_true", help="only rewrite the report from the store")
    return p


def run(args: Optional[Sequence[str]] = None) -> int:
    """Parse ``args``, run the grid and write the report; returns the exit code (1 if a run failed)."""
    from lightning_local.benchmark import ResultStore, expand, load_spec, run_grid, write_report
    from lightning_local.benchmark.scheduler import LocalExecutor, RayExecutor
    from lightning_local.benchmark.tuned import export_tuned

    options = parser().parse_args(args)
    spec = load_spec(options.config, check_configs=not options.report_only)
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
    if not options.report_only:
        if options.executor == "ray":
            resources = {"num_cpus": 1, "num_gpus": 0, **spec.resources}
            executor = RayExecutor(options.ray_address, local_cpus=options.ray_cpus, **resources)
        else:
            accelerator = options.accelerator
            if accelerator == "auto":
                import torch

                accelerator = "gpu" if torch.cuda.is_available() else "cpu"
            executor = LocalExecutor(options.workers, accelerator)
        summary = run_grid(jobs, store, executor)
        for path in export_tuned(spec, jobs, store, f"lightning-local benchmark --config {options.config}"):
            print(f"tuned config: {path}")
    report = write_report(jobs, store, output / "report", spec.name, summary)
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
