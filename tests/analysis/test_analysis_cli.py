"""End to end through the command line on real N-MNIST recordings: every analysis writes its files."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lightning_local.cli.main import main

REPO = Path(__file__).resolve().parents[2]


def test_fit_then_test_writes_every_analysis(tmp_path, monkeypatch, nmnist_small):
    monkeypatch.chdir(tmp_path)  # the CLI logs to ./runs
    main([
        "fit",
        "--config", str(REPO / "configs" / "analysis" / "nmnist_backdoor.yaml"),
        "--data.base.root", str(nmnist_small), "--data.base.downsample", "2", "--data.base.n_time_bins", "10",
        "--data.base.batch_size", "32", "--data.poison_rate", "0.5",
        "--model.architecture", "rec", "--model.hidden_sizes", "[32, 16]",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
        "--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks+=lightning_local.analysis.CKAComparison", "--trainer.callbacks.num_samples", "32",
        "--trainer.callbacks+=lightning_local.analysis.FGSMTransfer", "--trainer.callbacks.num_samples", "32",
        "--trainer.callbacks.epsilons", "[0.01, 0.05]",
        "--trainer.callbacks+=lightning_local.analysis.AdversarialCKA", "--trainer.callbacks.num_samples", "32",
        "--trainer.callbacks.epsilons", "[0.05]",
        "--trainer.callbacks+=lightning_local.analysis.FisherInformation", "--trainer.callbacks.num_samples", "4",
        "--trainer.callbacks.time_steps", "[4, 9]",
    ])
    (run,) = (tmp_path / "runs" / "lightning_logs").iterdir()
    out = run / "analysis"
    for stem in ("cka_test", "fgsm_test", "adversarial_cka_test", "fisher_information", "backdoor_test"):
        assert (out / f"{stem}.csv").stat().st_size > 0, stem
        assert (out / f"{stem}.png").stat().st_size > 0, stem
    assert not list(out.glob(".*tmp")), "atomic writes leave no temporary files"
    assert pd.read_csv(out / "fgsm_test.csv").epsilon.tolist() == [0.0, 0.01, 0.05]
    assert sorted(pd.read_csv(out / "fisher_information.csv").t.unique()) == [4, 9]
    backdoor = json.loads((out / "backdoor_test.json").read_text())
    assert backdoor["num_poisoned"] > 0 and 0 <= backdoor["attack_success_rate"] <= 1
    metrics = pd.read_csv(run / "metrics.csv")
    assert {"test_acc", "test_asr"} <= set(metrics.columns)


def test_example_configs_parse(capsys, nmnist_small):

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(REPO / "configs" / "analysis" / "analyses.yaml"),
              "--data", "nmnist", "--data.root", str(nmnist_small), "--print_config"])
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    names = [c["class_path"].rsplit(".", 1)[-1] for c in config["trainer"]["callbacks"]]
    assert names == ["CKAComparison", "FGSMTransfer", "AdversarialCKA", "FisherInformation"]


def test_backdoor_preset_covers_the_papers_rates_with_five_distinct_pairs(nmnist_small, monkeypatch):
    from lightning_local.benchmark.spec import expand, load_spec
    from lightning_local.cli.resolve import validate_config

    monkeypatch.chdir(REPO)  # the preset names its data root relative to the repository
    jobs = [job for job in expand(load_spec(REPO / "configs" / "benchmark" / "backdoor_nmnist.yaml", validate_config))
            if "poison_rate" in job.variant]
    pairs_per_cell: dict = {}
    for job in jobs:
        data = job.config["data"]["init_args"]
        assert job.config["data"]["class_path"] == "lightning_local.data.backdoor.Backdoor"
        assert data["poison_rate"] == job.variant["poison_rate"]
        pairs_per_cell.setdefault((job.rule, job.arch, data["poison_rate"]), []).append((data["source"], data["target"]))
    rules_archs = {(rule, arch) for rule, arch, _ in pairs_per_cell}
    assert rules_archs == {(r, a) for r in ("bptt", "eprop", "decolle") for a in ("ff", "rec")}
    assert {rate for _, _, rate in pairs_per_cell} == {0.1, 0.3, 0.5, 0.7, 0.9}
    for pairs in pairs_per_cell.values():
        assert len(set(pairs)) == 5 and all(s != t for s, t in pairs)
    assert len({tuple(sorted(pairs)) for pairs in pairs_per_cell.values()}) == 1  # the same five pairs everywhere
