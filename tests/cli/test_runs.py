"""Run folders through the command line: last.ckpt, resuming in place, concurrent runs, divergence."""

from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lightning_local.cli.main import main
from lightning_local.runs import DivergenceStop, TrainingDivergedError, reserve_version

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "tests")}


def run_args(root: Path, save_dir: Path, epochs: int) -> list[str]:
    return [
        "--data", "nmnist", "--data.root", str(root), "--data.batch_size", "32", "--data.n_time_bins", "20",
        "--seed_everything", "5", "--trainer.max_epochs", str(epochs), "--trainer.limit_train_batches", "3",
        "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.save_dir", str(save_dir),
    ]


def rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lightning_local.cli.main", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=900)


def test_last_checkpoint_is_the_last_epoch_and_csv_has_epoch_columns(nmnist_small, tmp_path):
    # val_acc peaks early in this run, so Lightning's save_last would leave last.ckpt at that epoch
    main(["fit", *run_args(nmnist_small, tmp_path, epochs=3), "--model.lr", "0.05"])
    run = tmp_path / "lightning_logs" / "version_0"
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 9)
    table = rows(run)
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"} <= set(table[0])
    assert not any(key.endswith(("_step", "_epoch")) for key in table[0])
    assert [int(r["epoch"]) for r in table if r["train_loss"]] == [0, 1, 2]


