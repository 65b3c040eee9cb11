"""Kill a real benchmark mid-run, rerun it: only the epochs after the last checkpoint are redone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from benchmark_helpers import benchmark_env, tiny_spec, write_spec

from lightning_local.benchmark.runner import checkpoint_epoch
from lightning_local.benchmark.store import ResultStore

# a real benchmark, killed and rerun in subprocesses
pytestmark = pytest.mark.slow

EPOCHS = 6


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (orphaned runs would show up here)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def test_kill_midway_then_rerun_resumes_from_last_checkpoint(tmp_path, tiny_digits):
    overrides = tiny_spec(tiny_digits)["overrides"]
    overrides["trainer"].update(max_epochs=EPOCHS, callbacks=[
        {"class_path": "benchmark_helpers.SleepEachEpoch", "init_args": {"seconds": 1.5}}])
    spec = write_spec(tmp_path, tiny_spec(tiny_digits, overrides=overrides,
                                          analyses={"fisher": {"num_samples": 4, "time_steps": [9]}}))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lightning_local.cli.main", "benchmark", "--config", str(spec), "--output", str(out),
           "--workers", "1", "--accelerator", "cpu"]
    first = subprocess.Popen(cmd, env=benchmark_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    last = None
    while time.time() < deadline and first.poll() is None:
        found = list(out.glob("runs/*/checkpoints/last.ckpt"))
        if found and (checkpoint_epoch(found[0]) or 0) >= 2:
            last = found[0]
            break
        time.sleep(0.2)
    assert last is not None, first.communicate()[0].decode()[-2000:]
    first.send_signal(signal.SIGKILL)  # no chance to clean up: the run must die with it
    first.wait()
    run_dir = last.parent.parent
    for _ in range(50):
        if not processes_mentioning(str(run_dir)):
            break
        time.sleep(0.1)
    assert not processes_mentioning(str(run_dir)), "the run outlived the killed benchmark"
    kept = checkpoint_epoch(last)
    assert 2 <= kept < EPOCHS
    first_fisher = pd.read_csv(run_dir / "analysis" / "fisher_information.csv")
    store = ResultStore(out / "results.sqlite")
    (key,) = [r["key"] for r in store.runs()]
    assert store.get(key)["status"] == "running"  # as the kill left it

    second = subprocess.run(cmd, env=benchmark_env(), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert f"resuming after epoch {kept}" in second.stdout
    run = store.get(key)
    assert run["status"] == "done" and run["attempts"] == 2 and "test_acc" in run["metrics"]
    claims = [e for e in store.events(key) if e["event"] == "claim"]
    assert [c["detail"]["previous"] for c in claims] == ["pending", "interrupted"]
    starts = [e for e in store.events(key) if e["event"] == "start"]
    assert [s["detail"]["resume_epoch"] for s in starts] == [None, kept]
    assert "Restoring states from the checkpoint path at " + str(last) in (run_dir / "log.txt").read_text()
    # Fisher's rows of the epochs before the checkpoint come back from the callback's state in it (recorded
    # by the first attempt, not recomputed); the second attempt adds exactly the epochs after it, each once
    fisher = pd.read_csv(run["paths"]["fisher"])
    assert sorted(fisher.epoch.unique()) == list(range(EPOCHS))
    assert fisher.groupby("epoch").size().nunique() == 1, "no epoch recorded twice"
    restored = fisher[fisher.epoch < kept].reset_index(drop=True)
    pd.testing.assert_frame_equal(restored, first_fisher[first_fisher.epoch < kept].reset_index(drop=True))

    third = subprocess.run(cmd, env=benchmark_env(), capture_output=True, text=True, timeout=300)
    assert third.returncode == 0 and "1 already done, 0 to run" in third.stdout
    assert len(store.events(key)) == len(claims) + len(starts) + 1  # nothing new happened to the finished run
    assert os.path.exists(run_dir / "run.yaml")
