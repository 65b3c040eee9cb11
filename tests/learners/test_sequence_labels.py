"""Sequence labelling: every rule's update with masked ``[B, T]`` labels equals its autograd reference.

Labels are one class per step with -100 (``IGNORE_INDEX``) on padded tails and scattered
steps (TIMIT's ``q``); the references (``reference_rules.task_loss``) use torch's
``cross_entropy(ignore_index=-100)`` step by step.
"""

import pytest
import torch
from learner_helpers import CLASSES, assert_all_layers_fire, learner_grads, make_batch, make_module, parameters
from reference_rules import decolle_reference, dfa_reference, eprop_reference, fa_reference, simulate, task_loss

from lightning_local.models import per_step_cross_entropy
from lightning_local.learners import LEARNER_GROUP, available, learner_class
from lightning_local.module import InvalidInputError
from lightning_local.plugins.bptt import BPTT
from lightning_local.plugins.conversion import Conversion
from lightning_local.plugins.decolle import Decolle
from lightning_local.plugins.eprop import EProp
from lightning_local.plugins.feedback_alignment import FeedbackAlignment

pytestmark = pytest.mark.usefixtures("float64")

IGNORE = -100


def frame_batch(seed=1, real=False, **kwargs):
    """Frames with per-step labels: sample b's last ``2 b`` steps are padding, plus random ignored steps.

    ``real``: normalised real-valued features (input currents, like MFCCs) instead of binary spikes.
    """
    frames, _ = make_batch(seed, **kwargs)
    if real:
        frames = torch.randn(frames.shape, generator=torch.Generator().manual_seed(seed + 7))
    batch, steps, _ = frames.shape
    generator = torch.Generator().manual_seed(seed + 100)
    labels = torch.randint(0, CLASSES, (batch, steps), generator=generator)
    labels[torch.rand(batch, steps, generator=generator) < 0.15] = IGNORE  # 'q' frames
    for b in range(batch):
        if b:
            labels[b, steps - 2 * b:] = IGNORE
            frames[b, steps - 2 * b:] = 0.0  # padded frames are zero, as the collate pads them
    assert (labels == IGNORE).any() and (labels != IGNORE).sum() > batch
    return frames, labels


def relabel_ignored(labels):
    """The same targets with other (valid) classes written on the ignored steps."""
    other = labels.clone()
    ignored = other == IGNORE
    other[ignored] = torch.arange(int(ignored.sum())) % CLASSES
    return other


def by_id(updates):
    return {id(p): d.clone() for p, d in updates}


def check_against(ours, reference, params):
    for p in params:
        assert reference[id(p)].abs().max() > 1e-6, "reference update is zero: the comparison would be vacuous"
        torch.testing.assert_close(ours[id(p)], reference[id(p)], rtol=1e-5, atol=1e-10)





@pytest.mark.parametrize("schedule", ["step", "block"])
@pytest.mark.parametrize("real", [False, True], ids=["spikes", "currents"])
@pytest.mark.parametrize("feedback", ["symmetric", "chained", "random"])
@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_eprop_masked_frame_labels_equal_autograd(architecture, feedback, real, schedule):
    module = make_module(EProp(feedback=feedback, schedule=schedule), architecture)
    frames, labels = frame_batch(real=real, steps=70)  # three trace blocks
    assert_all_layers_fire(module, frames)
    loss, predictions, updates = module.learner.updates(module.network, frames, labels)
    ours = by_id(updates)
    for l, layer in enumerate(module.network.layers):
        route = module.learner.feedback_matrix(l) if feedback == "random" and l < 2 else feedback
        reference = eprop_reference(module.network, frames, labels, l, feedback=route)
        mine = [p for p in (layer.weight, layer.recurrent_weight) if p is not None]
        check_against(ours, dict(zip(map(id, mine), reference)), mine)
    with torch.no_grad():
        output = module.network(frames)
    torch.testing.assert_close(loss, per_step_cross_entropy(output.output_membrane, labels))
    assert predictions.dtype == torch.int64 and predictions.shape == labels.shape
    assert torch.equal(predictions, output.frame_logits.argmax(dim=1))


