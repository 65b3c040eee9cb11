"""Fisher information (eq. 10): per-sample squared gradient norms, normalisation and the callback."""

import math

import pandas as pd
import pytest
import torch

from lightning_local.analysis import FisherInformation, squared_gradient_norms
from lightning_local.analysis.fisher import normalize_per_step, weight_kinds_present
from lightning_local.models import SpikingNetwork

from analysis_helpers import tiny_model, tiny_trainer


def direct(network, frames, labels, readout, steps):
    """One sample and one step at a time: autograd of log softmax(u)_y w.r.t. each W and V."""
    out = torch.zeros(frames.shape[0], len(steps), len(network.layers), 2)
    for b in range(frames.shape[0]):
        membrane = network(frames[b : b + 1]).output_membrane[:, 0]
        for k, t in enumerate(steps):
            u = membrane[: t + 1].mean(0) if readout == "running_mean" else membrane[t]
            log_f = torch.log_softmax(u, dim=-1)[labels[b]]
            for l, layer in enumerate(network.layers):
                params = [layer.weight] + ([layer.recurrent_weight] if layer.recurrent_weight is not None else [])
                for kind, grad in enumerate(torch.autograd.grad(log_f, params, retain_graph=True)):
                    out[b, k, l, kind] = grad.pow(2).sum()
    return out


@pytest.mark.parametrize("architecture", ["ff", "rec"])
@pytest.mark.parametrize("readout", ["step", "running_mean"])
def test_equals_direct_per_sample_gradients(float64, architecture, readout):
    torch.manual_seed(0)
    network = SpikingNetwork(7, [6, 5], 3, architecture)
    for layer in network.layers:
        layer.weight.data *= 3.0
    frames = (torch.rand(4, 9, 7) < 0.4).double()
    labels = torch.tensor([0, 2, 1, 2])
    steps = [0, 3, 8] if readout == "step" else None
    ours = squared_gradient_norms(network, frames, labels, readout, steps)
    expected = direct(network, frames, labels, readout, steps or list(range(9)))
    assert (expected > 0).float().mean() > 0.4, "the comparison needs non-zero gradients"
    if architecture == "rec":
        assert expected[:, -1, :2, 1].min() > 0, "recurrent weights must get gradient"
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-12)
    assert all(p.grad is None for p in network.parameters()), "no .grad may be touched"


def test_normalisation_sums_to_one_per_step_and_marks_empty_steps():
    fisher = torch.tensor([[[1.0, 3.0], [4.0, 99.0]], [[0.0, 0.0], [0.0, 5.0]]])  # [T=2, L=2, 2]
    present = torch.tensor([[True, True], [True, False]]).expand_as(fisher)
    normalized = normalize_per_step(fisher, present)
    torch.testing.assert_close(normalized[0], torch.tensor([[0.125, 0.375], [0.5, math.nan]]), equal_nan=True)
    assert normalized[1].isnan().all()


def test_callback_records_chosen_epochs_and_matches_direct_values(tmp_path, tiny_data):
    model = tiny_model("rec")
    callback = FisherInformation(epochs=[0, 1], num_samples=6, batch_size=4, split="val", output_dir=str(tmp_path / "out"))
    tiny_trainer(tmp_path, [callback], max_epochs=2, limit_train_batches=2, limit_val_batches=1).fit(model, tiny_data)
    table = pd.read_csv(tmp_path / "out" / "fisher_information.csv")
    assert sorted(table.epoch.unique()) == [0, 1]
    assert set(table[table.weights == "RW"].layer) == {"hidden1", "hidden2"}  # no RW on the output layer
    sums = table.groupby(["epoch", "t"]).fisher_normalized.sum(min_count=1).dropna()
    assert len(sums) > 0 and ((sums - 1).abs() < 1e-6).all()
    # The last recording used the final weights: recompute from the same seeded subset.
    chosen = torch.randperm(len(tiny_data.val_dataset), generator=torch.Generator().manual_seed(0))[:6].sort().values
    frames = torch.stack([tiny_data.val_dataset[i][0] for i in chosen])
    labels = torch.tensor([tiny_data.val_dataset[i][1] for i in chosen])
    expected = squared_gradient_norms(model.network, frames, labels).double().mean(0)
    last = table[table.epoch == 1]
    present = weight_kinds_present(model.network)
    for row in last.itertuples():
        l = ["hidden1", "hidden2", "output"].index(row.layer)
        w = ["LW", "RW"].index(row.weights)
        assert present[l, w]
        assert row.fisher == pytest.approx(expected[row.t, l, w].item(), rel=1e-4, abs=1e-8)
    for name in ("fisher_information.json", "fisher_information.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
