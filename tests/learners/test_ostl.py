"""OSTL (Bohnstingl et al. 2022): equality with an independent autograd reference, BPTT's gradient on one
layer, and e-prop's ``"chained"`` signal when the reset is detached."""

import pytest
import torch
from learner_helpers import assert_all_layers_fire, bptt_grads, learner_grads, make_batch, make_module, parameters
from reference_ostl import bptt_through_the_reset, ostl_reference
from test_conv_rules import make_conv_module

from lightning_local.learners.base import LearnerOptionError
from lightning_local.learners.traces import BLOCK_STEPS
from lightning_local.plugins.eprop import EProp
from lightning_local.plugins.ostl import OSTL

pytestmark = pytest.mark.usefixtures("float64")
LONG = 70  # > 2 blocks: the eligibilities are carried across block boundaries
assert LONG > 2 * BLOCK_STEPS


def assert_close_and_not_vacuous(ours, reference, params, rtol=1e-5):
    for p in params:
        assert reference[id(p)].abs().max() > 1e-6, "a vanishing update would make the comparison vacuous"
        torch.testing.assert_close(ours[id(p)], reference[id(p)], rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("reset", ["differentiable", "detached"])
@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_ostl_equals_the_autograd_reference(architecture, reset):
    module = make_module(OSTL(reset=reset), architecture)
    frames, labels = make_batch(steps=LONG)
    assert_all_layers_fire(module, frames)
    step, ours = learner_grads(module, frames, labels)
    assert_close_and_not_vacuous(ours, ostl_reference(module.network, frames, labels, reset), parameters(module))
    torch.testing.assert_close(step.logits, module.network(frames).logits)


def test_on_one_layer_ostl_is_bptt_with_and_without_the_reset_path():
    frames, labels = make_batch(steps=LONG)
    kept = make_module(OSTL(), hidden=[])
    _, ours = learner_grads(kept, frames, labels)
    through_reset = bptt_through_the_reset(kept.network, frames, labels)
    assert_close_and_not_vacuous(ours, through_reset, parameters(kept), rtol=1e-8)
    cut = make_module(OSTL(reset="detached"), hidden=[])
    _, ours_cut = learner_grads(cut, frames, labels)
    assert_close_and_not_vacuous(ours_cut, bptt_grads(cut, frames, labels), parameters(cut), rtol=1e-8)
    # The reset's path carries real credit: the two gradients differ.
    weight = kept.network.layers[0].weight
    assert not torch.allclose(through_reset[id(weight)], ours_cut[id(cut.network.layers[0].weight)], rtol=1e-2)


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_with_the_reset_detached_ostl_is_chained_eprop(architecture):
    frames, labels = make_batch(steps=LONG)
    module = make_module(OSTL(reset="detached"), architecture)
    eprop = make_module(EProp(feedback="chained"), architecture)
    _, ours = learner_grads(module, frames, labels)
    _, chained = learner_grads(eprop, frames, labels)
    for p, q in zip(parameters(module), parameters(eprop)):
        assert chained[id(q)].abs().max() > 1e-6
        torch.testing.assert_close(ours[id(p)], chained[id(q)], rtol=1e-8, atol=1e-14)
    # ... and on two layers neither is BPTT: the hidden layer misses the output's temporal paths.
    bptt = bptt_grads(module, frames, labels)
    first = module.network.layers[0].weight
    assert not torch.allclose(ours[id(first)], bptt[id(first)], rtol=1e-2)


def test_ostl_refuses_a_convolutional_network_in_one_line():
    with pytest.raises(ValueError, match="ostl trains fully connected networks only: its eligibility is one number per synapse") as refused:
        make_conv_module(OSTL(), "ff")
    message = str(refused.value)
    assert "\n" not in message and "Rules that train convolutional networks: bptt, decolle, dfa, fa, ottt, sltt" in message


def test_unknown_reset_is_rejected():
    with pytest.raises(LearnerOptionError, match="Unknown OSTL reset 'soft'"):
        OSTL(reset="soft")
    assert OSTL().spec()["init_args"] == {"reset": "differentiable"}
