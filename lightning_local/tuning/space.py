"""The search space of ``lightning-local tune``: declared by a learner (or a ``--space`` file), checked, sampled.

A space maps dotted ``fit`` config keys (as ``lightning-local fit --print_config`` shows
them) to a range or a set of choices::

    model.lr: {low: 1.0e-5, high: 1.0e-2, log: true}     # float; an int range when low and high are ints
    data.init_args.batch_size: {low: 4, high: 256, log: true}
    learner.init_args.feedback: {choices: [symmetric, random]}
    model.tau_syn: {low: 0.3, high: 100.0, log: true, clears: [model.alpha]}

``clears`` names keys that are set to ``null`` whenever the parameter is set (a decay factor
that its time constant replaces: the model refuses both). Learners declare their space as
:attr:`~lightning_local.learners.Learner.search_space`; a ``--space`` YAML file replaces it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import optuna
import yaml

RANGE_FIELDS = {"low", "high", "log", "clears"}
CHOICE_FIELDS = {"choices", "clears"}


class SpaceError(ValueError):
    """A search space that cannot be searched (unknown key, empty range, no space at all): one sentence."""


@dataclass(frozen=True)
class Parameter:
    """One searched setting: a dotted config key and its range (``low``/``high``, ``log``) or ``choices``."""

    key: str
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    choices: Optional[tuple] = None
    clears: tuple[str, ...] = ()

    @property
    def is_int(self) -> bool:
        return self.choices is None and isinstance(self.low, int) and isinstance(self.high, int)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """Optuna's distribution of this parameter."""
        if self.choices is not None:
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.is_int:
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log)
        return optuna.distributions.FloatDistribution(float(self.low), float(self.high), log=self.log)

    def contains(self, value: Any) -> bool:
        """True when ``value`` is a point of this parameter's range or one of its choices."""
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.is_int and not float(value).is_integer():
            return False
        return self.low <= value <= self.high

    def as_dict(self) -> dict:
        """The YAML form (what :func:`parse_space` reads back)."""
        out: dict[str, Any] = {"choices": list(self.choices)} if self.choices is not None else {
            "low": self.low, "high": self.high, "log": self.log}
        if self.clears:
            out["clears"] = list(self.clears)
        return out


def parse_space(raw: Any, origin: str) -> list[Parameter]:
    """Check a space mapping (``key -> {low, high, log} | {choices}``) and return its parameters."""
    if not isinstance(raw, dict) or not raw:
        raise SpaceError(f"the search space of {origin} is empty: declare at least one parameter, e.g. "
                         "model.lr: {low: 1.0e-4, high: 1.0e-2, log: true}.")
    return [_parameter(str(key), spec, origin) for key, spec in raw.items()]


def _parameter(key: str, spec: Any, origin: str) -> Parameter:
    where = f"search parameter {key!r} of {origin}"
    if not isinstance(spec, dict):
        raise SpaceError(f"{where} must be a mapping {{low, high[, log]}} or {{choices: [...]}} (got {spec!r}).")
    clears = spec.get("clears") or []
    if not isinstance(clears, list) or not all(isinstance(c, str) for c in clears):
        raise SpaceError(f"{where}: clears must be a list of config keys (got {clears!r}).")
    if "choices" in spec:
        unknown = sorted(set(spec) - CHOICE_FIELDS)
        choices = spec["choices"]
        if unknown:
            raise SpaceError(f"{where}: unknown field(s) {unknown} beside choices (allowed: {sorted(CHOICE_FIELDS)}).")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where} has an empty choices list: give at least one value.")
        return Parameter(key, choices=tuple(choices), clears=tuple(clears))
    unknown = sorted(set(spec) - RANGE_FIELDS)
    if unknown:
        raise SpaceError(f"{where}: unknown field(s) {unknown} (a range takes {sorted(RANGE_FIELDS)}; "
                         "a set of values takes choices).")
    low, high, log = spec.get("low"), spec.get("high"), bool(spec.get("log", False))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
        raise SpaceError(f"{where} needs numeric low and high (got low={low!r}, high={high!r}).")
    if not low < high:
        raise SpaceError(f"{where} has an empty range [{low}, {high}]: low must be below high.")
    if log and low <= 0:
        raise SpaceError(f"{where} is searched on a log scale, so low must be positive (got {low}).")
    if isinstance(low, int) != isinstance(high, int):  # 4 and 256.0: a float range, said plainly
        low, high = float(low), float(high)
    return Parameter(key, low=low, high=high, log=log, clears=tuple(clears))


def load_space_file(path: str | Path) -> list[Parameter]:
    """Parameters of a ``--space`` YAML file (it replaces the learner's space)."""
    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"search space file {path} does not exist: pass --space FILE.yaml (see `lightning-local tune --help`).")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SpaceError(f"search space file {path} is not valid YAML ({str(error).splitlines()[0]}).") from None
    return parse_space(raw, str(path))


def learner_space(learner_class: type) -> list[Parameter]:
    """The space a learner class declares (:attr:`Learner.search_space`); one-line error when it declares none."""
    raw = getattr(learner_class, "search_space", None)
    name = getattr(learner_class, "name", "") or learner_class.__name__
    if not raw:
        raise SpaceError(f"learner {name!r} declares no search space: give its class a search_space "
                         "(see lightning_local.learners.NEURON_SPACE) or pass --space FILE.yaml.")
    return parse_space(raw, f"learner {name!r}")


def lookup(config: dict, key: str) -> tuple[bool, Any]:
    """``(found, value)`` of a dotted key in a nested config."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def check_keys(space: Sequence[Parameter], config: dict, config_name: str) -> None:
    """Every searched (and cleared) key must be a setting of the resolved fit config."""
    for parameter in space:
        for key in (parameter.key, *parameter.clears):
            if not lookup(config, key)[0]:
                raise SpaceError(
                    f"unknown search parameter {key!r}: it is not a setting of {config_name} "
                    f"(list them with lightning-local fit --config {config_name} --print_config)."
                )


def distributions(space: Sequence[Parameter]) -> dict[str, optuna.distributions.BaseDistribution]:
    """Key -> Optuna distribution: ``study.ask(distributions(space))`` draws a trial's values."""
    return {p.key: p.distribution() for p in space}


def starting_point(space: Sequence[Parameter], config: dict) -> dict[str, Any]:
    """The config's own values that lie inside the space (the first trial of a study: the untuned settings)."""
    point = {}
    for parameter in space:
        found, value = lookup(config, parameter.key)
        if found and value is not None and parameter.contains(value):
            point[parameter.key] = value
    return point


def settings(params: dict[str, Any], space: Sequence[Parameter]) -> dict[str, Any]:
    """Dotted config key -> value that ``params`` set, with the keys they clear set to ``None`` first."""
    out: dict[str, Any] = {}
    for parameter in space:
        if parameter.key in params:
            out.update({cleared: None for cleared in parameter.clears})
            out[parameter.key] = params[parameter.key]
    return out


def flags(params: dict[str, Any], space: Sequence[Parameter]) -> list[str]:
    """``fit`` command-line flags that set ``params`` (and clear what they replace)."""
    out: list[str] = []
    for key, value in settings(params, space).items():
        out += [f"--{key}", _flag_value(value)]
    return out


def _flag_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def space_yaml(space: Sequence[Parameter]) -> str:
    """The space as YAML (written beside the study; a valid ``--space`` file)."""
    return yaml.safe_dump({p.key: p.as_dict() for p in space}, sort_keys=False)
