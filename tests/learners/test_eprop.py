"""e-prop (both schedules) against an autograd reference with e-prop's stop-gradients; memory flat in T."""

import pytest
import torch
from learner_helpers import assert_all_layers_fire, make_batch, make_module, parameters
from reference_rules import eprop_reference

from lightning_local.plugins.eprop import EProp


pytestmark = pytest.mark.usefixtures("float64")


def eprop_updates(module, frames, labels):
    _, _, updates = module.learner.updates(module.network, frames, labels)
    return {id(p): d for p, d in updates}


@pytest.mark.parametrize("schedule", ["step", "block"])
@pytest.mark.parametrize("feedback", ["symmetric", "chained"])
@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_eprop_equals_autograd_with_stop_gradients(architecture, feedback, schedule):
    module = make_module(EProp(feedback=feedback, schedule=schedule), architecture)
    frames, labels = make_batch(steps=70)  # three trace blocks: the carries between blocks count
    assert_all_layers_fire(module, frames)
    updates = eprop_updates(module, frames, labels)
    assert len(updates) == len(parameters(module)) == (3 if architecture == "ff" else 5)
    for l, layer in enumerate(module.network.layers):
        reference = eprop_reference(module.network, frames, labels, l, feedback=feedback)
        ours = [updates[id(p)] for p in (layer.weight, layer.recurrent_weight) if p is not None]
        for name, a, b in zip(("W", "V"), ours, reference):
            assert b.abs().max() > 1e-6, f"layer {l} {name}: reference update is zero"
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-10, msg=f"layer {l} {name}")


def test_default_is_the_direct_symmetric_signal():
    assert EProp().feedback == "symmetric"


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_direct_symmetric_and_chained_differ_only_below_the_last_hidden_layer(architecture):
    frames, labels = make_batch()
    modules = {mode: make_module(EProp(feedback=mode), architecture) for mode in ("symmetric", "chained")}
    updates = {}
    for mode, module in modules.items():  # same seed: same weights; compare by position in the network
        by_id = eprop_updates(module, frames, labels)
        updates[mode] = [[by_id[id(p)] for p in (layer.weight, layer.recurrent_weight) if p is not None]
                         for layer in module.network.layers]
    for l in (1, 2):  # the last hidden layer gets delta W_out in both; the output layer the exact gradient
        for a, b in zip(updates["symmetric"][l], updates["chained"][l]):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    # The first layer: chained gates by layer 1's pseudo-derivative, direct does not.
    for a, b in zip(updates["symmetric"][0], updates["chained"][0]):
        assert not torch.allclose(a, b, rtol=1e-2, atol=1e-8)


def test_symmetric_signal_of_the_lower_layer_is_the_product_of_forward_weights():
    module = make_module(EProp(), "ff")
    g = module.learner.direct_feedback(module.network)
    w = [layer.weight for layer in module.network.layers]
    torch.testing.assert_close(g[1], w[2])
    torch.testing.assert_close(g[0], w[2] @ w[1])


def test_output_layer_update_is_the_exact_gradient():
    module = make_module(EProp(), "rec")
    frames, labels = make_batch()
    updates = eprop_updates(module, frames, labels)
    from lightning_local.models import per_step_cross_entropy

    out = module.network.layers[-1].weight
    (exact,) = torch.autograd.grad(per_step_cross_entropy(module.network(frames).output_membrane, labels), [out])
    torch.testing.assert_close(updates[id(out)], exact, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_random_feedback_uses_the_buffer(architecture):
    module = make_module(EProp(feedback="random", seed=3), architecture)
    learner = module.learner
    frames, labels = make_batch()
    for l in range(2):
        assert f"learner.feedback_{l}" in module.state_dict()
        assert learner.feedback_matrix(l).shape == (module.network.layers[l].out_features, 4)
    before = eprop_updates(module, frames, labels)
    for l, layer in enumerate(module.network.layers[:-1]):
        reference = eprop_reference(module.network, frames, labels, l, feedback=learner.feedback_matrix(l))
        ours = [before[id(p)] for p in (layer.weight, layer.recurrent_weight) if p is not None]
        for a, b in zip(ours, reference):
            assert b.abs().max() > 1e-6
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-10)
    # Changing B_0 changes only layer 0's update.
    with torch.no_grad():
        learner.feedback_0.mul_(-2.0)
    after = eprop_updates(module, frames, labels)
    layers = module.network.layers
    torch.testing.assert_close(after[id(layers[0].weight)], -2.0 * before[id(layers[0].weight)])
    assert torch.equal(after[id(layers[1].weight)], before[id(layers[1].weight)])
    assert torch.equal(after[id(layers[2].weight)], before[id(layers[2].weight)])


def test_random_feedback_is_deterministic_per_seed():
    a = make_module(EProp(feedback="random", seed=5), seed=0).learner
    b = make_module(EProp(feedback="random", seed=5), seed=1).learner
    c = make_module(EProp(feedback="random", seed=6), seed=0).learner
    assert torch.equal(a.feedback_0, b.feedback_0)
    assert not torch.equal(a.feedback_0, c.feedback_0)


def test_training_step_objective_carries_the_updates():
    module = make_module(EProp(), "rec")
    frames, labels = make_batch()
    updates = eprop_updates(module, frames, labels)
    step = module.learner.training_step(module, frames, labels)
    step.objective.backward()
    for p in parameters(module):
        torch.testing.assert_close(p.grad, updates[id(p)], rtol=0, atol=0)
    from lightning_local.models import per_step_cross_entropy

    with torch.no_grad():
        output = module.network(frames)
    torch.testing.assert_close(step.loss, per_step_cross_entropy(output.output_membrane, labels))
    torch.testing.assert_close(step.logits, output.logits)


def test_eprop_differs_from_bptt_on_hidden_layers():
    module = make_module(EProp(), "ff")
    frames, labels = make_batch()
    updates = eprop_updates(module, frames, labels)
    from lightning_local.models import per_step_cross_entropy

    hidden = module.network.layers[0].weight
    (bptt,) = torch.autograd.grad(per_step_cross_entropy(module.network(frames).output_membrane, labels), [hidden])
    assert not torch.allclose(updates[id(hidden)], bptt, rtol=1e-3, atol=1e-8)


def test_unknown_feedback_is_rejected():
    with pytest.raises(ValueError, match="symmetric"):
        EProp(feedback="transpose")


@pytest.mark.parametrize("feedback", ["symmetric", "chained"])
@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_eprop_is_exact_over_several_first_layer_blocks(architecture, feedback):
    # 75 steps = blocks of 32, 32 and 11 for the first layer's block-wise accumulation.
    module = make_module(EProp(feedback=feedback), architecture)
    frames, labels = make_batch(steps=75, batch=3)
    updates = eprop_updates(module, frames, labels)
    for l in (0, 1):
        layer = module.network.layers[l]
        reference = eprop_reference(module.network, frames, labels, l, feedback=feedback)
        ours = [updates[id(p)] for p in (layer.weight, layer.recurrent_weight) if p is not None]
        for a, b in zip(ours, reference):
            assert b.abs().max() > 1e-6
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-10)


def test_block_is_the_default_schedule_and_others_are_refused():
    assert EProp().schedule == "block"
    with pytest.raises(ValueError, match="Unknown e-prop schedule"):
        EProp(schedule="sequence")
