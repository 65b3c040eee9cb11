"""ANN->SNN conversion: the ANN shares the SNN weights, normalisation math, exact restore, REC recurrent weights."""

from __future__ import annotations

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


def test_ann_is_the_relu_net_on_time_averaged_input_sharing_the_weights():
    module = make()
    frames, labels = batch()
    step = module.learner.training_step(module, frames, labels)
    w = [layer.weight for layer in module.network.layers]
    expected = torch.relu(torch.relu(frames.mean(1) @ w[0].t()) @ w[1].t()) @ w[2].t()
    torch.testing.assert_close(step.logits, expected)
    step.objective.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in w)


@pytest.mark.parametrize("percentile", [100.0, 99.0])
def test_data_based_normalisation(percentile):
    module = make(percentile=percentile, balance="none")
    learner, network = module.learner, module.network
    frames, labels = batch()
    learner.training_step(module, frames, labels)
    ann = [layer.weight.detach().clone() for layer in network.layers]
    activations = learner.ann_activations(network, frames.mean(1), ann)
    lambdas = [1.0] + [torch.quantile(a[a > 0], percentile / 100).item() for a in activations]
    if percentile == 100.0:
        assert lambdas[1] == pytest.approx(activations[0].max().item())
    learner.convert(network)
    params = network.params
    torch.testing.assert_close(learner.scales, torch.tensor(lambdas))
    for l, layer in enumerate(network.layers):
        factor = (1 - params.alpha) * params.v_th * lambdas[l] / lambdas[l + 1]
        if l == 2:
            factor *= (1 - params.beta) * learner.output_level
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
        module = make(balance=balance)
        learner, network = module.learner, module.network
        learner.training_step(module, frames, labels)
        ann = [layer.weight.detach().clone() for layer in network.layers]
        targets = [(a / lam).clamp(max=1).mean() for a, lam in
                   zip(learner.ann_activations(network, frames.mean(1), ann)[:-1], learner.compute_scales(network)[1:])]
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
                    {"balance_batches": 0}):
        with pytest.raises(ValueError):
            Conversion(**options)
