"""The paper configs: generated from one table, parse through the CLI, and train."""

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


def test_committed_configs_match_the_table():
    on_disk = {path for path in CONFIGS.glob("*/*.yaml") if path.parent.name in make_configs.DATASETS}
    assert on_disk == set(GENERATED), "run `python configs/make_configs.py`"
    for path, text in GENERATED.items():
        assert path.read_text() == text, f"{path} is stale: run `python configs/make_configs.py`"


def test_every_dataset_learner_architecture_is_covered():
    names = {(p.parent.name, p.stem) for p in GENERATED}
    for dataset in ("nmnist", "dvsgesture"):
        for learner in ("bptt", "fa", "eprop", "decolle", "conversion"):
            for architecture in ("ff", "rec"):
                assert (dataset, f"{learner}_{architecture}") in names


@pytest.mark.parametrize("path", sorted(GENERATED), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_resolves_through_the_cli(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(path), "--print_config"])
    assert exit_info.value.code == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    expected = yaml.safe_load(path.read_text())
    assert resolved["learner"]["class_path"] == expected["learner"]["class_path"]
    assert resolved["model"]["architecture"] == expected["model"]["architecture"]
    assert resolved["trainer"]["max_epochs"] == expected["trainer"]["max_epochs"]


def test_a_paper_config_trains(nmnist_small, fast_trainer_args, tmp_path):
    main(["fit", "--config", str(CONFIGS / "nmnist" / "bptt_rec.yaml"), "--data.init_args.root", str(nmnist_small),
          "--data.init_args.n_time_bins", "20", *fast_trainer_args])
    assert list((tmp_path / "runs").rglob("last.ckpt"))
