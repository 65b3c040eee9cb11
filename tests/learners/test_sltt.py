"""SLTT (and SLTT-K) against an autograd reference with every temporal path detached; it is not BPTT."""

import pytest
import torch
from learner_helpers import assert_all_layers_fire, bptt_grads, learner_grads, make_batch, make_module, parameters
from reference_sltt import sltt_reference
from test_conv_rules import make_conv_module, make_image_batch

from lightning_local.learners import LearnerOptionError
from lightning_local.learners.traces import BLOCK_STEPS
from lightning_local.plugins.sltt import SLTT

pytestmark = pytest.mark.usefixtures("float64")
STEPS = 70  # three blocks of the simulation: the state carried between blocks counts
assert STEPS > 2 * BLOCK_STEPS


def assert_equals_reference(ours, reference, module):
    for p in parameters(module):
        assert reference[id(p)].abs().max() > 1e-7, f"{tuple(p.shape)}: the reference update is zero"
        torch.testing.assert_close(ours[id(p)], reference[id(p)], rtol=1e-5, atol=1e-12, msg=f"{tuple(p.shape)}")


# A net of the output layer alone (no hidden layer, no recurrence) is the single-layer case.
@pytest.mark.parametrize("architecture, hidden", [("ff", [20, 12]), ("rec", [20, 12]), ("ff", [])],
                         ids=["ff", "rec", "single_layer"])
def test_sltt_equals_autograd_with_the_temporal_paths_detached(architecture, hidden):
    module = make_module(SLTT(), architecture, hidden=hidden)
    frames, labels = make_batch(steps=STEPS)
    if hidden:
        assert_all_layers_fire(module, frames)
    step, ours = learner_grads(module, frames, labels)
    assert len(ours) == len(parameters(module))
    assert_equals_reference(ours, sltt_reference(module.network, frames, labels), module)
    with torch.no_grad():
        output = module.network(frames)
    torch.testing.assert_close(step.loss, torch.nn.functional.cross_entropy(
        output.output_membrane.flatten(0, 1), labels.repeat(STEPS)), rtol=1e-12, atol=0)
    torch.testing.assert_close(step.logits, output.logits, rtol=1e-12, atol=0)


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_sltt_on_a_conv_net_equals_the_reference(architecture):
    module = make_conv_module(SLTT(), architecture)
    frames, labels = make_image_batch()
    assert_all_layers_fire(module, frames)
    _, ours = learner_grads(module, frames, labels)
    assert_equals_reference(ours, sltt_reference(module.network, frames, labels), module)


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_sltt_with_masked_frame_labels_equals_the_reference(architecture):
    module = make_module(SLTT(), architecture)
    frames, _ = make_batch(steps=STEPS)
    labels = torch.randint(0, 4, (frames.shape[0], STEPS), generator=torch.Generator().manual_seed(3))
    labels[:, :10] = -100  # e.g. padding: no error at these steps
    _, ours = learner_grads(module, frames, labels)
    assert_equals_reference(ours, sltt_reference(module.network, frames, labels), module)


@pytest.mark.parametrize("k", [STEPS, STEPS + 5])
def test_sltt_k_with_every_step_is_sltt(k):
    frames, labels = make_batch(steps=STEPS)
    full, with_k = (make_module(learner, "rec") for learner in (SLTT(), SLTT(k=k)))
    assert with_k.learner.chosen_steps(STEPS, 0) is None
    _, a = learner_grads(full, frames, labels)
    _, b = learner_grads(with_k, frames, labels)
    for p, q in zip(parameters(full), parameters(with_k)):  # same seed: same weights, by position
        torch.testing.assert_close(b[id(q)], a[id(p)], rtol=0, atol=0)


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_sltt_k_backpropagates_only_its_k_drawn_steps(architecture):
    k = 6
    module = make_module(SLTT(k=k, seed=3), architecture)
    frames, labels = make_batch(steps=STEPS)
    for batch_index in range(2):  # the draw counter advances: each batch its own steps
        steps = module.learner.chosen_steps(STEPS, batch_index)
        assert steps.numel() == k == steps.unique().numel() and 0 <= int(steps.min()) and int(steps.max()) < STEPS
        step, ours = learner_grads(module, frames, labels)
        assert int(module.learner.batches_drawn) == batch_index + 1
        assert_equals_reference(ours, sltt_reference(module.network, frames, labels, steps), module)
    full = SLTT().updates(module.network, frames, labels)[0]
    torch.testing.assert_close(step.loss, full, rtol=0, atol=0)  # the loss still covers every step
    assert not torch.equal(module.learner.chosen_steps(STEPS, 0), module.learner.chosen_steps(STEPS, 1))
    assert torch.equal(SLTT(k=k, seed=3).chosen_steps(STEPS, 1), module.learner.chosen_steps(STEPS, 1))
    assert not torch.equal(SLTT(k=k, seed=4).chosen_steps(STEPS, 0), module.learner.chosen_steps(STEPS, 0))


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_sltt_is_not_bptt(architecture):
    """Every weight's update differs from BPTT's: the leak/synaptic history (and REC's ``V s^{t-1}``) is cut."""
    module = make_module(SLTT(), architecture)
    frames, labels = make_batch(steps=STEPS)
    _, ours = learner_grads(module, frames, labels)
    bptt = bptt_grads(module, frames, labels)
    for p in parameters(module):
        assert not torch.allclose(ours[id(p)], bptt[id(p)], rtol=1e-2, atol=1e-8), f"{tuple(p.shape)} equals BPTT"


def test_sltt_with_only_the_recurrent_path_cut_would_differ():
    """The REC reference's ``detach_recurrent`` matters: keeping ``V s^{t-1}`` differentiable changes ``V``'s update."""
    from reference_rules import simulate, task_loss

    module = make_module(SLTT(), "rec")
    frames, labels = make_batch(steps=STEPS)
    _, ours = learner_grads(module, frames, labels)
    mems, _ = simulate(module.network, frames, lambda l: dict(detach_history=True))
    recurrent = [layer.recurrent_weight for layer in module.network.layers if layer.recurrent_weight is not None]
    for p, g in zip(recurrent, torch.autograd.grad(task_loss(mems[-1], labels), recurrent)):
        assert not torch.allclose(ours[id(p)], g, rtol=1e-2, atol=1e-8)


@pytest.mark.parametrize("k", [0, -2, 2.5, True])
def test_bad_k_is_refused_in_one_sentence(k):
    with pytest.raises(LearnerOptionError, match=r"^SLTT's k must be a positive number of time steps") as refused:
        SLTT(k=k)
    assert "\n" not in str(refused.value)
