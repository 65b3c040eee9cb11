"""ANN->SNN conversion: the ANN shares the SNN weights, normalisation math, IF neurons and readout, exact restore, REC."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lightning_local.module import SpikingClassifier
from lightning_local.plugins.conversion import Conversion

INPUTS, CLASSES, STEPS = 40, 5, 20


def make(architecture="ff", **options):
    torch.manual_seed(0)
    return SpikingClassifier(INPUTS, CLASSES, learner=Conversion(**options), architecture=architecture, hidden_sizes=[16, 8])


def batch(seed=0, size=12):
    generator = torch.Generator().manual_seed(seed)
    frames = (torch.rand(size, STEPS, INPUTS, generator=generator) < 0.3).float()
    return frames, torch.randint(0, CLASSES, (size,), generator=generator)


@pytest.mark.parametrize("ann_input", ["counts", "rates"])
def test_ann_is_the_relu_net_on_spike_counts_or_rates_sharing_the_weights(ann_input):
    module = make(ann_input=ann_input)
    frames, labels = batch()
    step = module.learner.training_step(module, frames, labels)
    w = [layer.weight for layer in module.network.layers]
    inputs = frames.sum(1) if ann_input == "counts" else frames.mean(1)
    expected = torch.relu(torch.relu(inputs @ w[0].t()) @ w[1].t()) @ w[2].t()
    torch.testing.assert_close(step.logits, expected)
    step.objective.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in w)


@pytest.mark.parametrize("ann_input", ["counts", "rates"])
@pytest.mark.parametrize("neuron", ["if", "model"])
@pytest.mark.parametrize("percentile", [100.0, 99.0])
def test_data_based_normalisation(percentile, neuron, ann_input):
    module = make(percentile=percentile, balance="none", neuron=neuron, ann_input=ann_input)
    learner, network = module.learner, module.network
    frames, labels = batch()
    learner.training_step(module, frames, labels)
    ann = [layer.weight.detach().clone() for layer in network.layers]
    inputs = frames.sum(1) if ann_input == "counts" else frames.mean(1)
    activations = learner.ann_activations(network, inputs, ann)
    lambdas = [float(STEPS) if ann_input == "counts" else 1.0] + [torch.quantile(a[a > 0], percentile / 100).item() for a in activations]
    if percentile == 100.0:
        assert lambdas[1] == pytest.approx(activations[0].max().item())
    learner.convert(network)
    params = network.params
    alpha = 0.0 if neuron == "if" else params.alpha  # IF: no synaptic filter
    torch.testing.assert_close(learner.scales, torch.tensor(lambdas))
    for l, layer in enumerate(network.layers):
        factor = (1 - alpha) * params.v_th * lambdas[l] / lambdas[l + 1]
        if l == 2 and neuron == "model":
            factor *= (1 - params.beta) * learner.output_level
        if l == 2 and neuron == "if":  # the largest positive row sum maps to output_level * V_th
            factor = learner.output_level * params.v_th / ann[l].clamp(min=0).sum(1).max().item()
        torch.testing.assert_close(layer.weight, ann[l] * factor)
    # Converting again is a no-op; the next training step restores the exact ANN weights.
    converted = [layer.weight.clone() for layer in network.layers]
    learner.convert(network)
    assert all(torch.equal(a, layer.weight) for a, layer in zip(converted, network.layers))
    learner.training_step(module, frames, labels)
    assert not bool(learner.converted)
    assert all(torch.equal(a, layer.weight) for a, layer in zip(ann, network.layers))


def test_threshold_balancing_matches_the_normalised_ann_rates_layer_by_layer():
    frames, labels = batch(size=48)
    rates = {}
    for balance in ("none", "rates"):
        module = make(balance=balance, neuron="model")
        learner, network = module.learner, module.network
        learner.training_step(module, frames, labels)
        ann = [layer.weight.detach().clone() for layer in network.layers]
        targets = [(a / lam).clamp(max=1).mean() for a, lam in
                   zip(learner.ann_activations(network, learner.ann_inputs(frames), ann)[:-1], learner.compute_scales(network)[1:])]
        learner.convert(network)
        with torch.no_grad():
            rates[balance] = [s.mean() for s in network(frames).spikes[:-1]]
    # Without balancing the leak leaves every hidden layer below its target rate ...
    assert all(r < 0.9 * t for r, t in zip(rates["none"], targets))
    # ... balancing brings each to it (bisection to the rate resolution of 48 x 20 x n spikes).
    for r, t in zip(rates["rates"], targets):
        torch.testing.assert_close(r, t, rtol=0.02, atol=2e-3)
    gains = learner.balance_gains
    assert gains.shape == (2,) and (gains > 1).all()
    # The balanced weights are the normalised ones times k_l (output layer untouched).
    params, lambdas = network.params, learner.scales
    for l, layer in enumerate(network.layers):
        factor = (1 - params.alpha) * params.v_th * float(lambdas[l] / lambdas[l + 1])
        factor *= float(gains[l]) if l < 2 else (1 - params.beta) * learner.output_level
        torch.testing.assert_close(layer.weight, ann[l] * factor)


def test_rec_conversion_keeps_recurrent_weights_at_zero(caplog):
    with caplog.at_level("WARNING"):
        module = make("rec")
    assert "recurrent weights are set to zero" in caplog.text
    recurrent = [layer.recurrent_weight for layer in module.network.layers if layer.recurrent_weight is not None]
    assert len(recurrent) == 2 and all(not v.any() for v in recurrent)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    frames, labels = batch()
    for _ in range(3):
        step = module.learner.training_step(module, frames, labels)
        optimizer.zero_grad()
        step.objective.backward()
        assert all(v.grad is not None and not v.grad.any() for v in recurrent)
        optimizer.step()
    module.learner.convert(module.network)
    assert all(not v.any() for v in recurrent)


def test_evaluate_converts_first_and_uses_the_snn():
    module = make()
    frames, labels = batch()
    module.learner.training_step(module, frames, labels)
    output = module.learner.evaluate(module, frames)
    assert bool(module.learner.converted)
    torch.testing.assert_close(output.output_membrane, module.network(frames).output_membrane)


def test_invalid_options_are_rejected():
    for options in ({"percentile": 0}, {"calibration_batches": 0}, {"output_level": 0}, {"balance": "max"},
                    {"balance_batches": 0}, {"neuron": "lif"}, {"output_level": 1.5}, {"ann_input": "sum"}):
        with pytest.raises(ValueError):
            Conversion(**options)


def test_the_converted_snn_has_if_hidden_neurons_and_a_memoryless_readout():
    model_params = make(neuron="model").network.params
    module = make()  # neuron="if" by default
    layers, params = module.network.layers, module.network.params
    assert params == model_params  # the model's own LIF constants are left as configured ...
    assert all(layer.params == dataclasses.replace(params, alpha=0.0, beta=1.0) for layer in layers[:-1])
    assert layers[-1].params == dataclasses.replace(params, alpha=0.0, beta=0.0)
    assert all(layer.params == model_params for layer in make(neuron="model").network.layers)  # ... and kept by "model"


def regular_spike_trains(rates, steps):
    """Deterministic spike trains with ``floor((t+1) r) - floor(t r)`` spikes at step t: rate r, evenly spread."""
    t = torch.arange(steps + 1, dtype=rates.dtype)[None, :, None]
    counts = torch.floor(t * rates[:, None, :])
    return counts[:, 1:] - counts[:, :-1]


@pytest.mark.parametrize(("neuron", "ann_input"), [("if", "counts"), ("if", "rates"), ("model", "counts")])
def test_if_rates_match_the_clipped_normalised_ann_activations_on_constant_rate_input(neuron, ann_input):
    steps = 400
    rates = torch.rand(64, INPUTS, generator=torch.Generator().manual_seed(1))
    frames = regular_spike_trains(rates, steps)
    torch.testing.assert_close(frames.mean(1), torch.floor(steps * rates) / steps)
    torch.manual_seed(0)
    module = SpikingClassifier(INPUTS, CLASSES, learner=Conversion(neuron=neuron, ann_input=ann_input), hidden_sizes=[16, 8])
    learner, network = module.learner, module.network
    learner.training_step(module, frames, torch.zeros(64, dtype=torch.long))
    ann = [layer.weight.detach().clone() for layer in network.layers]
    activations = learner.ann_activations(network, learner.ann_inputs(frames), ann)
    learner.convert(network)
    with torch.no_grad():
        output = network(frames)
    lambdas, inputs, errors = learner.scales, frames.mean(1), []  # SNN rates; lambda_0 maps them to the ANN's input
    for l, spikes in enumerate(output.spikes[:-1]):  # each layer: the clipped normalised ReLU of its input rates
        expected = torch.relu(inputs @ (ann[l] * lambdas[l] / lambdas[l + 1]).t()).clamp(max=1)
        errors.append((spikes.mean(0) - expected).abs().max())
        inputs = spikes.mean(0)
    end_to_end = (output.spikes[-2].mean(0) - (activations[-2] / lambdas[-2]).clamp(max=1)).abs().mean()
    if neuron == "if":  # to a few spikes in 400 steps, layer by layer and end to end
        assert all(error < 0.01 for error in errors), errors
        assert end_to_end < 0.005
        assert (output.logits.argmax(1) == activations[-1].argmax(1)).float().mean() > 0.95
    else:  # the leaky LIF neuron does not compute the ReLU of its mean input
        assert min(errors) > 0.05 and end_to_end > 0.03, (errors, end_to_end)


def test_the_readout_accumulates_the_last_hidden_layer_and_never_spikes():
    module = make()
    frames, labels = batch(size=32)
    module.learner.training_step(module, frames, labels)
    module.learner.convert(module.network)
    readout = module.network.layers[-1]
    assert readout.weight.clamp(min=0).sum(1).max() <= module.learner.output_level * module.network.params.v_th + 1e-6
    with torch.no_grad():
        output = module.network((torch.rand(32, STEPS, INPUTS) < 0.9).float())
    assert not output.spikes[-1].any()
    # mean_t u^t = (1/T) sum_t W_L s^t: Rueckauer et al.'s accumulated readout
    torch.testing.assert_close(output.logits, output.spikes[-2].mean(0) @ readout.weight.t())
