"""Spec checks fail before any run with one line; the grid expands as documented; presets load."""

from __future__ import annotations

import copy

import pytest

from lightning_local.benchmark.spec import PLACEHOLDER, SpecError, expand, load_spec, merge, nest
from lightning_local.cli.main import main
from lightning_local.cli.resolve import validate_config
from lightning_local.data.backdoor import distinct_pairs

from benchmark_helpers import REPO, tiny_spec, write_spec


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", *args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.mark.parametrize(
    "change, message",
    [
        ({"rules": ["bptt", "backprop"]}, "Unknown rule 'backprop'"),
        ({"datasets": {"mnist": {}}}, "Unknown dataset 'mnist'"),
        ({"analyses": {"fgsm": {}, "saliency": {}}}, "Unknown analysis 'saliency'"),
        ({"config": "configs/nope/{rule}_{arch}.yaml"}, "Config file configs/nope/bptt_ff.yaml"),
        ({"config": "configs/paper_missing/{dataset}/{rule}_{arch}.yaml"}, "does not exist"),
        ({"architectures": ["ff", "lstm"]}, "Unknown architecture 'lstm'"),
        ({"seeds": [0, 0]}, "distinct integers"),
        ({"epochs": 3}, "Unknown key(s) ['epochs']"),
        ({"analyses": {"backdoor": {"poison_rates": [1.5]}}}, "poison_rates"),
        ({"analyses": {"backdoor": {"pairs": 91}}}, "backdoor.pairs"),
        ({"analyses": {"adversarial_cka": {}}}, "list both architectures"),
        # a typo in an override is caught by the CLI parser before any run starts
        ({"overrides": {"model.hidden_size": [4]}}, "hidden_size"),
        # an analysis's options are checked against its callback's arguments (the data module's, for backdoor)
        ({"analyses": {"fgsm": {"epsilon": [0.1]}}}, "Unknown option(s) ['epsilon'] for analysis 'fgsm'"),
        ({"analyses": {"backdoor": {"trigger_value": 1, "triger": [[0, 1, 1]]}}},
         "Unknown option(s) ['triger'] for analysis 'backdoor'"),
        ({"analyses": {"fisher": []}}, "options of analysis 'fisher' must be a mapping"),
    ],
)
def test_bad_spec_fails_with_one_line_before_any_run(tmp_path, capsys, tiny_digits, change, message):
    spec = write_spec(tmp_path, tiny_spec(tiny_digits, **change))
    code, out, err = run_cli(["--config", str(spec), "--output", str(tmp_path / "out")], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lightning-local: error: "), err
    assert message in lines[0]
    if message == "hidden_size":
        assert "The config of saccade_digits bptt FF seed 0" in lines[0]
    assert not (tmp_path / "out").exists(), "nothing may start (not even the store) when the spec is wrong"


def test_unregistered_dataset_lists_the_available_ones(tmp_path, tiny_digits, monkeypatch):
    from lightning_local.benchmark import spec as spec_module

    registered = spec_module.available
    monkeypatch.setattr(spec_module, "available", lambda group: {k: v for k, v in registered(group).items() if k != "timit"})
    with pytest.raises(SpecError, match="Unknown dataset 'timit'.*available datasets are .*nmnist"):
        load_spec(write_spec(tmp_path, tiny_spec(tiny_digits, datasets={"timit": {}})), validate_config)


def test_run_configs_are_parsed_only_by_the_validator_given(tmp_path, tiny_digits):
    """load_spec parses no run config itself: the command line passes its own validator (no import of the CLI)."""
    spec = tiny_spec(tiny_digits, rules=["bptt", "eprop"], seeds=[0, 1], overrides={"model.hidden_size": [4]})
    path = write_spec(tmp_path, spec)
    assert len(expand(load_spec(path))) == 4  # no validator: the typo goes unnoticed
    with pytest.raises(SpecError, match=r"^The config of saccade_digits bptt FF seed 0 does not parse: .*hidden_size"):
        load_spec(path, validate_config)
    checked = []
    load_spec(path, lambda config, subcommand: checked.append((config["learner"]["class_path"], subcommand)))
    assert sorted(checked) == [("lightning_local.plugins.bptt.BPTT", "fit"), ("lightning_local.plugins.eprop.EProp", "fit")]

    def refuse(config, subcommand):
        raise RuntimeError("no GPU here")

    with pytest.raises(SpecError, match=r"^The config of saccade_digits bptt FF seed 0 does not parse: no GPU here$"):
        load_spec(path, refuse)


def test_missing_spec_and_root_and_bad_flag(tmp_path, capsys, tiny_digits):
    code, _, err = run_cli(["--config", str(tmp_path / "none.yaml")], capsys)
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    spec = tiny_spec(tiny_digits)
    spec["datasets"]["saccade_digits"]["root"] = str(tmp_path / "no_data")
    code, _, err = run_cli(["--config", str(write_spec(tmp_path, spec))], capsys)
    assert code == 2 and "Data root" in err
    code, _, err = run_cli(["--config", str(write_spec(tmp_path, tiny_spec(tiny_digits))), "--workerz", "2"], capsys)
    assert code == 2 and err.startswith("lightning-local: error: benchmark: unrecognized arguments") and err.count("\n") == 1


def test_merge_and_nest():
    base = {"data": {"class_path": "a.A", "init_args": {"root": "x", "n": 1}}, "trainer": {"max_epochs": 3, "x": [1]}}
    assert merge(base, {"data": {"init_args": {"n": 2}}})["data"] == {"class_path": "a.A", "init_args": {"root": "x", "n": 2}}
    # another class replaces the whole section: the old init_args would not fit
    assert merge(base, {"data": {"class_path": "b.B", "init_args": {"m": 1}}})["data"] == {"class_path": "b.B", "init_args": {"m": 1}}
    assert merge(base, {"trainer": {"x": [2]}})["trainer"] == {"max_epochs": 3, "x": [2]}
    assert base["data"]["init_args"]["n"] == 1, "merge does not mutate"
    assert nest({"trainer.max_epochs": 2, "trainer": {"limit_train_batches": 3}, "model.hidden_sizes": [4]}) == {
        "trainer": {"max_epochs": 2, "limit_train_batches": 3}, "model": {"hidden_sizes": [4]}}


def test_grid_expansion_keys_and_dependencies(tmp_path, tiny_digits):
    analyses = {"fgsm": {"epsilons": [0.05]}, "fisher": {"num_samples": 4}, "adversarial_cka": {"epsilons": [0.05]},
                "backdoor": {"poison_rates": [0.1, 0.5], "pairs": 3},
                "cka": {"num_samples": 16, "conversion": str(REPO / "configs/nmnist/conversion_ff.yaml")}}
    raw = tiny_spec(tiny_digits, rules=["bptt", "eprop"], architectures=["ff", "rec"], seeds=[0, 1], analyses=analyses)
    spec = load_spec(write_spec(tmp_path, raw))
    jobs = expand(spec)
    kinds = [(j.kind, j.rule, "poison_rate" in j.variant) for j in jobs]
    assert kinds.count(("train", "bptt", False)) == 4 and kinds.count(("train", "eprop", False)) == 4
    assert sum(1 for k in kinds if k[2]) == 2 * 2 * 2 * 3  # rules x archs x rates x pairs
    assert kinds.count(("train", "conversion", False)) == 2  # one converted SNN per seed
    cka = [j for j in jobs if j.kind == "cka"]
    assert len(cka) == 2 * 2 * 2  # archs x seeds x (bptt vs eprop+conversion, eprop vs conversion)
    keys = {j.key for j in jobs}
    assert len(keys) == len(jobs), "every run has its own key"
    for job in cka:  # dependencies are runs of the grid with the same arch (conversion: FF) and seed
        deps = [next(j for j in jobs if j.key == d) for d in job.deps]
        assert all(d.seed == job.seed and d.arch in (job.arch, "ff") for d in deps)
        assert [d.rule for d in deps[1:]] == job.variant["references"]
    # the backdoor pairs are the data module's distinct draw, the same at every poison rate
    pairs = {(j.variant["pair"], j.variant["source"], j.variant["target"]) for j in jobs if "poison_rate" in j.variant}
    assert sorted((s, t) for _, s, t in pairs) == sorted(distinct_pairs(10, 3, 0))
    train = next(j for j in jobs if j.kind == "train" and j.rule == "bptt" and not j.variant)
    names = [c["class_path"].rsplit(".", 1)[1] for c in train.config["trainer"]["callbacks"]]
    assert names == ["FGSMTransfer", "AdversarialCKA", "FisherInformation"]
    assert train.config["data"]["init_args"]["root"] == str(tiny_digits)
    # FGSM is crafted on the seed's conversion ANN: every main run of a seed (FF and REC) names the same checkpoint
    conversion = {j.seed: j.key for j in jobs if j.rule == "conversion"}
    for job in (j for j in jobs if j.kind == "train" and not j.variant and j.rule != "conversion"):
        attacked = [c["init_args"] for c in job.config["trainer"]["callbacks"] if c["class_path"].endswith(("FGSMTransfer", "AdversarialCKA"))]
        assert [a["ann_checkpoint"] for a in attacked] == [PLACEHOLDER % conversion[job.seed]] * 2
        assert conversion[job.seed] in job.deps
    opted_out = copy.deepcopy(raw)
    opted_out["analyses"] = {"fgsm": {"epsilons": [0.05], "attack_model": "counterpart"}}
    assert not any(j.rule == "conversion" for j in expand(load_spec(write_spec(tmp_path, opted_out))))
    # keys are a function of the run config: same spec -> same keys, one changed override -> all train keys change
    assert [j.key for j in expand(load_spec(write_spec(tmp_path, raw)))] == [j.key for j in jobs]
    changed = copy.deepcopy(raw)
    changed["overrides"]["trainer"]["max_epochs"] = 3
    new_keys = {j.key for j in expand(load_spec(write_spec(tmp_path, changed)))}
    assert not new_keys & keys


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO / "configs" / "benchmark").glob("*.yaml")))
def test_presets_load(preset, monkeypatch):
    monkeypatch.chdir(REPO)
    path = REPO / "configs" / "benchmark" / preset
    text = path.read_text()
    if "configs/paper/" in text and not (REPO / "configs" / "paper").is_dir():
        pytest.skip("configs/paper/ (Table VII, written by configs/make_configs.py) is not generated yet")
    if "../shared/data/nmnist_small" in text and not (REPO.parent / "shared/data/nmnist_small").is_dir():
        pytest.skip("../shared/data/nmnist_small is not in this workplace")
    if "root: data/" in text and not (REPO / "data").is_dir():
        with pytest.raises(SpecError, match="Data root"):
            load_spec(path, validate_config)
        return
    jobs = expand(load_spec(path, validate_config))  # every distinct run config parses
    assert jobs and all(j.kind in ("train", "cka", "tune") for j in jobs)
    assert ("tune:" in text) == any(j.kind == "tune" for j in jobs)
    if preset == "smoke.yaml":
        train = [j for j in jobs if j.kind == "train" and not j.variant and j.rule != "conversion"]
        assert {(j.rule, j.arch, j.seed) for j in train} == {(r, a, s) for r in ("bptt", "eprop") for a in ("ff", "rec") for s in (0, 1)}
