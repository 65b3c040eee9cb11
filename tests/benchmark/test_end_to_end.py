"""A tiny benchmark through the command line: every analysis, progress lines, report, skip on rerun; and Ray."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from benchmark_helpers import REPO, tiny_spec, write_spec

from lightning_local.benchmark.scheduler import run_grid
from lightning_local.benchmark.spec import expand, load_spec
from lightning_local.benchmark.store import ResultStore
from lightning_local.cli.main import main
from lightning_local.cli.resolve import validate_config

ANALYSES = {
    "accuracy": {},
    "fgsm": {"epsilons": [0.05], "num_samples": 16},
    "adversarial_cka": {"epsilons": [0.05], "num_samples": 16},
    "fisher": {"epochs": [1], "num_samples": 4, "time_steps": [9]},
    "backdoor": {"poison_rates": [0.5], "pairs": 1},
    "cka": {"num_samples": 16, "architectures": ["ff"], "conversion": str(REPO / "configs/nmnist/conversion_ff.yaml")},
    "cost": {"num_samples": 16, "probe_batch": 4, "train_steps": 2, "probe_steps": [10, 20]},
}


def benchmark(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", *args])
    return exit_info.value.code, capsys.readouterr().out


@pytest.mark.slow
def test_tiny_benchmark_through_the_cli(tmp_path, capsys, tiny_digits):
    spec = write_spec(tmp_path, tiny_spec(tiny_digits, architectures=["ff", "rec"], analyses=ANALYSES))
    args = ["--config", str(spec), "--output", str(tmp_path / "out"), "--workers", "2", "--accelerator", "cpu"]
    code, out = benchmark(args, capsys)
    assert code == 0, out
    # 2 runs + 2 backdoor runs + 1 converted SNN + 1 CKA test (FF: bptt vs conversion)
    assert "6 runs, 0 already done, 6 to run on 2 local CPU worker(s)" in out
    lines = out.splitlines()
    assert sum(" start " in line for line in lines) == 6 and sum(" end " in line for line in lines) == 6
    assert any("ETA" in line for line in lines if " end " in line)
    assert lines[-1].startswith("benchmark tiny: 6/6 done (6 now, 0 earlier), 0 failed")

    store = ResultStore(tmp_path / "out" / "results.sqlite")
    runs = store.runs()
    assert all(r["status"] == "done" for r in runs)
    # (the first FF run without a variant is the converted SNN whose ANN crafts FGSM: bptt's is the main run)
    main_ff = next(r for r in runs if r["kind"] == "train" and r["rule"] == "bptt" and r["arch"] == "ff" and not r["variant"])
    assert set(main_ff["metrics"]["fgsm"]) == {"0", "0.05"} and 0 <= main_ff["metrics"]["test_acc"] <= 1
    assert set(pd.read_csv(main_ff["paths"]["fisher"]).epoch) == {1}
    cost = main_ff["metrics"]["cost"]  # NeuroBench's metrics of the tested net, per sample
    assert cost["num_samples"] == 16 and 0 < cost["effective_acs"] < cost["dense_ops"] and cost["effective_macs"] == 0
    assert cost["footprint_bytes"] == 4 * (162 * 16 + 16 * 8 + 8 * 10)  # the 9x9x2-16-8-10 FF net in float32
    assert cost["train_T"] == 10 and cost["train_memory_bytes"] > 0 and cost["memory_bytes_per_step"] > 0  # BPTT grows
    backdoor = next(r for r in runs if r["variant"].get("poison_rate") == 0.5)
    assert backdoor["metrics"]["backdoor"]["source"] == backdoor["variant"]["source"]
    assert 0 <= backdoor["metrics"]["backdoor"]["accuracy_under_attack"] <= 1  # Table V's first number
    cka = next(r for r in runs if r["kind"] == "cka")
    assert {e["reference"] for e in cka["metrics"]["cka"]} == {"conversion"}

    report = (tmp_path / "out" / "report" / "report.md").read_text()
    for heading in ("Table III", "Table IV", "Table V", "Cost: training memory", "Cost figure", "Figure 2", "Figure 3", "Figure 4"):
        assert heading in report
    for png in ("fig2_cka", "fig3_adversarial_cka", "fig4_fisher", "cost_accuracy_vs_memory"):
        assert (tmp_path / "out" / "report" / f"{png}.png").stat().st_size > 1000

    code, out = benchmark(args, capsys)  # the same command again: nothing to run
    assert code == 0 and "6 runs, 6 already done, 0 to run" in out and " start " not in out
    assert [r["attempts"] for r in store.runs()] == [1] * 6

    # --report-only re-reads results from the run folders: a store written before a field was kept gets it back
    store.record(backdoor["key"], "test", metrics={**backdoor["metrics"], "backdoor": {"source": 0}})
    code, out = benchmark(args + ["--report-only"], capsys)
    assert code == 0 and "re-read the results of 6 finished runs" in out
    report = (tmp_path / "out" / "report" / "report.md").read_text()
    assert "(0 runs finished now, 6 earlier, 0 failed)" in report, "the last grid invocation's wall time stays"
    assert store.get(backdoor["key"])["metrics"] == backdoor["metrics"]
    table_v = pd.read_csv(tmp_path / "out" / "report" / "table5_backdoor.csv")
    assert table_v.attacked_mean.notna().all()


@pytest.mark.slow
def test_ray_executor_on_a_local_cpu_instance(tmp_path, tiny_digits):
    ray = pytest.importorskip("ray", reason='Ray is not installed (pip install "lightning-local[ray]")')
    from lightning_local.benchmark.scheduler import RayExecutor

    spec = load_spec(write_spec(tmp_path, tiny_spec(tiny_digits, seeds=[0, 1])), validate_config)
    jobs = expand(spec)
    store = ResultStore(tmp_path / "results.sqlite")
    store.register([{"key": j.key, "kind": j.kind, "name": j.name, "dataset": j.dataset, "rule": j.rule, "arch": j.arch,
                     "seed": j.seed, "variant": j.variant, "config": j.config, "run_dir": tmp_path / "runs" / j.folder}
                    for j in jobs])
    lines: list[str] = []
    try:
        executor = RayExecutor(None, num_cpus=1, local_cpus=2)
        assert executor.capacity == 2
        summary = run_grid(jobs, store, executor, log=lines.append)
    finally:
        ray.shutdown()
    assert summary["done"] == 2 and summary["failed"] == 0, lines
    for run in store.runs():
        assert run["status"] == "done" and "test_acc" in run["metrics"]
        assert not run["owner"].endswith(f":{os.getpid()}"), "each run was claimed by a Ray worker process"
    assert len({r["owner"] for r in store.runs()}) >= 1
