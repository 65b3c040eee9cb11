"""Fisher information (eqs. 9-10): per-sample squared gradient norms, label draws, normalisation and the callback."""

import math

import pandas as pd
import pytest
import torch

from lightning_local.analysis import FisherInformation, class_scores, sample_labels, squared_gradient_norms
from lightning_local.analysis.fisher import normalize_per_step, weight_kinds_present
from lightning_local.models import SpikingNetwork

from analysis_helpers import tiny_model, tiny_trainer


def direct(network, frames, labels, readout, steps):
    """One sample and one step at a time: autograd of log softmax(z^t)_y w.r.t. each W and V.

    ``labels`` is ``[T, B]`` (one class per step); ``z^t`` is the output membrane at ``t``
    (``step``) or its sum over steps ``0..t`` divided by ``t + 1`` (``running_mean``).
    """
    out = torch.zeros(frames.shape[0], len(steps), len(network.layers), 2)
    for b in range(frames.shape[0]):
        membrane = network(frames[b : b + 1]).output_membrane[:, 0]
        for k, t in enumerate(steps):
            z = membrane[: t + 1].sum(0) / (t + 1) if readout == "running_mean" else membrane[t]
            log_f = torch.log_softmax(z, dim=-1)[labels[t, b]]
            for l, layer in enumerate(network.layers):
                params = [layer.weight] + ([layer.recurrent_weight] if layer.recurrent_weight is not None else [])
                for kind, grad in enumerate(torch.autograd.grad(log_f, params, retain_graph=True)):
                    out[b, k, l, kind] = grad.pow(2).sum()
    return out


def small_network(architecture):
    torch.manual_seed(0)
    network = SpikingNetwork(7, [6, 5], 3, architecture)
    for layer in network.layers:
        layer.weight.data *= 3.0
    frames = (torch.rand(4, 9, 7) < 0.4).double()
    return network.double(), frames


@pytest.mark.parametrize("architecture", ["ff", "rec"])
@pytest.mark.parametrize("readout", ["step", "running_mean"])
@pytest.mark.parametrize("fisher", ["empirical", "true"])
def test_equals_direct_per_sample_gradients(float64, architecture, readout, fisher):
    network, frames = small_network(architecture)
    labels = torch.tensor([0, 2, 1, 2])
    steps = [0, 3, 8] if readout == "step" else None
    if fisher == "empirical":
        ours = squared_gradient_norms(network, frames, labels, readout, steps)
        per_step = labels.expand(9, 4)
    else:
        ours = squared_gradient_norms(network, frames, None, readout, steps, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            log_probs = torch.log_softmax(class_scores(network(frames).output_membrane, readout), dim=-1)
        per_step = sample_labels(log_probs, torch.Generator().manual_seed(5))
        assert len(per_step.unique()) > 1 and (per_step != per_step[:1]).any(), "the draw must vary"
    expected = direct(network, frames, per_step, readout, steps or list(range(9)))
    assert (expected > 0).float().mean() > 0.4, "the comparison needs non-zero gradients"
    if architecture == "rec":
        assert expected[:, -1, :2, 1].min() > 0, "recurrent weights must get gradient"
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-12)
    assert all(p.grad is None for p in network.parameters()), "no .grad may be touched"


@pytest.mark.parametrize("architecture", ["ff", "rec"])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv_network_equals_direct_per_sample_gradients(float64, single_thread, architecture, stride):
    """Conv synapses (no Gram shortcut: each sample's gradient is formed) against the same direct autograd."""
    torch.manual_seed(0)
    network = SpikingNetwork.convolutional((2, 7, 7), [3, 2], 3, architecture, kernel_size=3, stride=stride).double()
    for layer in network.layers:
        layer.weight.data *= 2.0
    frames = (torch.rand(3, 8, 2, 7, 7) < 0.4).double()
    labels = torch.tensor([2, 0, 1])
    for spikes in network(frames).spikes[:-1]:
        assert 0.02 < spikes.mean() < 0.8, "hidden layers must fire for the gradients to be non-trivial"
    ours = squared_gradient_norms(network, frames, labels, "step", [0, 4, 7])
    expected = direct(network, frames, labels.expand(8, 3), "step", [0, 4, 7])
    assert (expected[:, 1:] > 0).float().mean() > 0.4, "the comparison needs non-zero gradients"
    if architecture == "rec":
        assert expected[:, -1, :2, 1].min() > 0, "recurrent convolutions must get gradient"
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-12)
    assert all(p.grad is None for p in network.parameters()), "no .grad may be touched"