@pytest.mark.parametrize("real", [False, True], ids=["spikes", "currents"])
@pytest.mark.parametrize("readout", ["spikes", "membrane"])
@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_decolle_masked_frame_labels_equal_autograd(architecture, readout, real):
    module = make_module(Decolle(readout=readout), architecture)
    frames, labels = frame_batch(real=real)
    assert_all_layers_fire(module, frames)
    loss, predictions, updates = module.learner.updates(module.network, frames, labels)
    readouts = [module.learner.readout_matrix(l) for l in range(2)]
    check_against(by_id(updates), decolle_reference(module.network, frames, labels, readouts, readout), parameters(module))
    with torch.no_grad():
        output = module.network(frames)
    torch.testing.assert_close(loss, per_step_cross_entropy(output.output_membrane, labels))
    assert torch.equal(predictions, output.frame_logits.argmax(dim=1))


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_online_decolle_with_frame_labels_sums_to_the_offline_update_at_fixed_weights(architecture):
    """Online DECOLLE's per-chunk updates (weights left unchanged) add up to the whole-sequence update."""
    module = make_module(Decolle(update_every=7), architecture)
    frames, labels = frame_batch()
    chunks = []
    module.learner.run(module.network, frames, labels, apply=lambda updates: chunks.append(by_id(updates)))
    assert len(chunks) == -(-frames.shape[1] // 7)
    _, _, whole = module.learner.updates(module.network, frames, labels)
    for p, d in whole:
        torch.testing.assert_close(sum(chunk[id(p)] for chunk in chunks), d, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("real", [False, True], ids=["spikes", "currents"])
@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_fa_and_dfa_masked_frame_labels_equal_autograd(architecture, real):
    frames, labels = frame_batch(real=real)
    for direct, reference_rule in ((False, fa_reference), (True, dfa_reference)):
        module = make_module(FeedbackAlignment(direct=direct), architecture)
        assert_all_layers_fire(module, frames)
        step, ours = learner_grads(module, frames, labels)
        layers = (0, 1) if direct else (1, 2)
        feedbacks = [module.learner.feedback_matrix(l) for l in layers]
        if not direct:
            feedbacks = dict(zip(layers, feedbacks))
        check_against(ours, reference_rule(module.network, frames, labels, feedbacks), parameters(module))
        with torch.no_grad():
            output = module.network(frames)
        torch.testing.assert_close(step.logits, output.frame_logits)
        torch.testing.assert_close(step.loss, per_step_cross_entropy(output.output_membrane, labels))


@pytest.mark.parametrize("architecture", ["ff", "rec"])
def test_bptt_masked_frame_labels_equal_the_reference_gradient(architecture):
    module = make_module(BPTT(), architecture)
    frames, labels = frame_batch()
    step, ours = learner_grads(module, frames, labels)
    mems, _ = simulate(module.network, frames, lambda l: {})
    params = parameters(module)
    reference = dict(zip(map(id, params), torch.autograd.grad(task_loss(mems[-1], labels), params)))
    check_against(ours, reference, params)
    assert step.logits.shape == (labels.shape[0], CLASSES, labels.shape[1])  # torchmetrics' [B, C, T]


def rule_updates(name, architecture, frames, labels):
    """Each rule's update of every parameter, by position."""
    module = make_module(name, architecture)
    updates = learner_grads(module, frames, labels)[1]
    return [updates[id(p)] for p in parameters(module)]


# Every registered rule that trains on per-frame labels (conversion refuses them: its own test below).
FRAME_LABEL_RULES = [name for name in sorted(available(LEARNER_GROUP)) if name != "conversion"]
ONLINE_RULES = [name for name in FRAME_LABEL_RULES if learner_class(name).memory_constant_in_T]


@pytest.mark.parametrize("name", FRAME_LABEL_RULES)
def test_update_depends_on_the_mask_and_on_targeted_steps(name):
    frames, labels = frame_batch()
    masked = rule_updates(name, "rec", frames, labels)
    relabelled = rule_updates(name, "rec", frames, relabel_ignored(labels))
    for a, b in zip(masked, relabelled):
        assert not torch.allclose(a, b, rtol=1e-3, atol=1e-8)  # the ignored steps carried a target now
    changed = labels.clone()  # one more class at a mid-sequence step of every sample targeted there
    mid = labels.shape[1] // 2
    targeted = labels[:, mid] != IGNORE
    changed[targeted, mid] = (labels[targeted, mid] + 1) % CLASSES
    for a, b in zip(masked, rule_updates(name, "rec", frames, changed)):
        assert not torch.allclose(a, b, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("name", ONLINE_RULES)
def test_online_rules_create_nothing_of_length_t_with_frame_labels(name):
    """No tensor of ``B x T x classes`` elements or more is created (BPTT's membrane alone is one)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    steps = 401
    frames, labels = frame_batch(steps=steps)
    limit = labels.numel() * CLASSES

    class LargeOutputs(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.shapes = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for tensor in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(tensor, torch.Tensor) and tensor.numel() >= limit:
                    if tensor.untyped_storage().data_ptr() != frames.untyped_storage().data_ptr():  # not a view of the input
                        self.shapes.append((str(func), tuple(tensor.shape)))
            return out

    def recorded(learner_name):
        module = make_module(learner_name, "rec")
        optimizer = torch.optim.SGD(module.parameters(), lr=1e-3)
        module.optimizers = lambda: optimizer  # online DECOLLE steps it within the sequence
        with LargeOutputs() as mode:
            step = module.learner.training_step(module, frames, labels)
        return step, mode.shapes

    step, shapes = recorded(name)
    assert shapes == [], f"{name} created tensors of length T: {shapes}"
    assert step.logits.shape == labels.shape
    assert recorded("bptt")[1], "BPTT's [T, B, ...] tensors must be seen: the check would be vacuous"


def test_conversion_refuses_frame_labels_with_one_line():
    module = make_module(Conversion(), "ff")
    frames, labels = frame_batch()
    with pytest.raises(InvalidInputError, match="per-frame labels") as error:
        module.learner.training_step(module, frames, labels)
    assert "\n" not in str(error.value)


FIT_LEARNERS = {
    "bptt": "bptt",
    "fa": "fa",
    "dfa": {"class_path": "lightning_local.plugins.feedback_alignment.FeedbackAlignment", "init_args": {"direct": True}},
    "eprop": "eprop",
    "decolle": "decolle",  # online: an optimizer step every time step
    "decolle_offline": {"class_path": "lightning_local.plugins.decolle.Decolle", "init_args": {"online": False}},
}


def frame_loader(seed, samples=16, steps=20, inputs=24, classes=3):
    """Per-step labels (class runs of 5 steps, driving class-dependent input rates); padded tails are -100."""
    from torch.utils.data import DataLoader, TensorDataset

    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (samples, steps // 5), generator=generator).repeat_interleave(5, dim=1)
    rates = 0.05 + 0.5 * (torch.arange(inputs) % classes == labels[..., None]).to(torch.get_default_dtype())
    frames = (torch.rand(samples, steps, inputs, generator=generator) < rates).to(torch.get_default_dtype())
    lengths = torch.randint(steps // 2, steps + 1, (samples,), generator=generator)
    padded = torch.arange(steps) >= lengths[:, None]
    labels[padded], frames[padded] = IGNORE, 0.0
    return DataLoader(TensorDataset(frames, labels), batch_size=8)


@pytest.mark.parametrize("architecture", ["ff", "rec"])
@pytest.mark.parametrize("key", list(FIT_LEARNERS))
def test_fit_and_test_on_frame_labels_report_the_masked_frame_accuracy(key, architecture, tmp_path):
    import lightning.pytorch as pl

    from lightning_local.module import SpikingClassifier

    torch.manual_seed(0)
    module = SpikingClassifier(24, 3, learner=FIT_LEARNERS[key], architecture=architecture, hidden_sizes=[16], lr=1e-2)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(module, frame_loader(0), frame_loader(1))
    assert torch.isfinite(trainer.callback_metrics["train_loss"]) and "train_acc" in trainer.callback_metrics
    (results,) = trainer.test(module, frame_loader(2), verbose=False)
    correct = total = 0
    with torch.no_grad():
        for frames, labels in frame_loader(2):
            predicted = module.network(frames).frame_logits.argmax(dim=1)
            targeted = labels != IGNORE
            correct += int((predicted[targeted] == labels[targeted]).sum())
            total += int(targeted.sum())
    assert results["test_acc"] == pytest.approx(correct / total, abs=1e-6)
