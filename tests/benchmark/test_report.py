"""The report: tables III-V as mean +- std (n) with the paper's numbers beside, CSVs and Figures 2-4."""

from __future__ import annotations

import numpy as np
import pandas as pd
import yaml
from benchmark_helpers import REPO, tiny_spec, write_spec

from lightning_local.benchmark.paper import TABLE_III, TABLE_IV, TABLE_V
from lightning_local.benchmark.report import write_report
from lightning_local.benchmark.spec import expand, load_spec
from lightning_local.benchmark.store import ResultStore, owner_id
from lightning_local.cli.resolve import validate_config

LAYERS = ["hidden1", "hidden2", "output"]


def fake_grid(tmp_path, tiny_digits):
    """A grid on the dataset name 'nmnist' (so the paper's numbers apply), finished with synthetic results."""
    raw = tiny_spec(tiny_digits, rules=["bptt", "eprop"], architectures=["ff", "rec"], seeds=[0, 1, 2],
                    analyses={"fgsm": {"epsilons": [0.01, 0.05]}, "adversarial_cka": {"epsilons": [0.05]},
                              "fisher": {}, "backdoor": {"poison_rates": [0.1, 0.5], "pairs": 2},
                              "cka": {"conversion": str(REPO / "configs/nmnist/conversion_ff.yaml")}})
    raw["datasets"] = {"nmnist": raw["datasets"]["saccade_digits"]}
    jobs = expand(load_spec(write_spec(tmp_path, raw)))
    store = ResultStore(tmp_path / "store.sqlite")
    store.register([{"key": j.key, "kind": j.kind, "name": j.name, "dataset": j.dataset, "rule": j.rule, "arch": j.arch,
                     "seed": j.seed, "variant": j.variant, "config": j.config, "run_dir": tmp_path / j.folder} for j in jobs])
    rng = np.random.default_rng(0)
    truth: dict = {}
    for job in jobs:
        folder = tmp_path / job.folder
        folder.mkdir()
        metrics, paths = {"test_acc": float(rng.uniform(0.5, 1.0))}, {}
        if job.kind == "train" and "poison_rate" in job.variant:
            metrics["backdoor"] = {"clean_accuracy": metrics["test_acc"], "attack_success_rate": float(rng.uniform()),
                                   "source": job.variant["source"], "target": job.variant["target"],
                                   "poison_rate": job.variant["poison_rate"]}
        elif job.kind == "train" and job.rule != "conversion":
            metrics["fgsm"] = {"0": metrics["test_acc"], "0.01": float(rng.uniform()), "0.05": float(rng.uniform())}
            pd.DataFrame({"epsilon": 0.05, "layer": LAYERS, "cka": rng.uniform(size=3)}).to_csv(folder / "adv.csv", index=False)
            fisher = [{"epoch": e, "t": t, "layer": layer, "weights": w, "fisher": 1.0, "fisher_normalized": float(rng.uniform())}
                      for e in (0, 1) for t in (0, 1) for layer in LAYERS for w in ("LW", "RW")
                      if w == "LW" or (job.arch == "rec" and layer != "output")]
            pd.DataFrame(fisher).to_csv(folder / "fisher.csv", index=False)
            paths = {"adversarial_cka": str(folder / "adv.csv"), "fisher": str(folder / "fisher.csv")}
        elif job.kind == "cka":
            metrics["cka"] = [{"reference": ref, "model_layer": a, "reference_layer": b, "cka": float(rng.uniform())}
                              for ref in job.variant["references"] for a in LAYERS for b in LAYERS]
        truth[job.key] = metrics
        store.claim(job.key, owner_id())
        store.finish(job.key, owner_id(), "done", 1.0, metrics=metrics, paths=paths)
    return jobs, store, truth


