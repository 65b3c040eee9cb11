"""Small networks and synthetic batches shared by the learner tests."""

from __future__ import annotations

import torch

from lightning_local.models import per_step_cross_entropy
from lightning_local.module import SpikingClassifier

STEPS, BATCH, INPUTS, HIDDEN, CLASSES = 30, 5, 30, [20, 12], 4


def make_module(learner, architecture="ff", seed=0, hidden=HIDDEN, inputs=INPUTS, classes=CLASSES, gain=3.0):
    """A tiny classifier whose layers all fire on :func:`make_batch` (weights scaled by ``gain``)."""
    torch.manual_seed(seed)
    module = SpikingClassifier(inputs, classes, learner=learner, architecture=architecture, hidden_sizes=hidden)
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
    """The learner's step on one batch and the gradient its objective gives every weight (by ``id``)."""
    module.zero_grad()
    step = module.learner.training_step(module, frames, labels)
    step.objective.backward()
    return step, {id(p): p.grad.clone() for p in parameters(module)}


def bptt_grads(module, frames, labels):
    """The exact BPTT gradient of the training loss for every weight (by ``id``)."""
    params = parameters(module)
    grads = torch.autograd.grad(per_step_cross_entropy(module.network(frames).output_membrane, labels), params)
    return {id(p): g for p, g in zip(params, grads)}
