"""Benchmark specs: the YAML a user writes, checked in full and expanded into a grid of jobs.

A spec names datasets, rules, architectures and seeds, the per-run config of each
combination (a path template, the paper's Table VII configs by default), overrides
merged into every run's config, and the analyses to run. :func:`load_spec` checks
everything a run would trip over later - names, files, analysis options, and every
distinct run config parsed by the ``lightning-local`` parser - and raises
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
from importlib import import_module
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from lightning_local.data.backdoor import distinct_pairs
from lightning_local.learners.registry import DATASET_GROUP, LEARNER_GROUP, available

DEFAULT_CONFIG = "configs/paper/{dataset}/{rule}_{arch}.yaml"
DEFAULT_CONVERSION_CONFIG = "configs/{dataset}/conversion_ff.yaml"
ARCHITECTURES = ("ff", "rec")
ANALYSES = ("accuracy", "fgsm", "backdoor", "cka", "adversarial_cka", "fisher")
SPEC_KEYS = {"name", "output", "config", "datasets", "rules", "architectures", "seeds", "overrides", "analyses", "resources",
             "tune"}
TUNE_KEYS = {"trials", "pruner", "seed", "timeout", "overrides", "export"}
TUNE_PRUNERS = ("median", "halving", "none")
DATASET_KEYS = {"config", "root", "overrides"}

ANALYSIS_CALLBACKS = {
    "fgsm": "lightning_local.analysis.FGSMTransfer",
    "adversarial_cka": "lightning_local.analysis.AdversarialCKA",
    "fisher": "lightning_local.analysis.FisherInformation",
    "cka": "lightning_local.analysis.CKAComparison",
    "backdoor": "lightning_local.analysis.BackdoorEvaluation",
}
BACKDOOR_DATA = "lightning_local.data.backdoor.Backdoor"
ATTACKED = ("fgsm", "adversarial_cka")  # analyses crafting FGSM on the seed's trained ANN (unless told otherwise)
# Options the benchmark itself consumes (everything else goes to the callback / data module).
OWN_OPTIONS = {"backdoor": {"poison_rates", "pairs", "pair_seed"}, "cka": {"conversion", "architectures"}}
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


def _dataset_class(config: dict) -> Any:
    data = config.get("data") or {}
    module, _, attr = str(data.get("class_path", "")).rpartition(".")
    try:
        return getattr(import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        return None


# ----------------------------------------------------------------------------- loading
def load_spec(path: str | Path, validate: Optional[ConfigValidator] = None) -> Spec:
    """Read and check a spec file; raises :class:`SpecError` naming the first problem."""
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
    analyses = {}
    for name, options in analyses_raw.items():
        if name not in ANALYSES:
            raise SpecError(f"Unknown analysis {name!r} in {path}: available analyses are {', '.join(ANALYSES)}.")
        analyses[name] = dict(options or {})
    backdoor = analyses.get("backdoor")
    if backdoor is not None:
        rates = backdoor.get("poison_rates", [0.1, 0.3, 0.5, 0.7, 0.9])
        if not isinstance(rates, list) or not rates or not all(isinstance(r, (int, float)) and 0 <= r <= 1 for r in rates):
            raise SpecError(f"backdoor.poison_rates must be a list of numbers in [0, 1] (got {rates!r}).")
        pairs = backdoor.get("pairs", 5)
        if not isinstance(pairs, int) or pairs < 1:
            raise SpecError(f"backdoor.pairs must be a positive integer (got {pairs!r}).")
        backdoor.update(poison_rates=[float(r) for r in rates], pairs=pairs, pair_seed=int(backdoor.get("pair_seed", 0)))
    if "cka" in analyses:
        analyses["cka"].setdefault("conversion", DEFAULT_CONVERSION_CONFIG)
        cka_archs = [str(a).lower() for a in _names(analyses["cka"].get("architectures", architectures), "cka.architectures")]
        if not set(cka_archs) <= set(architectures):
            raise SpecError(f"cka.architectures {cka_archs} must be among the spec's architectures {architectures}.")
        analyses["cka"]["architectures"] = cka_archs
    if "adversarial_cka" in analyses and set(architectures) != set(ARCHITECTURES):
        raise SpecError("adversarial_cka reports REC minus FF (Figure 3): list both architectures, ff and rec.")

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


def _callback(analysis: str, options: dict) -> dict:
    args = {k: v for k, v in options.items() if k not in OWN_OPTIONS.get(analysis, set())}
    return {"class_path": ANALYSIS_CALLBACKS[analysis], "init_args": args}


def _attacks_with_ann(spec: Spec) -> list[str]:
    """The FGSM analyses of the spec that craft their attack on the seed's trained ANN."""
    return [a for a in ATTACKED if a in spec.analyses and spec.analyses[a].get("attack_model", "ann") == "ann"
            and not spec.analyses[a].get("ann_checkpoint")]


def _conversion_jobs(spec: Spec, dataset: str) -> dict[int, Job]:
    """One ANN->SNN conversion run per seed, when Figure 2 compares with it or an FGSM analysis attacks with its ANN."""
    compared = bool((spec.analyses.get("cka") or {}).get("conversion"))
    if not compared and not _attacks_with_ann(spec):
        return {}
    template = (spec.analyses.get("cka") or {}).get("conversion") or _ann_template(spec, dataset)
    return {seed: Job("train", dataset, "conversion", "ff", seed, _base_config(spec, dataset, "conversion", "ff", seed, template))
            for seed in spec.seeds}