@pytest.mark.slow
def test_killed_and_resumed_run_equals_an_uninterrupted_one(nmnist_small, tmp_path):
    # all three as processes with one thread each: bit-identical float sums
    whole = cli(["fit", *run_args(nmnist_small, tmp_path / "whole", epochs=3)], tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = cli(["fit", *run_args(nmnist_small, tmp_path / "parts", epochs=3),
                  "--trainer.callbacks+=support.callbacks.KillAtEpoch", "--trainer.callbacks.epoch", "2"], tmp_path)
    assert killed.returncode == 17, killed.stderr[-3000:]
    run = tmp_path / "parts" / "lightning_logs" / "version_0"
    assert {int(r["epoch"]) for r in rows(run)} == {0, 1}
    resumed = cli(["fit", *run_args(nmnist_small, tmp_path / "parts", epochs=3), "--ckpt_path", "last"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [p.name for p in (tmp_path / "parts" / "lightning_logs").iterdir()] == ["version_0"]  # resumed in place
    assert rows(run) == rows(tmp_path / "whole" / "lightning_logs" / "version_0")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["ckpt_path"].endswith("version_0/checkpoints/last.ckpt")


def test_resume_from_an_explicit_path_keeps_its_folder_and_drops_later_rows(nmnist_small, tmp_path):
    main(["fit", *run_args(nmnist_small, tmp_path, epochs=2), "--test_after_fit", "false"])
    run = tmp_path / "lightning_logs" / "version_0"
    before = rows(run)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 1
    main(["fit", *run_args(nmnist_small, tmp_path, epochs=1), "--test_after_fit", "false",
          "--trainer.logger.init_args.version", "7"])
    main(["fit", *run_args(nmnist_small, tmp_path, epochs=2), "--test_after_fit", "false",
          "--ckpt_path", str(tmp_path / "lightning_logs" / "version_7" / "checkpoints" / "last.ckpt")])
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["version_0", "version_7"]
    assert rows(tmp_path / "lightning_logs" / "version_7") == before


@pytest.mark.slow
def test_concurrent_runs_never_share_a_folder(nmnist_small, tmp_path):
    args = ["fit", *run_args(nmnist_small, tmp_path / "runs", epochs=1), "--trainer.limit_train_batches", "1",
            "--trainer.limit_val_batches", "1", "--test_after_fit", "false"]
    procs = [subprocess.Popen([sys.executable, "-m", "lightning_local.cli.main", *args], cwd=tmp_path, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
    runs = sorted((tmp_path / "runs" / "lightning_logs").iterdir())
    assert [p.name for p in runs] == ["version_0", "version_1"]
    for run in runs:
        assert len(rows(run)) == 2 and (run / "checkpoints" / "last.ckpt").is_file()


def test_reserve_version_skips_taken_folders(tmp_path):
    (tmp_path / "version_0").mkdir()
    (tmp_path / "version_3").mkdir()
    assert reserve_version(tmp_path)[0] == 4
    assert reserve_version(tmp_path)[0] == 5


def small_copy(nmnist_small: Path, root: Path, per_class: int = 3) -> Path:
    """A few real recordings per digit in the N-MNIST layout."""
    for digit in range(10):
        (root / "Train" / str(digit)).mkdir(parents=True)
        for i, file in enumerate(sorted((nmnist_small / "Train" / str(digit)).glob("*.bin"))[:per_class]):
            shutil.copy(file, root / "Train" / str(digit) / f"{i:05d}.bin")
    return root


def test_failed_run_leaves_no_empty_folder(nmnist_small, tmp_path, capsys):
    root = small_copy(nmnist_small, tmp_path / "data")
    (root / "Train" / "3" / "00000.bin").write_bytes(b"\x00" * 7)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--data", "nmnist", "--data.root", str(root), "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    assert "00000.bin" in capsys.readouterr().err
    assert list((tmp_path / "runs" / "lightning_logs").iterdir()) == []


def test_divergence_stops_with_one_line_naming_the_last_good_checkpoint(nmnist_small, tmp_path, capfd):
    main(["fit", *run_args(nmnist_small, tmp_path, epochs=1), "--test_after_fit", "false"])
    capfd.readouterr()
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *run_args(nmnist_small, tmp_path, epochs=3), "--ckpt_path", "last", "--divergence.max_loss", "0.5"])
    assert exit_info.value.code == 2
    line = capfd.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("lightning-local: error: training diverged at epoch 1, step 4: the training loss")
    assert "exceeds the divergence bound 0.5" in line and f"the last good checkpoint is {last}" in line
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0  # not overwritten by the bad epoch


def test_huge_learning_rate_stops_the_run_by_default(nmnist_small, tmp_path, capfd):
    with pytest.raises(SystemExit) as exit_info:  # the example: losses of 1e5..1e6 at chance accuracy
        main(["fit", *run_args(nmnist_small, tmp_path, epochs=2), "--model.lr", "1e3"])
    assert exit_info.value.code == 2
    line = capfd.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("lightning-local: error: training diverged at epoch 0")
    assert "exceeds the divergence bound 1000" in line and "no checkpoint was saved before it" in line


class _Strategy:
    @staticmethod
    def reduce_boolean_decision(decision: bool, all: bool = True) -> bool:
        return decision


class _Trainer:
    def __init__(self, loss: float, last: str = "") -> None:
        self.callback_metrics = {"loss": torch.tensor(loss)}
        self.strategy, self.current_epoch, self.global_step = _Strategy(), 3, 40
        self.checkpoint_callbacks = [type("C", (), {"last_model_path": last, "best_model_path": ""})()]


@pytest.mark.parametrize("loss, says", [(float("nan"), "the training loss is nan"), (float("inf"), "the training loss is inf"),
                                        (12.0, "the training loss 12 exceeds the divergence bound 10")])
def test_divergence_stop_names_the_problem_and_checkpoint(tmp_path, loss, says):
    last = tmp_path / "last.ckpt"
    last.write_bytes(b"x")
    with pytest.raises(TrainingDivergedError) as info:
        DivergenceStop(max_loss=10).on_train_batch_start(_Trainer(loss, str(last)), None, None, 0)
    assert str(info.value) == (f"training diverged at epoch 3, step 40: {says}; the last good checkpoint is {last} "
                               "(lower --model.lr, or change --divergence.max_loss).")
    DivergenceStop(max_loss=10).on_train_epoch_end(_Trainer(9.5), None)  # sane: nothing happens
    if math.isfinite(loss):
        DivergenceStop(max_loss=None).on_train_epoch_end(_Trainer(loss), None)


@pytest.mark.parametrize("choice", [
    ["--data", "dvsgesture"],
    ["--data", "lightning_local.data.dvsgesture.DVSGesture"],
    ["--data=DVSGesture"],
    ["--config", "CONFIG"],
])
def test_each_data_module_gets_its_own_defaults(tmp_path, capsys, choice):
    config = tmp_path / "data.yaml"
    config.write_text(yaml.safe_dump({"data": {"class_path": "lightning_local.data.dvsgesture.DVSGesture",
                                               "init_args": {"root": "x"}}}))
    choice = [str(config) if token == "CONFIG" else token for token in choice]
    with pytest.raises(SystemExit):
        main(["fit", *choice, "--data.root", "x", "--print_config"])
    data = yaml.safe_load(capsys.readouterr().out)["data"]
    assert data["class_path"] == "lightning_local.data.dvsgesture.DVSGesture"
    assert {k: data["init_args"][k] for k in ("n_time_bins", "downsample", "batch_size")} == {
        "n_time_bins": 60, "downsample": 4, "batch_size": 32}
