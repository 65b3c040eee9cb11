"""The analyses on speech models: FGSM on real-valued features, a clear error for frame labels."""

from __future__ import annotations

import csv

import pytest
import torch

from lightning_local.analysis.adversarial import ANNCounterpart, fgsm
from lightning_local.analysis.representations import batches
from lightning_local.cli.main import main
from lightning_local.models import SpikingNetwork
from lightning_local.module import InvalidInputError


def test_fgsm_on_real_valued_features_is_the_unclamped_step():
    torch.manual_seed(0)
    model = ANNCounterpart(SpikingNetwork(6, [8], 3))
    frames, labels = torch.randn(4, 5, 6) * 2, torch.tensor([0, 1, 2, 1])
    perturbed = fgsm(model, frames, labels, 0.3)
    inputs = frames.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(model(inputs), labels).backward()
    assert torch.equal(perturbed, frames + 0.3 * inputs.grad.sign())
    assert perturbed.min() < -1 and perturbed.max() > 2  # not clamped to [0, 1]
    binary = (torch.rand(4, 5, 6) > 0.5).float()  # event frames keep torchattacks' clamp
    stepped = fgsm(model, binary, labels, 0.3)
    assert stepped.min() >= 0 and stepped.max() <= 1 and not torch.equal(stepped, binary)


def test_frame_labels_are_refused_with_a_reason():
    loader = [(torch.zeros(2, 5, 3), torch.zeros(2, 5, dtype=torch.long))]
    with pytest.raises(InvalidInputError, match="one class per time step"):
        next(batches(loader, torch.device("cpu")))


def test_fgsm_transfer_on_fsdd(fsdd_small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main([
        "fit", "--data", "fsdd", "--data.root", str(fsdd_small), "--data.num_frames", "30", "--data.batch_size", "25",
        "--model.hidden_sizes", "[40]", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
        "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks+=lightning_local.analysis.FGSMTransfer", "--trainer.callbacks.epsilons", "[0.5]",
    ])
    (metrics,) = tmp_path.rglob("metrics.csv")
    (test_acc,) = [float(row["test_acc"]) for row in csv.DictReader(metrics.open()) if row.get("test_acc")]
    (table,) = tmp_path.rglob("fgsm_test.csv")
    rows = list(csv.DictReader(table.open()))
    assert [float(row["epsilon"]) for row in rows] == [0.0, 0.5] and int(rows[0]["num_samples"]) == 100
    assert float(rows[0]["snn_accuracy"]) == pytest.approx(test_acc)  # eps 0 = the clean test set
