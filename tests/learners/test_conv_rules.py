"""DECOLLE, FA and DFA on a small convolutional network against autograd references with explicit stop-gradients."""

import lightning.pytorch as pl
import pytest
import torch
from learner_helpers import (
    assert_all_layers_fire, assert_fa_is_the_reference_not_bptt, assert_fa_with_the_weights_is_bptt, bptt_grads,
    learner_grads, parameters,
)
from reference_rules import decolle_reference, dfa_reference
from torch.nn.functional import adaptive_avg_pool2d
from torch.utils.data import DataLoader, TensorDataset

from lightning_local.learners.traces import BLOCK_STEPS
from lightning_local.models import per_step_cross_entropy
from lightning_local.module import SpikingClassifier
from lightning_local.plugins.decolle import Decolle, SpatialPool
from lightning_local.plugins.feedback_alignment import FeedbackAlignment

# 9x9 maps pooled to DECOLLE's default 4x4 readout grid: uneven, overlapping pooling windows.
SHAPE, CHANNELS, CLASSES, STEPS, BATCH = (2, 9, 9), [3, 4], 4, 40, 3
assert STEPS > BLOCK_STEPS  # the first layer's update crosses a block boundary


def make_conv_module(learner, architecture="ff", seed=0, gain=2.0):
    """Conv 2->3->4 channels (kernel 3, padding 1), dense readout; weights scaled by ``gain`` so every layer fires."""
    torch.manual_seed(seed)
    module = SpikingClassifier(
        SHAPE[0] * SHAPE[1] * SHAPE[2], CLASSES, learner=learner, architecture=architecture,
        synapse="conv", channels=CHANNELS, kernel_size=3, input_shape=SHAPE,
    )
    with torch.no_grad():
        for layer in module.network.layers:
            layer.weight.mul_(gain)
    return module


def make_image_batch(seed=1, steps=STEPS, batch=BATCH):
    generator = torch.Generator().manual_seed(seed)
    frames = (torch.rand(batch, steps, *SHAPE, generator=generator) < 0.3).to(torch.get_default_dtype())
    return frames, torch.randint(0, CLASSES, (batch,), generator=generator)


@pytest.mark.parametrize("size", [4, 3, 12])
def test_spatial_pool_is_adaptive_average_pooling_and_its_adjoint(float64, size):
    maps = torch.randn(2, 3, 9, 7, requires_grad=True)
    pool = SpatialPool((3, 9, 7), size, maps)
    expected = adaptive_avg_pool2d(maps, pool.size)
    assert pool.size == (min(size, 9), min(size, 7)) and pool.features == expected[0].numel()
    torch.testing.assert_close(pool(maps), expected.flatten(1), rtol=0, atol=1e-12)
    error = torch.randn(2, pool.features)
    (adjoint,) = torch.autograd.grad(expected.flatten(1), maps, error)
    torch.testing.assert_close(pool.backward(error), adjoint, rtol=0, atol=1e-12)


@pytest.mark.parametrize("readout", ["spikes", "membrane"])
@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_decolle_on_conv_equals_autograd_with_local_stop_gradients(float64, architecture, readout):
    module = make_conv_module(Decolle(readout=readout, online=False), architecture)
    frames, labels = make_image_batch()
    assert_all_layers_fire(module, frames)
    learner = module.learner
    assert [pool.size for pool in learner.pools] == [(4, 4), (4, 4)]
    assert learner.readout_matrix(1).shape == (CLASSES, 4 * 4 * 4)
    _, _, updates = learner.updates(module.network, frames, labels)
    ours = {id(p): d for p, d in updates}
    reference = decolle_reference(
        module.network, frames, labels, [learner.readout_matrix(l) for l in range(2)], readout,
        pool_sizes=[pool.size for pool in learner.pools],
    )
    assert len(ours) == len(reference) == (3 if architecture == "ff" else 5)
    for p in parameters(module):
        assert reference[id(p)].abs().max() > 1e-6
        torch.testing.assert_close(ours[id(p)], reference[id(p)], rtol=1e-6, atol=1e-10)
    # Offline mode hands the same update to Lightning as a gradient.
    step, grads = learner_grads(module, frames, labels)
    for p in parameters(module):
        torch.testing.assert_close(grads[id(p)], ours[id(p)], rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(step.loss, per_step_cross_entropy(module.network(frames).output_membrane, labels))


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_fa_on_conv_equals_reference_and_the_networks_forward(float64, architecture):
    module = make_conv_module(FeedbackAlignment(), architecture)
    frames, labels = make_image_batch(steps=20)
    assert_all_layers_fire(module, frames)
    learner, layers = module.learner, module.network.layers
    assert learner.feedback_matrix(1).shape == layers[1].weight.shape  # a conv kernel: the error goes back by a transposed conv
    step, ours = learner_grads(module, frames, labels)
    with torch.no_grad():
        output = module.network(frames)
        fa_output = learner.forward_fa(module.network, frames)
    for a, b in zip(fa_output.spikes, output.spikes):
        assert torch.equal(a, b)
    torch.testing.assert_close(fa_output.output_membrane, output.output_membrane, rtol=0, atol=0)
    torch.testing.assert_close(step.loss, per_step_cross_entropy(output.output_membrane, labels))
    assert_fa_is_the_reference_not_bptt(module, ours, frames, labels)


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_fa_on_conv_with_the_weights_as_feedback_is_bptt(float64, architecture):
    module = make_conv_module(FeedbackAlignment(), architecture)
    frames, labels = make_image_batch(steps=20)
    assert_fa_with_the_weights_is_bptt(module, frames, labels)


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_dfa_on_conv_equals_reference_and_trains_the_output_like_bptt(float64, architecture):
    module = make_conv_module(FeedbackAlignment(direct=True), architecture)
    frames, labels = make_image_batch(steps=20)
    learner, layers = module.learner, module.network.layers
    assert learner.feedback_matrix(0).shape == (3 * 9 * 9, CLASSES)
    step, ours = learner_grads(module, frames, labels)
    reference = dfa_reference(module.network, frames, labels, [learner.feedback_matrix(l) for l in (0, 1)])
    for p in parameters(module):
        assert reference[id(p)].abs().max() > 1e-6
        torch.testing.assert_close(ours[id(p)], reference[id(p)], rtol=1e-6, atol=1e-10)
    bptt = bptt_grads(module, frames, labels)
    torch.testing.assert_close(ours[id(layers[-1].weight)], bptt[id(layers[-1].weight)], rtol=1e-6, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(step.loss, per_step_cross_entropy(module.network(frames).output_membrane, labels))


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_online_decolle_on_conv_steps_within_a_lightning_batch(tmp_path, architecture):
    module = make_conv_module(Decolle(), architecture)
    steps = 6
    frames, labels = make_image_batch(steps=steps, batch=4)
    before = [p.detach().clone() for p in parameters(module)]
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    batches = DataLoader(TensorDataset(frames, labels), batch_size=4)
    trainer.fit(module, batches, batches)
    assert trainer.global_step == steps  # one optimizer step per time step
    assert torch.isfinite(trainer.callback_metrics["train_loss"])
    for p, old in zip(parameters(module), before):
        assert not torch.equal(p.detach(), old)
