"""``lightning-local tune`` end to end on the built-in saccade digits: best.yaml, resume, pruning, bad input, Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BPTT_FF = REPO / "configs" / "nmnist" / "bptt_ff.yaml"


def tiny_fit_flags(root: Path, epochs: int = 2) -> list[str]:
    """Fit flags of 2-second trials: 100 saccade digits, T = 10, 9x9x2 inputs, a 16-8 net, 3 batches an epoch."""
    return ["--data", "lightning_local.data.saccade_digits.SaccadeDigits", "--data.init_args.root", str(root),
            "--data.init_args.n_time_bins", "10", "--data.init_args.downsample", "4",
            "--data.init_args.max_samples_per_class", "10", "--model.hidden_sizes", "[16, 8]",
            "--trainer.max_epochs", str(epochs), "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1"]


def env() -> dict:
    """Trials can import the tests' ``support`` package (callbacks, learners)."""
    tests = str(REPO / "tests")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))}


def tune(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lightning_local.cli.main", "tune", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env())


def write_space(folder: Path, space: dict) -> Path:
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def trials_table(output: Path) -> pd.DataFrame:
    return pd.read_csv(output / "trials.csv")


@pytest.mark.slow
def test_a_three_trial_study_writes_a_best_config_that_fit_accepts(tmp_path, tiny_digits):
    output = tmp_path / "study"
    result = tune("--config", str(BPTT_FF), *tiny_fit_flags(tiny_digits), "--trials", "3", "--output", str(output),
                  "--pruner", "none")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "3/3 trials finished" in result.stdout
    table = trials_table(output)
    assert list(table.number) == [0, 1, 2] and set(table.state) == {"complete"}
    # the first trial is the untuned config (its values inside the space), the others are drawn
    first = table.iloc[0]
    assert (first["param model.lr"], first["param model.tau_syn"], first["param data.init_args.batch_size"]) == (0.001, 5.0, 64)
    assert table["param model.lr"].nunique() == 3
    for number in range(3):  # every trial is a normal fit run folder, never tested
        folder = output / "trials" / f"trial_{number:04d}"
        metrics = pd.read_csv(folder / "metrics.csv")
        assert (folder / "checkpoints" / "last.ckpt").is_file() and (folder / "config.yaml").is_file()
        assert "test_acc" not in metrics or metrics.test_acc.isna().all()
        assert table.value[number] == pytest.approx(metrics.val_acc.max())
    best = int(table.value.idxmax())
    config = yaml.safe_load((output / "best.yaml").read_text())
    assert config["model"]["lr"] == pytest.approx(table["param model.lr"][best])
    assert config["data"]["init_args"]["batch_size"] == table["param data.init_args.batch_size"][best]
    assert "logger" not in config["trainer"] and not config["trainer"]["callbacks"] and "ckpt_path" not in config
    for name in ("history.png", "importance.png", "space.yaml", "study.sqlite3", "best.json"):
        assert (output / name).is_file(), name

    fit = subprocess.run([sys.executable, "-m", "lightning_local.cli.main", "fit", "--config", str(output / "best.yaml"),
                          "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
                          "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-2000:]
    (run,) = (tmp_path / "runs" / "lightning_logs").iterdir()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["lr"] == config["model"]["lr"] and pd.read_csv(run / "metrics.csv").test_acc.notna().any()


@pytest.mark.slow
def test_a_killed_study_resumes_in_place_and_keeps_its_finished_trials(tmp_path, tiny_digits):
    output = tmp_path / "study"
    args = ["--config", str(BPTT_FF), *tiny_fit_flags(tiny_digits, epochs=3), "--trials", "3", "--output", str(output),
            "--pruner", "none", "--trainer.callbacks+=support.callbacks.SleepEachEpoch",
            "--trainer.callbacks.seconds", "1.5"]
    cmd = [sys.executable, "-m", "lightning_local.cli.main", "tune", *args]
    first = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    checkpoint = output / "trials" / "trial_0001" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None and not checkpoint.is_file():
        time.sleep(0.2)
    assert checkpoint.is_file(), first.communicate()[0].decode()[-2000:]
    first.send_signal(signal.SIGKILL)  # the search and (through PR_SET_PDEATHSIG) its trial die at once
    first.wait()
    before = trials_table(output)
    assert list(before.state) == ["complete", "running"]
    rows_before = pd.read_csv(output / "trials" / "trial_0001" / "metrics.csv").dropna(subset=["val_acc"])

    second = tune(*args)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert "1 finished earlier, 1 to resume" in second.stdout and "[trial 1] start (resumed)" in second.stdout
    after = trials_table(output)
    assert list(after.number) == [0, 1, 2] and set(after.state) == {"complete"}  # no duplicate trials
    assert after.iloc[0].equals(before.iloc[0])  # the finished trial is untouched
    assert after["param model.lr"][1] == before["param model.lr"][1]  # the same trial, continued
    resumed = pd.read_csv(output / "trials" / "trial_0001" / "metrics.csv").dropna(subset=["val_acc"])
    assert list(resumed.epoch) == [0, 1, 2] and len(rows_before) >= 1
    assert "Restoring states from the checkpoint path" in (checkpoint.parent.parent / "log.txt").read_text()
    assert len(list((output / "trials").iterdir())) == 3


@pytest.mark.slow
def test_the_median_pruner_stops_a_hopeless_trial_cleanly(tmp_path, tiny_digits):
    """Three earlier trials at val_acc 0.95 every epoch; a trial at lr 1e-9 (chance) is stopped after epoch 2."""
    from cli.tune import parser, setup_from
    from lightning_local.benchmark.scheduler import LocalExecutor
    from lightning_local.tuning.search import make_sampler, run_search
    from lightning_local.tuning.reporting import make_pruner
    from lightning_local.tuning.study import open_study

    space = write_space(tmp_path, {"model.lr": {"low": 1e-9, "high": 2e-9, "log": True}})
    options, fit_args = parser().parse_known_args(["--config", str(BPTT_FF), *tiny_fit_flags(tiny_digits, epochs=5),
                                                   "--trials", "4", "--space", str(space), "--output", str(tmp_path / "s")])
    setup = setup_from(options, fit_args)
    study = open_study(setup.storage, setup.study, setup.output, setup.record(), make_sampler(4, 0), make_pruner("median"))
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(
            value=0.95, params={}, distributions={}, intermediate_values={e: 0.95 for e in range(5)}))
    summary = run_search(setup, LocalExecutor(1, "cpu"), log=lambda line: None)
    assert summary["counts"] == {"complete": 0, "pruned": 1, "failed": 0}
    row = trials_table(setup.output).iloc[3]
    assert row.state == "pruned" and row.epochs == 2 and row.reason == "pruned after epoch 2"
    folder = setup.output / "trials" / "trial_0003"
    assert (folder / "pruned.json").is_file() and (folder / "checkpoints" / "last.ckpt").is_file()
    assert list(pd.read_csv(folder / "metrics.csv").dropna(subset=["val_acc"]).epoch) == [0, 1]


@pytest.mark.slow
def test_a_diverging_trial_counts_as_pruned_never_as_a_crash(tmp_path, tiny_digits):
    space = write_space(tmp_path, {"model.lr": {"low": 1e3, "high": 1e4, "log": True}})
    output = tmp_path / "study"
    result = tune("--config", str(BPTT_FF), *tiny_fit_flags(tiny_digits), "--divergence.max_loss", "20",
                  "--trials", "2", "--space", str(space), "--output", str(output))
    assert "Traceback" not in result.stdout + result.stderr
    table = trials_table(output)
    assert list(table.state) == ["pruned", "pruned"], table
    assert all(reason.startswith("diverged: training diverged at epoch") for reason in table.reason)
    assert result.returncode == 1 and "no trial completed yet" in result.stdout


@pytest.mark.parametrize("space, message", [
    ({"model.learning_rate": {"low": 1e-4, "high": 1e-2}},
     r"unknown search parameter 'model.learning_rate': it is not a setting of .*bptt_ff.yaml"),
    ({"model.lr": {"low": 1e-2, "high": 1e-2}}, r"search parameter 'model.lr' of .* has an empty range"),
    ({"model.lr": {"choices": []}}, r"has an empty choices list"),
])
def test_bad_spaces_give_one_line_before_any_trial(tmp_path, tiny_digits, space, message):
    output = tmp_path / "study"
    result = tune("--config", str(BPTT_FF), *tiny_fit_flags(tiny_digits), "--space", str(write_space(tmp_path, space)),
                  "--output", str(output))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("lightning-local: error: ") and pytest.importorskip("re").search(message, line), line
    assert not (output / "trials").exists()


def test_a_learner_without_a_space_asks_for_one(tmp_path, tiny_digits):
    result = tune("--config", str(BPTT_FF), *tiny_fit_flags(tiny_digits), "--learner", "support.learners.NoSearchSpace",
                  "--output", str(tmp_path / "study"))
    assert result.returncode == 2
    assert result.stderr.strip() == ("lightning-local: error: learner 'no_space' declares no search space: give its class "
                                     "a search_space (see lightning_local.learners.NEURON_SPACE) or pass --space FILE.yaml.")


@pytest.mark.slow
def test_a_corrupt_study_file_gives_one_line_and_loses_nothing(tmp_path, tiny_digits):
    output = tmp_path / "study"
    space = write_space(tmp_path, {"model.lr": {"low": 1e-4, "high": 1e-2, "log": True}})
    args = ["--config", str(BPTT_FF), *tiny_fit_flags(tiny_digits), "--trials", "1", "--space", str(space),
            "--output", str(output)]
    assert tune(*args).returncode == 0
    study_file, trials_csv = output / "study.sqlite3", output / "trials.csv"
    damaged = b"not a database" + study_file.read_bytes()[14:4096]
    study_file.write_bytes(damaged)
    kept_csv = trials_csv.read_bytes()
    result = tune(*args[:-4], "--trials", "2", "--space", str(space), "--output", str(output))
    assert result.returncode == 2, result.stdout[-1000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"lightning-local: error: study file {study_file} is not a readable Optuna study")
    assert "nothing was changed" in line
    assert study_file.read_bytes() == damaged and trials_csv.read_bytes() == kept_csv
    assert (output / "trials" / "trial_0000" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_a_study_refuses_to_continue_with_another_space(tmp_path, tiny_digits):
    output = tmp_path / "study"
    base = ["--config", str(BPTT_FF), *tiny_fit_flags(tiny_digits), "--trials", "1", "--output", str(output)]
    assert tune(*base, "--space", str(write_space(tmp_path, {"model.lr": {"low": 1e-4, "high": 1e-2}}))).returncode == 0
    result = tune(*base, "--space", str(write_space(tmp_path, {"model.lr": {"low": 1e-3, "high": 1e-2}})))
    assert result.returncode == 2 and "was started with another setup (space differ)" in result.stderr


@pytest.mark.slow
def test_ray_runs_trials_in_parallel_on_one_study(tmp_path, tiny_digits):
    pytest.importorskip("ray", reason='Ray is not installed (pip install "lightning-local[ray]")')
    output = tmp_path / "study"
    result = tune("--config", str(BPTT_FF), *tiny_fit_flags(tiny_digits), "--trials", "3", "--output", str(output),
                  "--executor", "ray", "--ray-cpus", "2", "--pruner", "none", timeout=400)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Ray (2 task(s) at once" in result.stdout
    table = trials_table(output)
    assert list(table.number) == [0, 1, 2] and set(table.state) == {"complete"}
    starts = [line for line in result.stdout.splitlines() if "] start" in line]
    ends = [i for i, line in enumerate(result.stdout.splitlines()) if "] complete" in line]
    assert len(starts) == 3 and len(ends) == 3
    lines = result.stdout.splitlines()
    assert lines.index(starts[1]) < ends[0], "two trials ran at once"
    assert (output / "best.yaml").is_file()


@pytest.mark.parametrize("args, message", [
    (["--trials", "0"], "--trials must be at least 1 (got 0)."),
    (["--trainer.max_epochs", "2", "3"], "unexpected argument '3': tune takes --flags only"),
    (["--timeout", "-5"], "--timeout must be positive seconds (got -5)."),
])
def test_bad_tune_flags_give_one_line(tmp_path, args, message):
    result = tune("--config", str(BPTT_FF), "--output", str(tmp_path / "study"), *args)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("lightning-local: error: ") and message in result.stderr