def test_readouts_differ_and_the_accumulated_one_ends_at_the_models_logits(float64):
    network, frames = small_network("rec")
    output = network(frames)
    torch.testing.assert_close(class_scores(output.output_membrane)[-1], output.logits)  # default: running_mean
    torch.testing.assert_close(class_scores(output.output_membrane, "step"), output.output_membrane)
    labels = torch.tensor([0, 2, 1, 2])
    assert not torch.allclose(squared_gradient_norms(network, frames, labels),
                              squared_gradient_norms(network, frames, labels, "step"))
    with pytest.raises(ValueError, match="readout"):
        squared_gradient_norms(network, frames, labels, "mean")
    with pytest.raises(ValueError, match="labels must have shape"):
        squared_gradient_norms(network, frames, labels[:3])


def test_label_draws_follow_the_model_distribution_and_the_seed():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.05, 0.05, 0.9]])
    log_probs = probs.log().view(1, 2, 3).expand(5000, 2, 3)  # 5000 draws per distribution
    draws = sample_labels(log_probs, torch.Generator().manual_seed(1))
    assert draws.shape == (5000, 2) and draws.dtype == torch.long
    for b in range(2):
        frequencies = torch.bincount(draws[:, b], minlength=3).double() / 5000
        torch.testing.assert_close(frequencies, probs[b].double(), rtol=0, atol=0.025)  # > 4 standard errors
    assert torch.equal(draws, sample_labels(log_probs, torch.Generator().manual_seed(1)))
    assert not torch.equal(draws, sample_labels(log_probs, torch.Generator().manual_seed(2)))


def test_normalisation_sums_to_one_per_step_and_marks_empty_steps():
    fisher = torch.tensor([[[1.0, 3.0], [4.0, 99.0]], [[0.0, 0.0], [0.0, 5.0]]])  # [T=2, L=2, 2]
    present = torch.tensor([[True, True], [True, False]]).expand_as(fisher)
    normalized = normalize_per_step(fisher, present)
    torch.testing.assert_close(normalized[0], torch.tensor([[0.125, 0.375], [0.5, math.nan]]), equal_nan=True)
    assert normalized[1].isnan().all()


@pytest.mark.parametrize("fisher", ["empirical", "true"])
def test_callback_records_chosen_epochs_and_matches_direct_values(tmp_path, tiny_data, fisher):
    model = tiny_model("rec")
    callback = FisherInformation(epochs=[0, 1], num_samples=6, batch_size=4, split="val", fisher=fisher,
                                 output_dir=str(tmp_path / "out"))
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
    if fisher == "empirical":
        expected = squared_gradient_norms(model.network, frames, labels)
    else:  # the callback's seeded draw, continued over its batches of 4
        generator = callback.label_generator(epoch=1)
        expected = torch.cat([squared_gradient_norms(model.network, frames[i : i + 4], None, generator=generator)
                              for i in (0, 4)])
        assert not torch.allclose(expected, squared_gradient_norms(model.network, frames, labels))
    expected = expected.double().mean(0)
    last = table[table.epoch == 1]
    present = weight_kinds_present(model.network)
    for row in last.itertuples():
        l = ["hidden1", "hidden2", "output"].index(row.layer)
        w = ["LW", "RW"].index(row.weights)
        assert present[l, w]
        assert row.fisher == pytest.approx(expected[row.t, l, w].item(), rel=1e-4, abs=1e-8)
    for name in ("fisher_information.json", "fisher_information.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
