"""DECOLLE: locality (no dependence on layers above) and equality with an autograd reference of eq. 8."""

import pytest
import torch
from learner_helpers import assert_all_layers_fire, make_batch, make_module, parameters
from reference_rules import decolle_reference

from lightning_local.plugins.decolle import Decolle


pytestmark = pytest.mark.usefixtures("float64")


def decolle_updates(module, frames, labels):
    _, _, updates = module.learner.updates(module.network, frames, labels)
    return {id(p): d.clone() for p, d in updates}


@pytest.mark.parametrize("readout", ["spikes", "membrane"])
@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_decolle_equals_autograd_with_local_stop_gradients(architecture, readout):
    module = make_module(Decolle(readout=readout), architecture)
    frames, labels = make_batch()
    assert_all_layers_fire(module, frames)
    learner = module.learner
    updates = decolle_updates(module, frames, labels)
    readouts = [learner.readout_matrix(l) for l in range(2)]
    reference = decolle_reference(module.network, frames, labels, readouts, readout)
    assert len(updates) == len(reference) == (3 if architecture == "ff" else 5)
    for p in parameters(module):
        assert reference[id(p)].abs().max() > 1e-6
        torch.testing.assert_close(updates[id(p)], reference[id(p)], rtol=1e-5, atol=1e-10)


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_update_of_a_layer_ignores_every_weight_above_it(architecture):
    module = make_module(Decolle(), architecture)
    frames, labels = make_batch()
    layers = module.network.layers
    before = decolle_updates(module, frames, labels)
    for above in range(1, len(layers)):
        with torch.no_grad():
            saved = [p.clone() for p in parameters(module)]
            for layer in layers[above:]:
                layer.weight.add_(torch.randn_like(layer.weight))
                if layer.recurrent_weight is not None:
                    layer.recurrent_weight.add_(torch.randn_like(layer.recurrent_weight))
        after = decolle_updates(module, frames, labels)
        for layer in layers[:above]:
            for p in (layer.weight, layer.recurrent_weight):
                if p is not None:
                    assert torch.equal(after[id(p)], before[id(p)])
        # ... while the perturbed layers' own updates do change.
        assert not torch.equal(after[id(layers[-1].weight)], before[id(layers[-1].weight)])
        with torch.no_grad():
            for p, value in zip(parameters(module), saved):
                p.copy_(value)


def test_readouts_are_deterministic_buffers():
    a = make_module(Decolle(seed=2), seed=0)
    b = make_module(Decolle(seed=2), seed=7)
    assert set(k for k in a.state_dict() if k.startswith("learner.")) == {"learner.readout_0", "learner.readout_1"}
    assert torch.equal(a.learner.readout_0, b.learner.readout_0)
    assert a.learner.readout_1.shape == (4, 12)


def test_online_per_step_updates_are_the_default():
    learner = Decolle()
    assert learner.online and learner.update_every == 1 and learner.manual_optimization


def test_offline_objective_carries_the_updates():
    module = make_module(Decolle(online=False), "rec")
    frames, labels = make_batch()
    updates = decolle_updates(module, frames, labels)
    step = module.learner.training_step(module, frames, labels)
    step.objective.backward()
    for p in parameters(module):
        torch.testing.assert_close(p.grad, updates[id(p)], rtol=0, atol=0)


class RecordingOptimizer:
    """Stands in for ``module.optimizers()``: plain SGD that records every step."""

    def __init__(self, params, lr):
        self.params, self.lr, self.steps = list(params), lr, 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        self.steps += 1
        with torch.no_grad():
            for p in self.params:
                if p.grad is not None:
                    p.sub_(self.lr * p.grad)


@pytest.mark.parametrize("update_every", [1, 7])
def test_online_mode_steps_within_the_sequence(update_every, monkeypatch):
    module = make_module(Decolle(online=True, update_every=update_every), "rec")
    assert module.learner.manual_optimization and not module.automatic_optimization
    frames, labels = make_batch()
    optimizer = RecordingOptimizer(module.parameters(), lr=0.0)
    monkeypatch.setattr(module, "optimizers", lambda: optimizer)
    step = module.learner.training_step(module, frames, labels)
    assert step.objective is None
    assert optimizer.steps == -(-frames.shape[1] // update_every)
    # With a zero learning rate the weights never change, so the summed online updates
    # equal the offline update: check by replaying with lr=0 and accumulating.
    total = {id(p): torch.zeros_like(p) for p in parameters(module)}

    def accumulate(updates):
        for p, d in updates:
            total[id(p)] += d

    module.learner.run(module.network, frames, labels, apply=accumulate, update_every=update_every)
    offline = decolle_updates(module, frames, labels)
    for p in parameters(module):
        torch.testing.assert_close(total[id(p)], offline[id(p)], rtol=1e-10, atol=1e-12)


def test_online_mode_changes_weights_during_the_sequence(monkeypatch):
    module = make_module(Decolle(online=True, update_every=10), "ff")
    frames, labels = make_batch()
    optimizer = RecordingOptimizer(module.parameters(), lr=0.1)
    monkeypatch.setattr(module, "optimizers", lambda: optimizer)
    before = [p.clone() for p in parameters(module)]
    module.learner.training_step(module, frames, labels)
    assert optimizer.steps == 3
    assert all(not torch.equal(a, b) for a, b in zip(before, parameters(module)))


def test_invalid_options_are_rejected():
    with pytest.raises(ValueError, match="update_every"):
        Decolle(update_every=0)
    with pytest.raises(ValueError, match="readout"):
        Decolle(readout="rates")


def test_decolle_is_exact_over_several_first_layer_blocks():
    module = make_module(Decolle(), "rec")
    frames, labels = make_batch(steps=75, batch=3)
    updates = decolle_updates(module, frames, labels)
    readouts = [module.learner.readout_matrix(l) for l in range(2)]
    reference = decolle_reference(module.network, frames, labels, readouts)
    for p in parameters(module):
        torch.testing.assert_close(updates[id(p)], reference[id(p)], rtol=1e-5, atol=1e-10)


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_block_scans_equal_the_step_simulation_while_weights_change(architecture, monkeypatch):
    """Updates every 5 steps run on block scans; forced onto the step-by-step simulation they give the same weights."""
    frames, labels = make_batch(steps=47)

    def trained(simulation):
        module = make_module(Decolle(online=True, update_every=5), architecture)
        optimizer = RecordingOptimizer(module.parameters(), lr=0.05)
        with monkeypatch.context() as patch:
            patch.setattr(module, "optimizers", lambda: optimizer)
            if simulation == "step":
                patch.setattr(Decolle, "_scan_blocks", Decolle._step_blocks)
            module.learner.training_step(module, frames, labels)
        assert optimizer.steps == 10
        return [p.detach().clone() for p in parameters(module)]

    initial = [p.detach().clone() for p in parameters(make_module(Decolle(), architecture))]
    blocks, steps = trained("block"), trained("step")
    for a, b, c in zip(blocks, steps, initial):
        assert not torch.equal(a, c)  # the weights moved within the sequence
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
