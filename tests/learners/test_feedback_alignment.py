"""Feedback alignment and DFA against explicit autograd references; FA differs from BPTT."""

import pytest
import torch
from learner_helpers import (
    assert_all_layers_fire, assert_fa_is_the_reference_not_bptt, assert_fa_with_the_weights_is_bptt, learner_grads,
    make_batch, make_module, parameters,
)
from reference_rules import dfa_reference

from lightning_local.models import per_step_cross_entropy
from lightning_local.plugins.feedback_alignment import FeedbackAlignment

pytestmark = pytest.mark.usefixtures("float64")


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_fa_equals_reference_and_differs_from_bptt(architecture):
    module = make_module(FeedbackAlignment(), architecture)
    frames, labels = make_batch()
    assert_all_layers_fire(module, frames)
    step, ours = learner_grads(module, frames, labels)
    assert_fa_is_the_reference_not_bptt(module, ours, frames, labels)
    # The forward pass (loss, logits) is the network's own.
    with torch.no_grad():
        output = module.network(frames)
    torch.testing.assert_close(step.loss, per_step_cross_entropy(output.output_membrane, labels))


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_fa_with_transposed_weights_as_feedback_is_bptt(architecture):
    module = make_module(FeedbackAlignment(), architecture)
    frames, labels = make_batch()
    assert_fa_with_the_weights_is_bptt(module, frames, labels)


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_dfa_equals_reference(architecture):
    module = make_module(FeedbackAlignment(direct=True), architecture)
    frames, labels = make_batch()
    learner = module.learner
    assert learner.feedback_matrix(0).shape == (20, 4) and learner.feedback_matrix(1).shape == (12, 4)
    step, ours = learner_grads(module, frames, labels)
    reference = dfa_reference(module.network, frames, labels, [learner.feedback_matrix(l) for l in (0, 1)])
    for p in parameters(module):
        assert reference[id(p)].abs().max() > 1e-6
        torch.testing.assert_close(ours[id(p)], reference[id(p)], rtol=1e-6, atol=1e-10)
    with torch.no_grad():
        output = module.network(frames)
    torch.testing.assert_close(step.loss, per_step_cross_entropy(output.output_membrane, labels))


def test_feedback_buffers_are_deterministic_and_checkpointed():
    a = make_module(FeedbackAlignment(seed=4), seed=0)
    b = make_module(FeedbackAlignment(seed=4), seed=9)
    c = make_module(FeedbackAlignment(seed=5), seed=0)
    keys = {k for k in a.state_dict() if k.startswith("learner.")}
    assert keys == {"learner.feedback_1", "learner.feedback_2"}
    assert torch.equal(a.learner.feedback_1, b.learner.feedback_1)
    assert not torch.equal(a.learner.feedback_1, c.learner.feedback_1)
    assert not torch.equal(a.learner.feedback_1, a.network.layers[1].weight)