def test_report_tables_and_figures(tmp_path, tiny_digits):
    jobs, store, truth = fake_grid(tmp_path, tiny_digits)
    report = write_report(jobs, store, tmp_path / "report", "fake")
    folder = report.parent
    for name in ("fig2_cka", "fig3_adversarial_cka", "fig4_fisher"):
        assert (folder / f"{name}.png").read_bytes()[:4] == b"\x89PNG"

    # Table III: mean, sample std and n over the three seeds, the paper's value beside
    iii = pd.read_csv(folder / "table3_accuracy.csv")
    accs = [100 * truth[j.key]["test_acc"] for j in jobs if j.kind == "train" and not j.variant
            and (j.rule, j.arch) == ("eprop", "rec")]
    row = iii[(iii.rule == "eprop") & (iii.arch == "rec")].iloc[0]
    assert row.n == 3 and np.isclose(row["mean"], np.mean(accs)) and np.isclose(row["std"], np.std(accs, ddof=1))
    assert row.paper == TABLE_III[("eprop", "nmnist", "rec")]
    text = report.read_text()
    assert f"{np.mean(accs):.2f} ± {np.std(accs, ddof=1):.2f} (n=3) [paper 96.80]" in text
    assert "| rule | N-MNIST FF | N-MNIST REC |" in text

    # Table IV: per epsilon, with the paper's number where it exists (0.01, 0.05; not for clean = 0)
    iv = pd.read_csv(folder / "table4_fgsm.csv")
    at = iv[(iv.rule == "bptt") & (iv.arch == "ff") & (iv.epsilon == 0.05)].iloc[0]
    fgsm = [100 * truth[j.key]["fgsm"]["0.05"] for j in jobs if j.kind == "train" and not j.variant
            and (j.rule, j.arch) == ("bptt", "ff")]
    assert np.isclose(at["mean"], np.mean(fgsm)) and at.paper == TABLE_IV[("bptt", "ff")][0.05]
    assert iv[iv.epsilon == 0].paper.isna().all()

    # Table V: n = number of pairs, clean / ASR averaged over them, paper's pair of numbers beside
    v = pd.read_csv(folder / "table5_backdoor.csv")
    at = v[(v.rule == "bptt") & (v.arch == "rec") & (v.poison_rate == 0.5)].iloc[0]
    asr = [100 * truth[j.key]["backdoor"]["attack_success_rate"] for j in jobs
           if j.variant.get("poison_rate") == 0.5 and (j.rule, j.arch) == ("bptt", "rec")]
    assert at.n == 2 and np.isclose(at.asr_mean, np.mean(asr))
    assert (at.paper_clean, at.paper_asr) == TABLE_V[("bptt", "rec")][0.5]

    # Figure 3: REC minus FF, matched by seed, then averaged
    fig3 = pd.read_csv(folder / "fig3_adversarial_cka_rec_minus_ff.csv")
    by = {(j.rule, j.arch, j.seed): pd.read_csv(tmp_path / j.folder / "adv.csv") for j in jobs
          if j.kind == "train" and not j.variant and j.rule != "conversion"}
    expected = np.mean([by[("eprop", "rec", s)].cka[1] - by[("eprop", "ff", s)].cka[1] for s in (0, 1, 2)])
    got = fig3[(fig3.rule == "eprop") & (fig3.layer == "hidden2")]["mean"].iloc[0]
    assert np.isclose(got, expected)

    # Figure 2: diagonal CKA per pair, including conversion vs each rule
    fig2 = pd.read_csv(folder / "fig2_cka.csv")
    assert set(fig2.pair) == {"bptt vs eprop", "bptt vs conversion", "eprop vs conversion"}
    assert set(fig2.layer) == set(LAYERS) and (fig2.n == 3).all()

    # Figure 4: LW-FF, LW-REC, RW-REC; RW only on hidden layers
    fig4 = pd.read_csv(folder / "fig4_fisher.csv")
    assert set(fig4.series) == {"LW-FF", "LW-REC", "RW-REC"}
    assert "output" not in set(fig4[fig4.series == "RW-REC"].layer)


def test_report_of_unfinished_grid_and_paper_data(tmp_path, tiny_digits):
    jobs = expand(load_spec(write_spec(tmp_path, tiny_spec(tiny_digits))))
    store = ResultStore(tmp_path / "store.sqlite")
    report = write_report(jobs, store, tmp_path / "report", "empty")
    assert "No finished training runs." in report.read_text()
    # the paper's tables are complete: 3 rules x 3 datasets x 2 archs, 6 x 5 FGSM, 6 x 5 backdoor cells
    assert len(TABLE_III) == 18 and TABLE_III[("decolle", "timit", "rec")] == 45.70
    assert sum(len(v) for v in TABLE_IV.values()) == 30 and TABLE_IV[("decolle", "rec")][0.02] == 47.56
    assert sum(len(v) for v in TABLE_V.values()) == 30 and TABLE_V[("eprop", "ff")][0.9] == (87.32, 96.95)


def test_the_conv_preset_is_table_vi_plus_the_new_conv_rules_and_its_report_compares_with_table_vi(tmp_path):
    from lightning_local.benchmark.paper import TABLE_VI

    raw = yaml.safe_load((REPO / "configs/benchmark/paper_dvsgesture_conv.yaml").read_text())
    raw["config"] = str(REPO / raw["config"])
    raw["datasets"]["dvsgesture"]["root"] = str(tmp_path)  # the preset's data/dvsgesture is not here
    jobs = expand(load_spec(write_spec(tmp_path, raw), validate_config))
    beyond = {(rule, arch) for rule in ("ottt", "sltt") for arch in ("ff", "rec")}  # no Table VI value: ours only
    assert {(j.rule, j.arch) for j in jobs} == set(TABLE_VI) | beyond and len(jobs) == 8 * 5
    assert all(j.config["model"]["synapse"] == "conv" and j.config["model"]["channels"] == [64, 128, 128] for j in jobs)
    store = ResultStore(tmp_path / "store.sqlite")
    store.register([{"key": j.key, "kind": j.kind, "name": j.name, "dataset": j.dataset, "rule": j.rule, "arch": j.arch,
                     "seed": j.seed, "variant": j.variant, "config": j.config, "run_dir": tmp_path / j.folder} for j in jobs])
    accuracy = {job.key: 0.5 + 0.01 * i for i, job in enumerate(jobs)}
    for job in jobs:
        store.claim(job.key, owner_id())
        store.finish(job.key, owner_id(), "done", 1.0, metrics={"test_acc": accuracy[job.key]}, paths={})
    report = write_report(jobs, store, tmp_path / "report", "conv")
    table = pd.read_csv(report.parent / "table3_accuracy.csv")
    assert set(table.network) == {"conv"} and len(table) == 8
    for row in table.itertuples():
        ours = [100 * accuracy[j.key] for j in jobs if (j.rule, j.arch) == (row.rule, row.arch)]
        assert np.isclose(row.mean, np.mean(ours)) and row.n == 5
        assert row.paper == TABLE_VI[(row.rule, row.arch)] if (row.rule, row.arch) in TABLE_VI else np.isnan(row.paper)
    text = report.read_text()
    assert "conv (Table VI) FF" in text and "91.74" in text