def _ann_template(spec: Spec, dataset: str) -> str:
    """The conversion config of FGSM's ANN without ``cka.conversion``: the spec's own template's, if it has one."""
    own = spec.datasets[dataset].get("config") or spec.config
    found = resolve_path(own.format(dataset=dataset, rule="conversion", arch="ff"), _anchors(spec.path))
    return own if found is not None and found.is_file() else DEFAULT_CONVERSION_CONFIG


def _train_callbacks(spec: Spec, ann: Optional[Job]) -> list[dict]:
    """The analysis callbacks of a main training run; FGSM analyses get ``ann``'s checkpoint to attack with."""
    attacked = _attacks_with_ann(spec) if ann is not None else []
    return [_callback(a, {**spec.analyses[a], **({"ann_checkpoint": PLACEHOLDER % ann.key} if a in attacked else {})})
            for a in ("fgsm", "adversarial_cka", "fisher") if a in spec.analyses]


def expand(spec: Spec) -> list[Job]:
    """All jobs of the grid: conversion runs (FGSM's ANN, Figure 2), training runs, then the CKA tests that need them."""
    jobs: list[Job] = []
    backdoor = spec.analyses.get("backdoor")
    cka = spec.analyses.get("cka")
    for dataset in spec.datasets:
        models: dict[tuple[str, str, int], str] = {}
        conversions = _conversion_jobs(spec, dataset)
        jobs += list(conversions.values())
        if spec.tune is not None:
            jobs += [tune_job(spec, dataset, rule, arch) for rule in spec.rules for arch in spec.architectures]
        for rule in spec.rules:
            for arch in spec.architectures:
                for seed in spec.seeds:
                    ann = conversions.get(seed) if _attacks_with_ann(spec) else None
                    config = _with_callbacks(_base_config(spec, dataset, rule, arch, seed), _train_callbacks(spec, ann))
                    deps = tuning_deps(config) + ((ann.key,) if ann is not None else ())
                    job = Job("train", dataset, rule, arch, seed, config, deps=deps)
                    jobs.append(job)
                    models[(rule, arch, seed)] = job.key
        if backdoor is not None:
            jobs += _backdoor_jobs(spec, dataset, backdoor)
        if cka is not None:
            compared = {seed: job.key for seed, job in conversions.items()} if cka.get("conversion") else {}
            jobs += _cka_jobs(spec, dataset, cka, models, compared)
    return jobs


def _backdoor_jobs(spec: Spec, dataset: str, options: dict) -> list[Job]:
    jobs = []
    extra = {k: v for k, v in options.items() if k not in OWN_OPTIONS["backdoor"]}  # e.g. trigger
    pairs = None
    for rule in spec.rules:
        for arch in spec.architectures:
            for pair_index in range(options["pairs"]):
                seed = spec.seeds[pair_index % len(spec.seeds)]
                base = _base_config(spec, dataset, rule, arch, seed)
                if pairs is None:
                    cls = _dataset_class(base)
                    if cls is None or not getattr(cls, "class_names", None):
                        raise SpecError(f"Backdoor runs need an event data module with class names; {dataset}'s "
                                        f"config names {(base.get('data') or {}).get('class_path')!r}.")
                    try:
                        pairs = distinct_pairs(len(cls.class_names), options["pairs"], options["pair_seed"])
                    except ValueError as error:
                        raise SpecError(f"backdoor.pairs: {error}") from None
                source, target = pairs[pair_index]
                for rate in options["poison_rates"]:
                    config = copy.deepcopy(base)
                    config["data"] = {"class_path": BACKDOOR_DATA, "init_args": {
                        "base": base["data"], "poison_rate": rate, "source": source, "target": target,
                        "seed": pair_index, **extra}}
                    config = _with_callbacks(config, [_callback("backdoor", {})])
                    variant = {"poison_rate": rate, "pair": pair_index, "source": source, "target": target}
                    jobs.append(Job("train", dataset, rule, arch, seed, config, variant, deps=tuning_deps(config)))
    return jobs


def _cka_jobs(spec: Spec, dataset: str, options: dict, models: dict, conversion: dict[int, str]) -> list[Job]:
    """Figure 2: per arch and seed every rule against the later rules and the seed's converted SNN
    (``conversion``: seed -> its run's key; CKA is symmetric, so each pair is tested once)."""
    out = []
    callback_options = {k: v for k, v in options.items() if k not in OWN_OPTIONS["cka"]}
    for arch in options["architectures"]:
        for seed in spec.seeds:
            for i, rule in enumerate(spec.rules):
                references = [(r, models[(r, arch, seed)]) for r in spec.rules[i + 1:]]
                if seed in conversion:
                    references.append(("conversion", conversion[seed]))
                if not references:
                    continue
                own = models[(rule, arch, seed)]
                config = _base_config(spec, dataset, rule, arch, seed)
                config.setdefault("trainer", {})["callbacks"] = [_callback("cka", {
                    **callback_options, "references": [PLACEHOLDER % key for _, key in references]})]
                config["ckpt_path"] = PLACEHOLDER % own
                variant = {"references": [r for r, _ in references], "reference_keys": [k for _, k in references]}
                out.append(Job("cka", dataset, rule, arch, seed, config, variant, deps=(own, *(k for _, k in references))))
    return out


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
