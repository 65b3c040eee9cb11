"""Finding learners and data modules by short name through entry points.

Third-party packages add a learner by declaring, in their ``pyproject.toml``::

    [project.entry-points."lightning_local.learners"]
    my_rule = "my_package.module:MyRule"

after which ``lightning-local fit --learner my_rule`` works without touching
this repository. Data modules use the ``lightning_local.datasets`` group.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

LEARNER_GROUP = "lightning_local.learners"
DATASET_GROUP = "lightning_local.datasets"


class UnknownNameError(ValueError):
    """A short name that no installed plugin registers."""


def available(group: str) -> dict[str, str]:
    """Short name -> ``"module:attr"`` of every entry point in ``group``."""
    return {ep.name: ep.value for ep in entry_points(group=group)}


def class_path(group: str, name: str, kind: str) -> str:
    """Dotted class path registered as ``name`` in ``group`` (clear error if unknown)."""
    names = available(group)
    if name not in names:
        raise UnknownNameError(
            f"Unknown {kind} {name!r}: available {kind}s are {', '.join(sorted(names)) or '(none installed)'}; "
            f"install a plugin that registers it under the '{group}' entry-point group or pass a full class path."
        )
    module, _, attr = names[name].partition(":")
    return f"{module}.{attr}"


def learner_class_path(name: str) -> str:
    """Class path of the learner registered as ``name``."""
    return class_path(LEARNER_GROUP, name, "learner")


def learner_class(name: str) -> type:
    """The learner class registered as ``name`` (or named by a dotted class path), without building one."""
    from importlib import import_module

    path = name if "." in name else learner_class_path(name)
    module, _, attr = path.rpartition(".")
    return getattr(import_module(module), attr)


def build_learner(value: Any) -> Any:
    """A :class:`Learner` from an instance, a short name or a ``{"class_path", "init_args"}`` dict."""
    from .base import Learner

    if isinstance(value, Learner):
        return value
    if isinstance(value, str):
        value = {"class_path": value, "init_args": {}}
    if isinstance(value, dict) and "class_path" in value:
        return learner_class(value["class_path"])(**value.get("init_args", {}))
    raise TypeError(f"Cannot build a learner from {value!r}: pass a Learner, a registered name or a class_path dict.")
