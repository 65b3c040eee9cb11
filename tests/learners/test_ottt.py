"""OTTT (Xiao et al. 2022): equality with an independent autograd reference, OTTT_O's per-step
optimizer steps, and the identities that pin the trace and the cut temporal paths down."""

import pytest
import torch
from learner_helpers import assert_all_layers_fire, bptt_grads, learner_grads, make_batch, make_module, parameters
from reference_ottt import ottt_reference, ottt_total
from test_conv_rules import make_conv_module, make_image_batch
from test_decolle import RecordingOptimizer

from lightning_local.learners.traces import BLOCK_STEPS
from lightning_local.plugins.eprop import EProp
from lightning_local.plugins.ottt import OTTT

pytestmark = pytest.mark.usefixtures("float64")
LONG = 70  # > 2 first-layer blocks: the block-exact accumulation crosses block boundaries
assert LONG > 2 * BLOCK_STEPS


def assert_equal_to_reference(module, ours, reference):
    for p in parameters(module):
        assert reference[id(p)].abs().max() > 1e-6, "a vanishing update would make the comparison vacuous"
        torch.testing.assert_close(ours[id(p)], reference[id(p)], rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_ottt_a_equals_the_autograd_reference(architecture):
    module = make_module(OTTT(), architecture)
    frames, labels = make_batch(steps=LONG)
    assert_all_layers_fire(module, frames)
    step, ours = learner_grads(module, frames, labels)
    assert_equal_to_reference(module, ours, ottt_total(module.network, frames, labels))
    torch.testing.assert_close(step.logits, module.network(frames).logits)


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_ottt_a_equals_the_autograd_reference_on_a_conv_net(architecture):
    module = make_conv_module(OTTT(), architecture)
    frames, labels = make_image_batch()
    assert_all_layers_fire(module, frames)
    _, ours = learner_grads(module, frames, labels)
    assert_equal_to_reference(module, ours, ottt_total(module.network, frames, labels))


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_ottt_o_is_t_sgd_steps_on_the_per_step_gradients(architecture, monkeypatch):
    lr = 0.5  # large enough that later steps see visibly different weights
    module = make_module(OTTT(variant="O"), architecture)
    reference = make_module(OTTT(variant="O"), architecture)  # same seed: the same initial weights
    assert module.learner.manual_optimization and not module.automatic_optimization
    frames, labels = make_batch(steps=LONG)
    before = [p.clone() for p in parameters(module)]
    optimizer = RecordingOptimizer(module.parameters(), lr=lr)
    monkeypatch.setattr(module, "optimizers", lambda: optimizer)
    step = module.learner.training_step(module, frames, labels)
    assert step.objective is None and optimizer.steps == LONG
    per_step = ottt_reference(reference.network, frames, labels, sgd_lr=lr)  # the hand loop of T SGD steps
    for p, q, p0 in zip(parameters(module), parameters(reference), before):
        assert (q - p0).abs().max() > 1e-6
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-10)
        assert len(per_step[id(q)]) == LONG
    # The steps really changed the weights along the sequence: OTTT_A's one update differs.
    fresh = make_module(OTTT(), architecture)
    accumulated = ottt_total(fresh.network, frames, labels)
    fixed = [p0 - lr * accumulated[id(q)] for p0, q in zip(before, parameters(fresh))]
    assert any(not torch.allclose(p, f, rtol=1e-3, atol=1e-6) for p, f in zip(parameters(module), fixed))


def test_without_synaptic_memory_ottt_is_chained_eprop_and_exact_on_one_layer():
    """The trace is OTTT's ``a = lambda a + x`` with ``lambda = beta``: for ``alpha = 0`` it is
    ``z2 = d u/d W``, so OTTT_A equals e-prop's ``"chained"`` signal (same-step spatial path,
    every temporal chain above cut) on every weight, and a single layer (the output, read by its
    membrane) gets BPTT's gradient. For ``alpha > 0`` the single trace misses the synaptic filter,
    and on two layers the cut temporal paths of the hidden layer differ from BPTT."""
    frames, labels = make_batch(steps=LONG)
    for architecture in ("ff", "rec"):
        module = make_module(OTTT(), architecture, alpha=0.0, beta=0.9)
        eprop = make_module(EProp(feedback="chained"), architecture, alpha=0.0, beta=0.9)
        _, ours = learner_grads(module, frames, labels)
        _, chained = learner_grads(eprop, frames, labels)
        reference = ottt_total(module.network, frames, labels)  # the reference's cuts and trace, too
        for p, q in zip(parameters(module), parameters(eprop)):
            torch.testing.assert_close(ours[id(p)], chained[id(q)], rtol=1e-10, atol=1e-14)
            torch.testing.assert_close(reference[id(p)], chained[id(q)], rtol=1e-10, atol=1e-14)

    single = make_module(OTTT(), hidden=[], alpha=0.0, beta=0.9)
    _, ours = learner_grads(single, frames, labels)
    weight = single.network.layers[0].weight
    torch.testing.assert_close(ours[id(weight)], bptt_grads(single, frames, labels)[id(weight)], rtol=1e-10, atol=1e-14)

    filtered = make_module(OTTT(), hidden=[])  # alpha = exp(-1/5): a = z2 no more
    _, ours = learner_grads(filtered, frames, labels)
    weight = filtered.network.layers[0].weight
    assert not torch.allclose(ours[id(weight)], bptt_grads(filtered, frames, labels)[id(weight)], rtol=1e-2)

    two = make_module(OTTT(), hidden=[12], alpha=0.0, beta=0.9)
    _, ours = learner_grads(two, frames, labels)
    bptt = bptt_grads(two, frames, labels)
    hidden, output = (layer.weight for layer in two.network.layers)
    torch.testing.assert_close(ours[id(output)], bptt[id(output)], rtol=1e-10, atol=1e-14)
    assert not torch.allclose(ours[id(hidden)], bptt[id(hidden)], rtol=1e-2)


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="Unknown OTTT variant"):
        OTTT(variant="B")
    assert OTTT().spec()["init_args"] == {"variant": "A"}
