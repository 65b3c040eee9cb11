"""Analyses by key, through the ``lightning_local.analyses`` entry-point group.

A third-party package adds an analysis to benchmark specs and reports by declaring, in its
``pyproject.toml``::

    [project.entry-points."lightning_local.analyses"]
    my_analysis = "my_package.module:MyAnalysis"

where ``MyAnalysis`` subclasses :class:`~lightning_local.analysis.base.Analysis` with ``key = "my_analysis"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from lightning_local.learners.registry import available

from .base import Analysis

ANALYSIS_GROUP = "lightning_local.analyses"


@dataclass(frozen=True)
class RegisteredAnalysis:
    """An installed analysis: its class, and the class path a run's config names it by."""

    cls: type[Analysis]
    class_path: str


def registered_analyses() -> dict[str, RegisteredAnalysis]:
    """Key -> installed analysis, in report order (then by key)."""
    found = {}
    for key, value in available(ANALYSIS_GROUP).items():
        module, _, attr = value.partition(":")
        cls = getattr(import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, Analysis)) or cls.key != key:
            raise TypeError(f"The analysis entry point {key!r} = {value!r} must name an Analysis subclass whose key is "
                            f"{key!r}.")
        found[key] = RegisteredAnalysis(cls, f"{module}.{attr}")
    return dict(sorted(found.items(), key=lambda item: (item[1].cls.report_order, item[0])))
