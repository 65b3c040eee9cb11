"""Benchmark specs: the YAML a user writes, checked in full and expanded into a grid of jobs.

A spec names datasets, rules, architectures and seeds, the per-run config of each
combination (a path template, the paper's Table VII configs by default), overrides
merged into every run's config, and the analyses to run. :func:`load_spec` checks
everything a run would trip over later - names, files, analysis options, and every
distinct run config through the validator it is given (the ``lightning-local`` parser's,
from the command line) - and raises
:class:`SpecError` (one sentence) before any run starts. :func:`expand` turns the
spec into :class:`Job` objects, each keyed by a hash of its merged config.

Example (see ``configs/benchmark/``)::

    name: nmnist_small
    config: "configs/paper/{dataset}/{rule}_{arch}.yaml"
    datasets:
      nmnist: {root: ../shared/data/nmnist_small}
    rules: [bptt, eprop, decolle]
    architectures: [ff, rec]
    seeds: [0, 1, 2]
    overrides: {trainer: {max_epochs: 10}}
    analyses:
      fgsm: {epsilons: [0.001, 0.005, 0.01, 0.02, 0.05]}
      backdoor: {poison_rates: [0.1, 0.5, 0.9], pairs: 5}
      cka: {conversion: "configs/{dataset}/conversion_ff.yaml"}
      adversarial_cka: {epsilons: [0.01, 0.05]}
      fisher: {num_samples: 64}

FGSM (``fgsm``, ``adversarial_cka``) is crafted on a trained ANN, as in the paper's
Table IV: one ANN->SNN conversion run per dataset and seed (config: ``cka.conversion``,
else ``configs/{dataset}/conversion_ff.yaml``) whose ANN attacks every run of that seed,
FF and REC alike, so they all see the same perturbed samples. ``attack_model:
counterpart`` (or any other attack model) opts out; the converted SNNs are the same runs
Figure 2's CKA compares with.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import yaml

from lightning_local.learners.registry import DATASET_GROUP, LEARNER_GROUP, available

if TYPE_CHECKING:  # pragma: no cover
    from lightning_local.analysis.registry import RegisteredAnalysis

DEFAULT_CONFIG = "configs/paper/{dataset}/{rule}_{arch}.yaml"
DEFAULT_CONVERSION_CONFIG = "configs/{dataset}/conversion_ff.yaml"
ARCHITECTURES = ("ff", "rec")
SPEC_KEYS = {"name", "output", "config", "datasets", "rules", "architectures", "seeds", "overrides", "analyses", "resources",
             "tune"}
TUNE_KEYS = {"trials", "pruner", "seed", "timeout", "overrides", "export"}
TUNE_PRUNERS = ("median", "halving", "none")
DATASET_KEYS = {"config", "root", "overrides"}

PLACEHOLDER = "{checkpoint:%s}"  # replaced by a dependency's best checkpoint when a job starts
# A run of a tuned cell carries TUNED: "{tuned:KEY}" (KEY: the cell's tune job); the runner replaces it by the
# tuned settings when the run starts. A tune job carries its search options under TUNE_OPTIONS.
TUNED, TUNED_PLACEHOLDER, TUNE_OPTIONS = "tuned", "{tuned:%s}", "tune_options"


class SpecError(ValueError):
    """A benchmark spec that cannot run (unknown name, missing file, bad option): one sentence."""


@dataclass(frozen=True)
class Job:
    """One unit of the grid: a training run (``kind="train"``), a post-hoc CKA test (``kind="cka"``) or the
    hyper-parameter search of a cell (``kind="tune"``: ``lightning-local tune``, before the cell's runs).

    ``config`` is the complete ``lightning-local`` config of the run (template merged
    with the overrides, seed and analysis callbacks); ``key`` hashes it (with the kind
    and the dependencies), so an edited template or override gives a new run folder.
    """

    kind: str
    dataset: str
    rule: str
    arch: str
    seed: int
    config: dict
    variant: dict = field(default_factory=dict)
    deps: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        blob = json.dumps({"kind": self.kind, "config": self.config, "deps": list(self.deps)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        """Readable label, e.g. ``nmnist bptt REC seed 1`` or ``... backdoor 0.5 pair 2``."""
        text = f"{self.dataset} {self.rule} {self.arch.upper()} seed {self.seed}"
        if "poison_rate" in self.variant:
            text += f" backdoor {self.variant['poison_rate']:g} pair {self.variant['pair']}"
        if self.kind == "cka":
            text = f"CKA {text} vs {'/'.join(self.variant['references'])}"
        if self.kind == "tune":
            text = f"tune {self.dataset} {self.rule} {self.arch.upper()}"
        return text

    @property
    def folder(self) -> str:
        """Run-folder name: readable prefix plus the key."""
        slug = "-".join([self.kind, self.dataset, self.rule, self.arch, f"s{self.seed}"])
        if "poison_rate" in self.variant:
            slug += f"-bd{self.variant['poison_rate']:g}-p{self.variant['pair']}"
        return f"{slug}-{self.key[:10]}"


@dataclass
class Spec:
    """A checked benchmark spec (see the module docstring for the YAML)."""

    name: str
    path: Path
    output: Optional[str]
    datasets: dict[str, dict]
    rules: list[str]
    architectures: list[str]
    seeds: list[int]
    analyses: dict[str, dict]
    resources: dict
    config: str
    overrides: dict
    tune: Optional[dict] = None


# ----------------------------------------------------------------------------- helpers
def nest(mapping: Any) -> Any:
    """Expand dotted keys (``trainer.max_epochs: 3``) into nested dicts, recursively."""
    if not isinstance(mapping, dict):
        return mapping
    out: dict = {}
    for key, value in mapping.items():
        parts = str(key).split(".")
        target = out
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = merge(target.get(parts[-1], {}), nest(value)) if isinstance(value, dict) else nest(value)
    return out


def merge(base: Any, override: Any) -> Any:
    """Deep merge of config dicts: dicts merge key by key, anything else replaces.

    A dict that names a different ``class_path`` than the base replaces the base
    (the old class's ``init_args`` would not fit the new class).
    """
    if not isinstance(base, dict) or not isinstance(override, dict):
        return copy.deepcopy(override)
    if "class_path" in override and override["class_path"] != base.get("class_path"):
        return copy.deepcopy(override)
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if key in out else copy.deepcopy(value)
    return out


def resolve_path(text: str, anchors: list[Path]) -> Optional[Path]:
    """``text`` as an existing path: absolute, or relative to the first anchor folder where it exists."""
    path = Path(text).expanduser()
    if path.is_absolute():
        return path if path.exists() else None
    for anchor in anchors:
        if (anchor / path).exists():
            return (anchor / path).resolve()
    return None


def _anchors(spec_path: Path) -> list[Path]:
    """Where relative paths in a spec are looked up: the current folder, then the spec's folder and its parents."""
    folder = spec_path.resolve().parent
    return [Path.cwd(), folder, *folder.parents]


def _names(value: Any, what: str) -> list:
    if isinstance(value, (str, int)):
        value = [value]
    if not isinstance(value, list) or not value:
        raise SpecError(f"The spec's {what} must be a non-empty list (got {value!r}).")
    return value


def installed_analyses() -> "dict[str, RegisteredAnalysis]":
    """The analyses a spec can name (the ``lightning_local.analyses`` entry points), in report order."""
    from lightning_local.analysis.registry import registered_analyses  # noqa: PLC0415 (analyses import the benchmark)

    return registered_analyses()


# ----------------------------------------------------------------------------- loading
def load_spec(path: str | Path, validate: Optional[ConfigValidator] = None) -> Spec:
    """Read and check a spec file; raises :class:`SpecError` naming the first problem.

    ``validate`` (see :data:`ConfigValidator`; the command line passes its parser's) also checks one run
    config per distinct job shape; None checks everything but the run configs' own options.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"Benchmark spec {path} does not exist: pass --config configs/benchmark/<name>.yaml.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SpecError(f"Benchmark spec {path} is not valid YAML ({str(error).splitlines()[0]}).") from None
    if not isinstance(raw, dict):
        raise SpecError(f"Benchmark spec {path} must be a YAML mapping.")
    unknown = sorted(set(raw) - SPEC_KEYS)
    if unknown:
        raise SpecError(f"Unknown key(s) {unknown} in {path}: allowed are {sorted(SPEC_KEYS)}.")
    anchors = _anchors(path)

    learners = available(LEARNER_GROUP)
    rules = [str(r).lower() for r in _names(raw.get("rules"), "rules")]
    for rule in rules:
        if rule not in learners:
            raise SpecError(f"Unknown rule {rule!r} in {path}: available rules are {', '.join(sorted(learners))}.")

    architectures = [str(a).lower() for a in _names(raw.get("architectures", list(ARCHITECTURES)), "architectures")]
    for arch in architectures:
        if arch not in ARCHITECTURES:
            raise SpecError(f"Unknown architecture {arch!r} in {path}: use ff and/or rec.")

    seeds = _names(raw.get("seeds", [0]), "seeds")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) or len(set(seeds)) != len(seeds):
        raise SpecError(f"The spec's seeds must be distinct integers (got {seeds}).")

    registered = available(DATASET_GROUP)
    raw_datasets = raw.get("datasets")
    if isinstance(raw_datasets, (list, str)):
        raw_datasets = {name: {} for name in _names(raw_datasets, "datasets")}
    if not isinstance(raw_datasets, dict) or not raw_datasets:
        raise SpecError(f"The spec {path} must name its datasets (a list, or a mapping name -> options).")
    datasets = {}
    for name, options in raw_datasets.items():
        name = str(name).lower()
        if name not in registered:
            raise SpecError(f"Unknown dataset {name!r} in {path}: available datasets are {', '.join(sorted(registered))}.")
        options = dict(options or {})
        bad = sorted(set(options) - DATASET_KEYS)
        if bad:
            raise SpecError(f"Unknown option(s) {bad} for dataset {name!r}: allowed are {sorted(DATASET_KEYS)}.")
        if options.get("root") is not None:
            root = resolve_path(str(options["root"]), anchors)
            if root is None:
                raise SpecError(f"Data root {options['root']!r} of dataset {name!r} does not exist "
                                f"(relative roots are looked up from the current folder and the spec's folders).")
            options["root_as_written"] = str(options["root"])  # what an exported config names
            options["root"] = str(root)
        options["overrides"] = nest(options.get("overrides") or {})
        datasets[name] = options

    analyses_raw = raw.get("analyses") or {}
    if isinstance(analyses_raw, list):
        analyses_raw = {name: {} for name in analyses_raw}
    if not isinstance(analyses_raw, dict):
        raise SpecError(f"The spec's analyses must be a mapping name -> options (got {analyses_raw!r}).")
    installed = installed_analyses()
    analyses = {}
    for name, options in analyses_raw.items():
        if name not in installed:
            raise SpecError(f"Unknown analysis {name!r} in {path}: available analyses are {', '.join(installed)}.")
        if options is not None and not isinstance(options, dict):
            raise SpecError(f"The options of analysis {name!r} must be a mapping (got {options!r}).")
        try:
            analyses[name] = installed[name].cls.check_options(dict(options or {}), architectures)
        except ValueError as error:
            raise SpecError(str(error)) from None

    tune = _tune_options(raw.get("tune"), path)

    resources = dict(raw.get("resources") or {})
    bad = sorted(set(resources) - {"num_cpus", "num_gpus"})
    if bad:
        raise SpecError(f"Unknown resource(s) {bad}: a run's request takes num_cpus and num_gpus.")

    spec = Spec(
        name=str(raw.get("name") or path.stem), path=path.resolve(), output=raw.get("output"),
        datasets=datasets, rules=rules, architectures=architectures, seeds=list(seeds), analyses=analyses,
        resources=resources, config=str(raw.get("config") or DEFAULT_CONFIG), overrides=nest(raw.get("overrides") or {}),
        tune=tune,
    )
    jobs = expand(spec)  # raises on missing config files
    if validate is not None:
        check_job_configs(jobs, validate)
    return spec


def _tune_options(raw: Any, path: Path) -> Optional[dict]:
    """The spec's ``tune:`` section, checked: the same search budget for every cell."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise SpecError(f"The spec's tune section must be a mapping, e.g. tune: {{trials: 16}} (got {raw!r}).")
    bad = sorted(set(raw) - TUNE_KEYS)
    if bad:
        raise SpecError(f"Unknown tune option(s) {bad} in {path}: allowed are {sorted(TUNE_KEYS)}.")
    trials = raw.get("trials")
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise SpecError(f"tune.trials must be a positive integer, the budget of every cell (got {trials!r}).")
    pruner = raw.get("pruner", "median")
    if pruner not in TUNE_PRUNERS:
        raise SpecError(f"tune.pruner must be one of {', '.join(TUNE_PRUNERS)} (got {pruner!r}).")
    timeout = raw.get("timeout")
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise SpecError(f"tune.timeout must be positive seconds (got {timeout!r}).")
    export = raw.get("export")
    if export is not None and not isinstance(export, str):
        raise SpecError(f"tune.export must be a path template with {{dataset}}, {{rule}}, {{arch}} (got {export!r}).")
    return {"trials": trials, "pruner": pruner, "seed": int(raw.get("seed", 0)), "timeout": timeout,
            "overrides": nest(raw.get("overrides") or {}), "export": export}


# ----------------------------------------------------------------------------- expansion
def _template(spec: Spec, dataset: str, rule: str, arch: str, template: Optional[str] = None) -> dict:
    template = template or spec.datasets[dataset].get("config") or spec.config
    try:
        text = template.format(dataset=dataset, rule=rule, arch=arch)
    except (KeyError, IndexError) as error:
        raise SpecError(f"Config template {template!r} uses an unknown field {error}: use {{dataset}}, {{rule}}, {{arch}}.") from None
    found = resolve_path(text, _anchors(spec.path))
    if found is None or not found.is_file():
        hint = " (Table VII configs are generated by configs/make_configs.py)" if "paper" in text else ""
        raise SpecError(f"Config file {text} for {dataset}/{rule}/{arch} does not exist{hint}.")
    loaded = yaml.safe_load(found.read_text()) or {}
    if not isinstance(loaded, dict):
        raise SpecError(f"Config file {found} is not a YAML mapping.")
    return loaded


def _base_config(spec: Spec, dataset: str, rule: str, arch: str, seed: int, template: Optional[str] = None,
                 tuned: bool = True) -> dict:
    """Template, spec overrides, dataset overrides, data root and seed, merged in that order; with a ``tune``
    section, a cell's own runs (``template`` None) also name the cell's tune job (:data:`TUNED`)."""
    config = _template(spec, dataset, rule, arch, template)
    config = merge(config, spec.overrides)
    config = merge(config, spec.datasets[dataset]["overrides"])
    if spec.datasets[dataset].get("root") is not None:
        config = merge(config, {"data": {"init_args": {"root": spec.datasets[dataset]["root"]}}})
    config["seed_everything"] = int(seed)
    if spec.tune is not None and template is None and tuned:
        config[TUNED] = TUNED_PLACEHOLDER % tune_job(spec, dataset, rule, arch).key
    return config


def tune_job(spec: Spec, dataset: str, rule: str, arch: str) -> Job:
    """The search of one cell: the cell's config (seed 0) with ``tune.overrides``, searched with the spec's budget."""
    options = spec.tune or {}
    config = merge(_base_config(spec, dataset, rule, arch, 0, tuned=False), options.get("overrides") or {})
    config[TUNE_OPTIONS] = {k: options[k] for k in ("trials", "pruner", "seed", "timeout")}
    return Job("tune", dataset, rule, arch, 0, config)


def tuning_deps(config: dict) -> tuple[str, ...]:
    """The tune job a run's config waits for (none for an untuned cell)."""
    value = config.get(TUNED)
    prefix = TUNED_PLACEHOLDER.split("%s")[0]
    return (value[len(prefix):-1],) if isinstance(value, str) and value.startswith(prefix) else ()


def with_settings(config: dict, settings: dict) -> dict:
    """``config`` (less its :data:`TUNED` placeholder) with tuned ``settings`` (dotted key -> value) merged in."""
    return merge({k: v for k, v in config.items() if k != TUNED}, nest(settings))


def _with_callbacks(config: dict, callbacks: list[dict]) -> dict:
    config = copy.deepcopy(config)
    trainer = config.setdefault("trainer", {})
    trainer["callbacks"] = list(trainer.get("callbacks") or []) + callbacks
    return config


@dataclass
class Grid:
    """One dataset of a spec while it expands: what an analysis builds its own jobs from
    (:meth:`~lightning_local.analysis.base.Analysis.jobs`).

    ``models`` maps (rule, arch, seed) to the key of its main training run; ``conversions`` maps a seed
    to its ANN->SNN conversion run (FGSM's ANN, Figure 2's converted SNN), where the grid has one.
    """

    spec: Spec
    dataset: str
    analyses: "dict[str, RegisteredAnalysis]"
    models: dict[tuple[str, str, int], str] = field(default_factory=dict)
    conversions: dict[int, Job] = field(default_factory=dict)

    def base_config(self, rule: str, arch: str, seed: int) -> dict:
        """The cell's run config for ``seed`` (template, overrides, data root, seed, tuned settings)."""
        return _base_config(self.spec, self.dataset, rule, arch, seed)

    def callback(self, key: str, options: dict) -> dict:
        """Analysis ``key``'s callback entry of a run's ``trainer.callbacks`` with ``options``."""
        analysis = self.analyses[key]
        return {"class_path": analysis.class_path, "init_args": analysis.cls.callback_args(options)}

    @staticmethod
    def with_callbacks(config: dict, callbacks: list[dict]) -> dict:
        """A copy of ``config`` with ``callbacks`` added to its trainer's."""
        return _with_callbacks(config, callbacks)

    @staticmethod
    def checkpoint(key: str) -> str:
        """Stands for run ``key``'s best checkpoint in a config (replaced when the job starts)."""
        return PLACEHOLDER % key

    def job(self, kind: str, rule: str, arch: str, seed: int, config: dict, variant: Optional[dict] = None,
            deps: tuple[str, ...] = ()) -> Job:
        """A job of this dataset."""
        return Job(kind, self.dataset, rule, arch, seed, config, dict(variant or {}), tuple(deps))

    def wants_ann(self) -> list[str]:
        """The spec's analyses that attack with the seed's trained ANN."""
        return [key for key, options in self.spec.analyses.items() if self.analyses[key].cls.wants_ann(options)]

    def train_callbacks(self, ann: Optional[Job]) -> list[dict]:
        """The callbacks of a main training run; those attacking with an ANN get ``ann``'s checkpoint."""
        attacking = self.wants_ann() if ann is not None else []
        return [self.callback(key, {**self.spec.analyses[key],
                                    **({"ann_checkpoint": self.checkpoint(ann.key)} if key in attacking else {})})
                for key, analysis in self.analyses.items()
                if key in self.spec.analyses and analysis.cls.on_training_runs]


def _conversion_jobs(grid: Grid) -> dict[int, Job]:
    """One ANN->SNN conversion run per seed, when an analysis compares with it (Figure 2) or attacks with its ANN."""
    spec, dataset = grid.spec, grid.dataset
    templates = [grid.analyses[key].cls.conversion_config(options) for key, options in spec.analyses.items()]
    if not any(templates) and not grid.wants_ann():
        return {}
    template = next((t for t in templates if t), None) or _ann_template(spec, dataset)
    return {seed: Job("train", dataset, "conversion", "ff", seed, _base_config(spec, dataset, "conversion", "ff", seed, template))
            for seed in spec.seeds}


def _ann_template(spec: Spec, dataset: str) -> str:
    """The conversion config of FGSM's ANN when no analysis fixes one: the spec's own template's, if it has one."""
    own = spec.datasets[dataset].get("config") or spec.config
    found = resolve_path(own.format(dataset=dataset, rule="conversion", arch="ff"), _anchors(spec.path))
    return own if found is not None and found.is_file() else DEFAULT_CONVERSION_CONFIG


def expand(spec: Spec) -> list[Job]:
    """All jobs of the grid: conversion runs (FGSM's ANN, Figure 2), training runs, then the analyses' own jobs."""
    installed = installed_analyses()
    jobs: list[Job] = []
    for dataset in spec.datasets:
        grid = Grid(spec, dataset, installed)
        grid.conversions = _conversion_jobs(grid)
        jobs += list(grid.conversions.values())
        if spec.tune is not None:
            jobs += [tune_job(spec, dataset, rule, arch) for rule in spec.rules for arch in spec.architectures]
        attacked = bool(grid.wants_ann())
        for rule in spec.rules:
            for arch in spec.architectures:
                for seed in spec.seeds:
                    ann = grid.conversions.get(seed) if attacked else None
                    config = _with_callbacks(_base_config(spec, dataset, rule, arch, seed), grid.train_callbacks(ann))
                    deps = tuning_deps(config) + ((ann.key,) if ann is not None else ())
                    job = Job("train", dataset, rule, arch, seed, config, deps=deps)
                    jobs.append(job)
                    grid.models[(rule, arch, seed)] = job.key
        for key, analysis in installed.items():
            if key not in spec.analyses:
                continue
            try:
                jobs += analysis.cls.jobs(spec.analyses[key], grid)
            except ValueError as error:
                raise SpecError(str(error)) from None
    return jobs


# ----------------------------------------------------------------------------- config check
ConfigValidator = Callable[[dict, str], None]
"""Checks one run config (a ``lightning-local SUBCOMMAND --config`` file's content) for ``SUBCOMMAND``: raises an
exception whose message says what is wrong. The command line passes its parser's (``lightning_local.cli.resolve.
validate_config``); the library never imports the CLI."""


def check_job_configs(jobs: list[Job], validate: ConfigValidator) -> None:
    """Validate one config per distinct (kind, dataset, rule, arch, backdoor or not); SpecError naming the run."""
    seen = set()
    for job in jobs:
        shape = (job.kind, job.dataset, job.rule, job.arch, "poison_rate" in job.variant)
        if shape in seen:
            continue
        seen.add(shape)
        config = {k: v for k, v in job.config.items() if k not in (TUNED, TUNE_OPTIONS)}
        try:
            validate(config, "test" if job.kind == "cka" else "fit")
        except Exception as error:  # the validator's contract: any failure, its message saying what is wrong
            raise SpecError(f"The config of {job.name} does not parse: {error}") from None
