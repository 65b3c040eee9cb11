"""Small networks and synthetic batches shared by the learner tests."""

from __future__ import annotations

import torch
from reference_rules import fa_reference

from lightning_local.models import per_step_cross_entropy
from lightning_local.module import SpikingClassifier

STEPS, BATCH, INPUTS, HIDDEN, CLASSES = 30, 5, 30, [20, 12], 4


def make_module(learner, architecture="ff", seed=0, hidden=HIDDEN, inputs=INPUTS, classes=CLASSES, gain=3.0, **model):
    """A tiny classifier whose layers all fire on :func:`make_batch` (weights scaled by ``gain``;
    ``model``: more :class:`SpikingClassifier` arguments, e.g. the decays)."""
    torch.manual_seed(seed)
    module = SpikingClassifier(inputs, classes, learner=learner, architecture=architecture, hidden_sizes=hidden, **model)
    with torch.no_grad():
        for layer in module.network.layers:
            layer.weight.mul_(gain)
    return module


def make_batch(seed=1, steps=STEPS, batch=BATCH, inputs=INPUTS, classes=CLASSES):
    generator = torch.Generator().manual_seed(seed)
    frames = (torch.rand(batch, steps, inputs, generator=generator) < 0.3).to(torch.get_default_dtype())
    labels = torch.randint(0, classes, (batch,), generator=generator)
    return frames, labels


def assert_all_layers_fire(module, frames):
    with torch.no_grad():
        output = module.network(frames)
    for l, spikes in enumerate(output.spikes[:-1]):
        rate = spikes.mean().item()
        assert 0.01 < rate < 0.9, f"layer {l} fires at rate {rate:.3f}: the comparison would be vacuous"


def parameters(module):
    return [p for layer in module.network.layers for p in (layer.weight, layer.recurrent_weight) if p is not None]


def learner_grads(module, frames, labels):
    """The learner's :meth:`~lightning_local.learners.Learner.updates` of one batch (loss, logits, pairs) and its
    update of every weight (by ``id``): the one way every rule's tests read a rule's update."""
    result = module.learner.updates(module.network, frames, labels)
    ours = {id(p): d.detach().clone() for p, d in result.updates}
    assert set(ours) >= {id(p) for p in parameters(module)}, "the rule left a trained weight without an update"
    return result, ours


def bptt_grads(module, frames, labels):
    """The exact BPTT gradient of the training loss for every weight (by ``id``)."""
    params = parameters(module)
    grads = torch.autograd.grad(per_step_cross_entropy(module.network(frames).output_membrane, labels), params)
    return {id(p): g for p, g in zip(params, grads)}


def assert_fa_is_the_reference_not_bptt(module, ours, frames, labels):
    """FA's gradients ``ours`` equal the reference with the learner's ``B_l``; the output layer's is
    BPTT's, every lower layer's is not (so the feedback really replaced ``W_l^T``)."""
    feedbacks = {l: module.learner.feedback_matrix(l) for l in range(1, len(module.network.layers))}
    reference = fa_reference(module.network, frames, labels, feedbacks)
    bptt = bptt_grads(module, frames, labels)
    layers = module.network.layers
    for p in parameters(module):
        assert reference[id(p)].abs().max() > 1e-6
        torch.testing.assert_close(ours[id(p)], reference[id(p)], rtol=1e-6, atol=1e-10)
    torch.testing.assert_close(ours[id(layers[-1].weight)], bptt[id(layers[-1].weight)], rtol=1e-6, atol=1e-12)
    for layer in layers[:-1]:
        assert not torch.allclose(ours[id(layer.weight)], bptt[id(layer.weight)], rtol=1e-2, atol=1e-6)


def assert_fa_with_the_weights_is_bptt(module, frames, labels):
    """With ``B_l = W_l`` (copied in), FA's gradients are BPTT's."""
    with torch.no_grad():
        for l in range(1, len(module.network.layers)):
            module.learner.feedback_matrix(l).copy_(module.network.layers[l].weight)
    _, ours = learner_grads(module, frames, labels)
    bptt = bptt_grads(module, frames, labels)
    for p in parameters(module):
        assert bptt[id(p)].abs().max() > 1e-6
        torch.testing.assert_close(ours[id(p)], bptt[id(p)], rtol=1e-6, atol=1e-12)
