"""The configs: generated from the tables, match Table VII, parse through the CLI, and train."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from lightning_local.cli.main import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
spec = importlib.util.spec_from_file_location("make_configs", CONFIGS / "make_configs.py")
make_configs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_configs)
GENERATED = make_configs.all_configs()


# The paper's Table VII as printed in ../shared/PAPER.md, restated here independently of
# make_configs.py: (dataset, rule, arch) -> (a, b, V_th, LR, batch, epochs).
PAPER_TABLE_VII = """
nmnist bptt ff 0.9 0.5 0.9 1e-4 16 100
nmnist eprop ff 0.99 0.95 0.2 5e-3 5 100
nmnist decolle ff 0.97 0.92 1.0 1e-3 72 100
nmnist bptt rec 0.9 0.5 0.9 1e-2 256 100
nmnist eprop rec 0.99 0.95 0.2 5e-3 4 100
nmnist decolle rec 0.97 0.92 1.0 1e-5 72 100
dvsgesture bptt ff 0.9 0.5 1.0 1e-3 16 100
dvsgesture eprop ff 0.95 0.65 0.3 1e-3 15 100
dvsgesture decolle ff 0.9 0.65 0.9 2e-4 72 100
dvsgesture bptt rec 0.95 0.5 0.9 1e-3 32 100
dvsgesture eprop rec 0.95 0.6 0.7 3e-3 15 100
dvsgesture decolle rec 0.05 0.2 1.0 3e-5 72 100
timit bptt ff 0.9 0.5 1.0 1e-3 8 100
timit eprop ff 0.99 0.3 1.0 5e-4 4 100
timit decolle ff 0.97 0.9 0.9 2e-4 128 100
timit bptt rec 0.9 0.7 1.0 1e-3 8 100
timit eprop rec 0.99 0.3 1.0 5e-4 4 100
timit decolle rec 0.97 0.3 1.0 1e-5 32 100
"""
PAPER_ROWS = [line.split() for line in PAPER_TABLE_VII.strip().splitlines()]
HIDDEN = {"nmnist": [120, 84], "dvsgesture": [512], "timit": [400]}
LEARNER_CLASSES = {"bptt": "BPTT", "eprop": "EProp", "decolle": "Decolle"}


def _importable(class_path: str) -> bool:
    module = class_path.rpartition(".")[0]
    return importlib.util.find_spec(module) is not None


def test_committed_configs_match_the_tables():
    on_disk = set(CONFIGS.glob("*/*.yaml")) | set(CONFIGS.glob("paper/*/*.yaml")) | set(CONFIGS.glob("**/conv/*.yaml"))
    on_disk = {p for p in on_disk if p.parent.name in make_configs.DATASETS or p.parent.name == "conv"}
    assert on_disk == set(GENERATED), "run `python configs/make_configs.py`"
    for path, text in GENERATED.items():
        assert path.read_text() == text, f"{path} is stale: run `python configs/make_configs.py`"


# Rules the paper does not cover run in the paper presets at the row their class names (Learner.paper_row).
BORROWED = {name: make_configs.learner_class(path).paper_row for name, path in make_configs.project_learners().items()
            if make_configs.learner_class(path).paper_row}
PAPER_CONFIGS = [(row, rule) for row in PAPER_ROWS for rule in [row[1], *(n for n, r in BORROWED.items() if r == row[1])]]


def test_the_rules_beyond_the_paper_borrow_bptts_row():
    assert {"ottt": "bptt", "sltt": "bptt", "ostl": "bptt"}.items() <= BORROWED.items()


@pytest.mark.parametrize("row, rule", PAPER_CONFIGS, ids=lambda r: "/".join(r[:3]) if isinstance(r, list) else r)
def test_paper_config_holds_table_vii(row, rule):
    dataset, row_rule, arch, a, b, v_th, lr, batch, epochs = row
    config = yaml.safe_load((CONFIGS / "paper" / dataset / f"{rule}_{arch}.yaml").read_text())
    model = config["model"]
    expected_class = LEARNER_CLASSES.get(rule) or make_configs.project_learners()[rule].rpartition(".")[2]
    assert config["learner"]["class_path"].endswith("." + expected_class)
    assert model["architecture"] == arch and model["hidden_sizes"] == HIDDEN[dataset]
    assert (model["alpha"], model["beta"], model["v_th"], model["lr"]) == (float(a), float(b), float(v_th), float(lr))
    assert "tau_syn" not in model and "tau_mem" not in model
    assert config["data"]["init_args"]["batch_size"] == int(batch)
    assert config["trainer"]["max_epochs"] == int(epochs)


def test_exactly_the_paper_configs():
    """The 18 of Table VII, and the same rows for the rules that borrow one: nothing else."""
    paper = {(p.parent.name, p.stem) for p in GENERATED if p.parent.parent.name == "paper"}
    assert paper == {(row[0], f"{rule}_{row[2]}") for row, rule in PAPER_CONFIGS}
    assert len([1 for row, rule in PAPER_CONFIGS if row[1] == rule]) == 18


def test_every_registered_learner_has_our_configs():
    names = {(p.parent.name, p.stem) for p in GENERATED if p.parent.parent == CONFIGS}
    for learner in make_configs.project_learners():
        for dataset in make_configs.OUR_DATASETS:
            for architecture in ("ff", "rec"):
                assert (dataset, f"{learner}_{architecture}") in names


# Appendix A's network, restated independently of make_configs.py.
APPENDIX_A = {"synapse": "conv", "channels": [64, 128, 128], "kernel_size": 7, "stride": 1, "padding": 1}


CONV_LEARNERS = make_configs.conv_learners()
PAPER_CONV = [(row, rule) for row, rule in PAPER_CONFIGS
              if row[0] == "dvsgesture" and (rule in ("bptt", "decolle") or (rule in BORROWED and rule in CONV_LEARNERS))]


@pytest.mark.parametrize("row, rule", PAPER_CONV, ids=lambda r: "/".join(r[1:3]) if isinstance(r, list) else r)
def test_paper_conv_configs_hold_appendix_a_with_table_vii_constants(row, rule):
    _, _, arch, a, b, v_th, lr, batch, epochs = row
    config = yaml.safe_load((CONFIGS / "paper" / "dvsgesture" / "conv" / f"{rule}_{arch}.yaml").read_text())
    model = config["model"]
    assert {key: model[key] for key in APPENDIX_A} == APPENDIX_A and "hidden_sizes" not in model
    assert (model["architecture"], model["alpha"], model["beta"], model["v_th"], model["lr"]) == (arch, float(a), float(b), float(v_th), float(lr))
    assert config["data"]["init_args"]["layout"] == "image" and config["data"]["init_args"]["batch_size"] == int(batch)


def test_paper_conv_configs_are_table_vi_and_the_borrowing_conv_rules():
    conv = {p.stem for p in GENERATED if p.parent.name == "conv" and p.parent.parent.parent.name == "paper"}
    assert conv == {f"{rule}_{row[2]}" for row, rule in PAPER_CONV}
    assert not any(p.stem.startswith("ostl_") for p in GENERATED if p.parent.name == "conv")  # OSTL is dense only


def test_every_registered_learner_that_trains_conv_nets_has_conv_configs():
    from lightning_local.learners import build_learner
    from lightning_local.learners.registry import LEARNER_GROUP, available

    conv = {(p.parent.parent.name, p.stem) for p in GENERATED if p.parent.name == "conv" and p.parent.parent.parent == CONFIGS}
    for name in available(LEARNER_GROUP):
        if not make_configs.project_learners().get(name):
            continue  # third-party plugins get no committed configs
        expected = not build_learner(name).linear_only
        for architecture in ("ff", "rec"):
            assert (("dvsgesture", f"{name}_{architecture}") in conv) == expected, name


PARSEABLE = sorted(p for p in GENERATED if _importable(yaml.safe_load(GENERATED[p])["data"]["class_path"]))


def test_only_configs_of_missing_data_modules_are_not_parsed():
    # TIMIT's data module arrives with the speech issue; everything else must parse.
    unparsed = {p.parent.name for p in set(GENERATED) - set(PARSEABLE)}
    assert unparsed <= {"timit"}


@pytest.mark.parametrize("path", PARSEABLE, ids=lambda p: str(p.relative_to(CONFIGS).with_suffix("")))
def test_config_resolves_through_the_cli(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(path), "--print_config"])
    assert exit_info.value.code == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    expected = yaml.safe_load(path.read_text())
    assert resolved["learner"]["class_path"] == expected["learner"]["class_path"]
    assert resolved["model"]["architecture"] == expected["model"]["architecture"]
    assert resolved["trainer"]["max_epochs"] == expected["trainer"]["max_epochs"]
    for key in ("alpha", "beta", "v_th", "lr"):
        if key in expected["model"]:
            assert resolved["model"][key] == expected["model"][key]


@pytest.mark.parametrize("config", ["nmnist/bptt_rec.yaml", "paper/nmnist/eprop_rec.yaml"])
def test_a_config_trains(config, nmnist_small, fast_trainer_args, tmp_path):
    main(["fit", "--config", str(CONFIGS / config), "--data.init_args.root", str(nmnist_small),
          "--data.init_args.n_time_bins", "20", *fast_trainer_args])
    assert list((tmp_path / "runs").rglob("last.ckpt"))


TUNED = sorted((CONFIGS / "tuned").glob("*/*.yaml"))


def test_the_tuned_configs_cover_every_rule_and_architecture_of_their_benchmark():
    """configs/tuned/nmnist_small/ is what nmnist_small_tuned.yaml exports: one file per rule x architecture."""
    spec = yaml.safe_load((CONFIGS / "benchmark" / "nmnist_small_tuned.yaml").read_text())
    expected = {f"{rule}_{arch}.yaml" for rule in spec["rules"] for arch in spec["architectures"]}
    assert spec["tune"]["export"].startswith("configs/tuned/nmnist_small/")
    assert {p.name for p in TUNED if p.parent.name == "nmnist_small"} == expected


@pytest.mark.parametrize("path", TUNED, ids=lambda p: str(p.relative_to(CONFIGS).with_suffix("")))
def test_tuned_config_resolves_through_the_cli_with_its_tuned_values(path, capsys, monkeypatch):
    monkeypatch.chdir(CONFIGS.parent)  # their data root is relative to the repository
    text = path.read_text()
    assert text.startswith("# Tuned settings for ") and "lightning-local benchmark --config" in text
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(path), "--print_config"])
    assert exit_info.value.code == 0
    resolved, written = yaml.safe_load(capsys.readouterr().out), yaml.safe_load(text)
    assert resolved["model"]["lr"] == written["model"]["lr"]
    assert resolved["data"]["init_args"]["batch_size"] == written["data"]["init_args"]["batch_size"]
