"""Benchmark grids: rules x architectures x datasets x seeds, resumable, with the paper's tables and figures.

``lightning-local benchmark --config configs/benchmark/<name>.yaml`` (see :mod:`lightning_local.cli.benchmark`):

* :mod:`.spec` - the spec file, its checks and its expansion into jobs keyed by their config;
* :mod:`.store` - the SQLite results store (status, metrics, paths; safe with concurrent writers);
* :mod:`.runner` - one job as a ``lightning-local`` subprocess, resumed from its last checkpoint;
* :mod:`.scheduler` - local CPU/GPU workers or Ray tasks, progress lines and ETA;
* :mod:`.report` - ``report.md``, CSVs and Figures 2-4; :mod:`.paper` - the paper's numbers.
"""

# Lazy exports (PEP 562): importing the light store module (e.g. in writer processes) stays cheap.
_EXPORTS = {
    "TABLE_III": "paper", "TABLE_IV": "paper", "TABLE_V": "paper", "TABLE_VI": "paper", "write_report": "report",
    "LocalExecutor": "scheduler", "RayExecutor": "scheduler", "run_grid": "scheduler",
    "Job": "spec", "Spec": "spec", "SpecError": "spec", "expand": "spec", "load_spec": "spec",
    "ResultStore": "store",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Job",
    "LocalExecutor",
    "RayExecutor",
    "ResultStore",
    "Spec",
    "SpecError",
    "TABLE_III",
    "TABLE_IV",
    "TABLE_V",
    "TABLE_VI",
    "expand",
    "load_spec",
    "run_grid",
    "write_report",
]
