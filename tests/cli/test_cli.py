"""The `lightning-local` command run through its own `main([...])` on the real recordings."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from lightning_local.cli import benchmark as benchmark_command
from lightning_local.cli import tune as tune_command
from lightning_local.cli.main import expand_short_names, main
from lightning_local.cli.subcommand import summary

REPO = Path(__file__).resolve().parents[2]


def nmnist_args(root: Path) -> list[str]:
    return ["--data", "nmnist", "--data.root", str(root), "--data.batch_size", "32", "--data.n_time_bins", "30"]


def read_metrics(run_root: Path) -> list[dict[str, str]]:
    (metrics_file,) = run_root.rglob("metrics.csv")
    with metrics_file.open() as handle:
        return list(csv.DictReader(handle))


def logged(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(row[key]) for row in rows if row.get(key)]


def test_fit_logs_checkpoints_and_tests(nmnist_small, fast_trainer_args, tmp_path):
    main(["fit", "--learner", "bptt", *nmnist_args(nmnist_small), *fast_trainer_args])
    rows = read_metrics(tmp_path / "runs")
    assert logged(rows, "train_loss") and logged(rows, "train_acc") and logged(rows, "val_acc") and logged(rows, "val_loss")
    (test_acc,) = logged(rows, "test_acc")  # fit ends with a test of the best checkpoint
    assert 0.0 <= test_acc <= 1.0
    checkpoints = {p.name for p in (tmp_path / "runs").rglob("*.ckpt")}
    assert "last.ckpt" in checkpoints and any(name.startswith("best-") for name in checkpoints)
    (config,) = (tmp_path / "runs").rglob("config.yaml")
    saved = yaml.safe_load(config.read_text())
    assert saved["learner"]["class_path"] == "lightning_local.plugins.bptt.BPTT"


def test_validate_and_test_take_a_checkpoint(nmnist_small, fast_trainer_args, tmp_path):
    main(["fit", "--model.architecture", "rec", *nmnist_args(nmnist_small), *fast_trainer_args, "--test_after_fit", "false"])
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    assert "network.layers.0.recurrent.weight" in checkpoint["state_dict"]
    for subcommand, metric in (("validate", "val_acc"), ("test", "test_acc")):
        logs = tmp_path / subcommand
        main([subcommand, "--model.architecture", "rec", *nmnist_args(nmnist_small),
              "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
              "--trainer.logger.init_args.save_dir", str(logs), "--ckpt_path", str(last)])
        assert logged(read_metrics(logs), metric)


def test_custom_callback_from_command_line_and_config(nmnist_small, fast_trainer_args, tmp_path):
    record = tmp_path / "record.json"
    main(["fit", *nmnist_args(nmnist_small), *fast_trainer_args, "--test_after_fit", "false",
          "--trainer.callbacks+=support.callbacks.RecordEpochs", f"--trainer.callbacks.path={record}"])
    seen = json.loads(record.read_text())
    assert seen["epochs"] == [0] and "val_acc" in seen["metrics"]

    record.unlink()
    config = tmp_path / "callbacks.yaml"
    config.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "support.callbacks.RecordEpochs", "init_args": {"path": str(record)}}]}}))
    main(["fit", "--config", str(config), *nmnist_args(nmnist_small), *fast_trainer_args, "--test_after_fit", "false"])
    assert json.loads(record.read_text())["epochs"] == [0]


def test_same_seed_gives_identical_metrics(nmnist_small, tmp_path):
    def run(name: str) -> list[dict[str, str]]:
        main(["fit", "--seed_everything", "7", *nmnist_args(nmnist_small), "--trainer.max_epochs", "2",
              "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
              "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
              "--trainer.logger.init_args.save_dir", str(tmp_path / name)])
        return read_metrics(tmp_path / name)

    first, second = run("a"), run("b")
    assert len(logged(first, "train_loss")) == 2 and len(logged(first, "val_acc")) == 2
    assert first == second


def test_print_config_shows_the_resolved_config(nmnist_small, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--learner", "bptt", "--model.architecture", "rec", *nmnist_args(nmnist_small), "--print_config"])
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["learner"]["class_path"] == "lightning_local.plugins.bptt.BPTT"
    assert config["model"]["architecture"] == "rec"
    assert config["data"]["class_path"] == "lightning_local.data.nmnist.NMNIST"
    assert config["data"]["init_args"]["n_time_bins"] == 30


def test_unknown_learner_and_dataset_names_list_the_available_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--learner", "hebbian_magic"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "Unknown learner 'hebbian_magic'" in message and "bptt" in message
    with pytest.raises(SystemExit):
        main(["fit", "--data=cifar_dvs"])
    assert "nmnist" in capsys.readouterr().err


def test_help_lists_tune_and_benchmark_as_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # the help wraps its lines
    assert "{fit,validate,test,predict,tune,benchmark}" in out
    listed = out.split("Available subcommands:", 1)[1]
    for name, module in (("tune", tune_command), ("benchmark", benchmark_command)):
        assert f" {name} {summary(module.__doc__)}" in listed


def test_a_command_modules_help_line_is_its_docstrings_first_line():
    assert summary(benchmark_command.__doc__) == "Run a spec's grid of runs, resumable, and write its report."
    assert summary("``lightning-local tune``: search.\n\nMore.") == "Search."
    assert summary("Plain first line.\nSecond.") == "Plain first line."


@pytest.mark.parametrize("name", ["tune", "benchmark"])
def test_tune_and_benchmark_print_their_own_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: lightning-local {name} [-h] --config CONFIG") and "Examples:" in out


@pytest.mark.parametrize("name", ["tune", "benchmark"])
def test_tune_or_benchmark_after_an_option_is_one_line(name, tmp_path, capsys):
    config = tmp_path / "empty.yaml"
    config.write_text("{}")
    for args in ([], ["--trials", "2"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["--config", str(config), name, *args])
        assert exit_info.value.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line == (f"lightning-local: error: `{name}` must be the first word of the command line: "
                        f"lightning-local {name} [options] (see lightning-local {name} --help).")


def test_short_names_expand_to_class_paths():
    assert expand_short_names(["fit", "--learner", "BPTT", "--data=nmnist", "--data.root", "x"]) == [
        "fit", "--learner", "lightning_local.plugins.bptt.BPTT",
        "--data=lightning_local.data.nmnist.NMNIST", "--data.root", "x",
    ]
    assert expand_short_names(["--data.base", "nmnist"]) == ["--data.base", "lightning_local.data.nmnist.NMNIST"]
    # full class paths and config files pass through untouched
    assert expand_short_names(["--learner", "pkg.Rule", "--data", "d.yaml"]) == ["--learner", "pkg.Rule", "--data", "d.yaml"]


def test_missing_data_offline_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--data", "nmnist", "--data.root", str(tmp_path / "nowhere"), "--data.download", "false",
              "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lightning-local: error:")]
    assert "N-MNIST not found" in line and "Train/<digit>/*.bin" in line


# One step and no validation: the best-checkpoint callback has no val_acc to monitor yet.
@pytest.mark.filterwarnings("ignore:`ModelCheckpoint\\(monitor='val_acc'\\)` could not find")
@pytest.mark.parametrize("learner", ["bptt", "eprop"])
def test_sparse_training_batches_train_like_dense_ones(learner, nmnist_small, fast_trainer_args, tmp_path):
    """`--data.sparse_input true` on real recordings gives the dense run's numbers.

    eprop gets the sparse batches densified: the same weights exactly. bptt projects them
    itself: the first batch's loss agrees to float32 rounding (the gradients are compared in
    tests/models/test_sparse_input.py; after an Adam step, weights whose gradient is rounding
    noise around zero move by up to ``lr`` either way, so later weights are not comparable).
    """
    def run(name: str, sparse: bool) -> tuple[list[dict[str, str]], dict[str, torch.Tensor]]:
        args = [arg.replace(str(tmp_path / "runs"), str(tmp_path / name)) for arg in fast_trainer_args]
        main(["fit", "--learner", learner, *nmnist_args(nmnist_small), *args, "--trainer.max_steps", "1",
              "--seed_everything", "3", "--test_after_fit", "false", "--data.sparse_input", str(sparse).lower()])
        (last,) = (tmp_path / name).rglob("last.ckpt")
        return read_metrics(tmp_path / name), torch.load(last, map_location="cpu", weights_only=False)["state_dict"]

    (dense_rows, dense), (sparse_rows, sparse) = run("dense", False), run("sparse", True)
    assert logged(sparse_rows, "train_loss") == pytest.approx(logged(dense_rows, "train_loss"), rel=1e-6)
    if learner != "bptt":
        for key in dense:
            assert torch.equal(sparse[key], dense[key]), key


@pytest.mark.parametrize("limit, steps", [("1", 1), ("2", 2), ("1.0", 18)])
def test_limit_train_batches_one_means_one_batch(limit, steps, nmnist_small, tmp_path):
    """Lightning reads ints as batches and floats as fractions; its float-first annotation made `1` the whole epoch."""
    main(["fit", "--learner", "bptt", *nmnist_args(nmnist_small), "--trainer.max_epochs", "1",
          "--trainer.limit_train_batches", limit, "--trainer.limit_val_batches", "1", "--test_after_fit", "false",
          "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == steps  # 575 / 32 -> 18 batches


@pytest.mark.filterwarnings("ignore:`ModelCheckpoint\\(monitor='val_acc'\\)` could not find")
@pytest.mark.parametrize("learner, flags, frames", [
    ("bptt", [], "SparseFrames"),                              # CPU, a rule that takes sparse batches
    ("fa", [], "SparseFrames"),
    ("eprop", [], "Tensor"),                                   # densified anyway: not worth the index
    ("bptt", ["--data.sparse_input", "false"], "Tensor"),      # an explicit choice stands
    ("bptt", ["--data.frame_cache", "false"], "Tensor"),       # no cache, no index
])
def test_sparse_batches_are_the_cpu_default_for_rules_that_take_them(learner, flags, frames, nmnist_small, tmp_path):
    record = tmp_path / "record"
    main(["fit", "--learner", learner, *nmnist_args(nmnist_small), *flags, "--trainer.max_steps", "1",
          "--trainer.limit_val_batches", "1", "--test_after_fit", "false", "--trainer.enable_progress_bar", "false",
          "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
          "--trainer.callbacks+=support.callbacks.SaveRankWeights", f"--trainer.callbacks.directory={record}"])
    assert (record / "frames_rank0.txt").read_text() == frames
    (config,) = (tmp_path / "runs").rglob("config.yaml")
    assert yaml.safe_load(config.read_text())["data"]["init_args"]["sparse_input"] is (frames == "SparseFrames")
