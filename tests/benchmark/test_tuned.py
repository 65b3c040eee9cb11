"""A benchmark with a ``tune:`` section: each cell searched once with the same budget, then its seeds at the tuned
settings; tuned configs exported; the report's tuned-settings table; resume through the tuning stage."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from benchmark_helpers import benchmark_env, tiny_spec, write_spec

from lightning_local.benchmark.spec import TUNED, SpecError, expand, load_spec
from lightning_local.benchmark.store import ResultStore
from lightning_local.cli.main import main
from lightning_local.cli.resolve import validate_config


def benchmark(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", *args])
    return exit_info.value.code, capsys.readouterr().out


def test_tune_jobs_come_first_and_every_run_of_a_cell_waits_for_its_search(tmp_path, tiny_digits):
    spec = load_spec(write_spec(tmp_path, tiny_spec(tiny_digits, rules=["bptt", "eprop"], seeds=[0, 1],
                                                    tune={"trials": 3})), validate_config)
    jobs = expand(spec)
    tunes = [j for j in jobs if j.kind == "tune"]
    assert [j.kind for j in jobs[:2]] == ["tune", "tune"] and {(j.rule, j.arch) for j in tunes} == {("bptt", "ff"), ("eprop", "ff")}
    assert all(j.config["tune_options"]["trials"] == 3 for j in tunes)  # the same budget for every cell
    for job in jobs:
        if job.kind == "train":
            (tune,) = [t for t in tunes if t.rule == job.rule]
            assert job.deps == (tune.key,) and job.config[TUNED] == "{tuned:%s}" % tune.key
    untuned = expand(load_spec(write_spec(tmp_path, tiny_spec(tiny_digits, rules=["bptt", "eprop"], seeds=[0, 1]), "u.yaml"), validate_config))
    assert all(j.kind == "train" and not j.deps and TUNED not in j.config for j in untuned)


@pytest.mark.parametrize("tune, message", [
    ({"trials": 0}, r"tune.trials must be a positive integer"),
    ({"trials": 2, "budget": 3}, r"Unknown tune option\(s\) \['budget'\]"),
    ({"trials": 2, "pruner": "hyperband"}, r"tune.pruner must be one of median, halving, none"),
    ([2], r"tune section must be a mapping"),
])
def test_bad_tune_sections_are_refused(tmp_path, tiny_digits, tune, message):
    with pytest.raises(SpecError, match=message):
        load_spec(write_spec(tmp_path, tiny_spec(tiny_digits, tune=tune)), validate_config)


@pytest.mark.slow
def test_a_tuned_benchmark_runs_its_seeds_at_the_best_trials_settings(tmp_path, tiny_digits, capsys):
    export = tmp_path / "tuned" / "{rule}_{arch}.yaml"
    spec = write_spec(tmp_path, tiny_spec(tiny_digits, seeds=[0, 1], tune={"trials": 2, "pruner": "none",
                                                                          "export": str(export)}))
    out = tmp_path / "out"
    code, printed = benchmark(["--config", str(spec), "--output", str(out), "--workers", "1"], capsys)
    assert code == 0, printed
    store = ResultStore(out / "results.sqlite")
    (tune,) = [r for r in store.runs() if r["kind"] == "tune"]
    best = json.loads((Path(tune["run_dir"]) / "best.json").read_text())
    assert tune["status"] == "done" and best["trials"] == 2 and tune["metrics"]["settings"] == best["settings"]
    trials = pd.read_csv(Path(tune["run_dir"]) / "trials.csv")
    assert trials.value.max() == pytest.approx(best["best_val_acc"])
    for run in (r for r in store.runs() if r["kind"] == "train"):
        used = yaml.safe_load((Path(run["run_dir"]) / "run.yaml").read_text())
        assert TUNED not in used and run["status"] == "done"
        assert used["model"]["lr"] == pytest.approx(best["settings"]["model.lr"])
        assert used["data"]["init_args"]["batch_size"] == best["settings"]["data.init_args.batch_size"]
        assert used["model"]["tau_syn"] == pytest.approx(best["settings"]["model.tau_syn"]) and used["model"]["alpha"] is None
    exported = yaml.safe_load(Path(str(export).format(rule="bptt", arch="ff")).read_text())
    assert exported["model"]["lr"] == pytest.approx(best["settings"]["model.lr"]) and exported["seed_everything"] == 0
    assert exported["data"]["init_args"]["root"] == str(tiny_digits)
    report = (out / "report" / "report.md").read_text()
    assert "## Tuned settings" in report and "Cells with tuned settings: saccade_digits bptt FF." in report
    table = pd.read_csv(out / "report" / "tuned_settings.csv")
    assert set(table.setting) == set(best["params"]) and (table.best_val_acc == best["best_val_acc"]).all()

    code, printed = benchmark(["--config", str(spec), "--output", str(out), "--workers", "1"], capsys)
    assert code == 0 and "3 runs, 3 already done, 0 to run" in printed  # the search is not redone


@pytest.mark.slow
def test_a_benchmark_killed_while_tuning_resumes_its_search(tmp_path, tiny_digits):
    overrides = {"trainer": {"max_epochs": 3, "callbacks": [
        {"class_path": "benchmark_helpers.SleepEachEpoch", "init_args": {"seconds": 1.5}}]}}
    spec = write_spec(tmp_path, tiny_spec(tiny_digits, tune={"trials": 2, "pruner": "none", "overrides": overrides}))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lightning_local.cli.main", "benchmark", "--config", str(spec), "--output", str(out),
           "--workers", "1", "--accelerator", "cpu"]
    first = subprocess.Popen(cmd, env=benchmark_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None and not list(out.glob("runs/tune-*/trials/trial_0001/checkpoints/last.ckpt")):
        time.sleep(0.2)
    assert first.poll() is None, first.communicate()[0].decode()[-2000:]
    first.send_signal(signal.SIGKILL)
    first.wait()
    (folder,) = out.glob("runs/tune-*")
    before = pd.read_csv(folder / "trials.csv")
    assert list(before.state) == ["complete", "running"]

    second = subprocess.run(cmd, env=benchmark_env(), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    after = pd.read_csv(folder / "trials.csv")
    assert list(after.number) == [0, 1] and set(after.state) == {"complete"}
    assert after.iloc[0].equals(before.iloc[0])
    assert "1 to resume" in (folder / "log.txt").read_text()
    assert {r["status"] for r in ResultStore(out / "results.sqlite").runs()} == {"done"}
