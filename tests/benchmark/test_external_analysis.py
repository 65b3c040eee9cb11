"""A third-party analysis, installed as its own package, appears in benchmark specs, the store and the report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from benchmark_helpers import benchmark_env, tiny_spec, write_spec
from support.packages import install_package

from lightning_local.benchmark.store import ResultStore

# All a new analysis needs: this module, its entry point (below) and its tests.
TOY_ANALYSIS = '''
"""Mean logit margin (top-1 minus top-2) on the test split: a callback plus its benchmark side."""
import json
from pathlib import Path

import pandas as pd
import torch

from lightning_local.analysis.base import Analysis, ReportSection
from lightning_local.analysis.io import analysis_dir, write_csv, write_json


class LogitMargin(Analysis):
    key = "logit_margin"
    report_order = 70

    def __init__(self, scale: float = 1.0):
        self.scale = scale
        self.margins = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        with torch.no_grad():
            top = pl_module.network(batch[0].to(pl_module.device)).logits.topk(2, dim=-1).values
        self.margins += (self.scale * (top[:, 0] - top[:, 1])).tolist()

    def on_test_end(self, trainer, pl_module):
        write_json(analysis_dir(trainer, None) / "logit_margin.json", {"margin": sum(self.margins) / len(self.margins)})

    @classmethod
    def collect(cls, run_dir, kind, config, variant):
        path = Path(run_dir) / "analysis" / "logit_margin.json"
        return ({"logit_margin": json.loads(path.read_text())["margin"]}, {}) if path.is_file() else ({}, {})

    @classmethod
    def report(cls, runs, folder):
        rows = [{"rule": r.rule, "arch": r.arch, "seed": r.seed, "margin": r.metrics["logit_margin"]}
                for r in runs.itertuples() if "logit_margin" in r.metrics]
        write_csv(Path(folder) / "logit_margin.csv", pd.DataFrame(rows))
        lines = ["## Logit margin", ""] + [f"- {r['rule']} {r['arch']}: {r['margin']:.4f}" for r in rows] + [""]
        return [ReportSection(cls.report_order, lines, ["logit_margin.csv"])]
'''


def install_toy_analysis(tmp_path: Path) -> Path:
    """Build and install a throw-away package that registers the `logit_margin` analysis."""
    return install_package(tmp_path, "toy_analyses", TOY_ANALYSIS, "lightning_local.analyses", "logit_margin", "LogitMargin")


@pytest.mark.slow
def test_separately_installed_analysis_runs_in_a_benchmark(tmp_path, tiny_digits):
    site = install_toy_analysis(tmp_path)
    env = benchmark_env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    spec = write_spec(tmp_path, tiny_spec(tiny_digits, architectures=["ff", "rec"],
                                          analyses={"accuracy": {}, "logit_margin": {"scale": 2.0}}))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lightning_local.cli.main", "benchmark", "--config", str(spec), "--output", str(out),
           "--workers", "1", "--accelerator", "cpu"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]

    runs = ResultStore(out / "results.sqlite").runs()
    assert len(runs) == 2 and all(r["metrics"]["logit_margin"] > 0 for r in runs)  # the callback ran, collect read it
    for r in runs:
        (callback,) = [c for c in r["config"]["trainer"]["callbacks"] if "LogitMargin" in c["class_path"]]
        assert callback == {"class_path": "toy_analyses.LogitMargin", "init_args": {"scale": 2.0}}
    report = (out / "report" / "report.md").read_text()
    assert "## Logit margin" in report and "logit_margin.csv" in report
    assert report.index("## Table III") < report.index("## Logit margin")  # its report_order places it
    assert len(pd.read_csv(out / "report" / "logit_margin.csv")) == 2

    # its options are checked like the built-in analyses'; without the package the key is unknown
    write_spec(tmp_path, tiny_spec(tiny_digits, analyses={"logit_margin": {"scael": 2.0}}), "typo.yaml")
    typo = subprocess.run([*cmd[:5], str(tmp_path / "typo.yaml"), *cmd[6:]], env=env, capture_output=True, text=True,
                          timeout=300)
    assert typo.returncode == 2 and "Unknown option(s) ['scael'] for analysis 'logit_margin'" in typo.stderr
    missing = subprocess.run(cmd, env=benchmark_env(), capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "Unknown analysis 'logit_margin'" in missing.stderr
    assert "fgsm" in missing.stderr  # the message lists the installed ones
