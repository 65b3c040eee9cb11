"""Every registered learner through Lightning: fit / validate / test, checkpoint reload and resume, FF and REC.

The learners come from the entry-point registry, so a newly registered rule is covered
without editing this file; option variants worth their own run are listed as extras.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lightning_local.learners.registry import LEARNER_GROUP, available, learner_class, learner_class_path
from lightning_local.module import InvalidInputError, SpikingClassifier

STEPS, INPUTS, CLASSES = 12, 24, 3
IMAGE = (2, 10, 10)  # one frame of the conv matrix: [channels, height, width]
CONV = dict(synapse="conv", channels=[3, 4], kernel_size=3, input_shape=IMAGE)

#: Every registered learner with its defaults (decolle: online, an optimizer step every time step) ...
REGISTERED = sorted(available(LEARNER_GROUP))
#: ... plus option variants that take other code paths.
EXTRAS = {
    "dfa": {"class_path": learner_class_path("fa"), "init_args": {"direct": True}},
    "eprop_random": {"class_path": learner_class_path("eprop"), "init_args": {"feedback": "random"}},
    "decolle_every4": {"class_path": learner_class_path("decolle"), "init_args": {"update_every": 4}},
    "decolle_offline": {"class_path": learner_class_path("decolle"), "init_args": {"online": False}},
    "ottt_online": {"class_path": learner_class_path("ottt"), "init_args": {"variant": "O"}},
    "sltt_k": {"class_path": learner_class_path("sltt"), "init_args": {"k": 4}},  # its draw counter is a buffer
}
LEARNERS = {**{name: name for name in REGISTERED}, **EXTRAS}


def loader(seed: int, samples: int = 24, shape: tuple = (INPUTS,)) -> DataLoader:
    """Random spike frames ``[samples, STEPS, *shape]`` whose input rates depend on the class."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (samples,), generator=generator)
    # Class-dependent input rates, so there is something to learn.
    units = torch.arange(math.prod(shape))
    rates = 0.1 + 0.4 * (units % CLASSES == labels[:, None]).float()
    frames = (torch.rand(samples, STEPS, units.numel(), generator=generator) < rates[:, None, :]).float()
    return DataLoader(TensorDataset(frames.view(samples, STEPS, *shape), labels), batch_size=8)


def trainer(tmp_path, max_epochs: int) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu", max_epochs=max_epochs, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)],
    )


# The resumed trainer writes its checkpoints to another folder on purpose (so the test can tell
# the two runs apart); Lightning warns that the old folder's top-k bookkeeping is not reloaded.
@pytest.mark.filterwarnings("ignore:The dirpath has changed")
@pytest.mark.parametrize("architecture", ["ff", "rec"])
@pytest.mark.parametrize("key", list(LEARNERS))
def test_fit_test_checkpoint_resume(key, architecture, tmp_path):
    torch.manual_seed(0)
    module = SpikingClassifier(INPUTS, CLASSES, learner=LEARNERS[key], architecture=architecture, hidden_sizes=[16, 12], lr=1e-2)
    fit = trainer(tmp_path, max_epochs=2)
    fit.fit(module, loader(0), loader(1))
    metrics = fit.callback_metrics
    assert {"train_loss", "val_loss", "val_acc"} <= set(metrics)
    assert torch.isfinite(metrics["train_loss"])
    if key == "conversion":
        assert "val_ann_acc" in metrics
        assert bool(module.learner.converted)
    (results,) = fit.test(module, loader(2), verbose=False)
    assert "test_acc" in results
    if key == "conversion":
        assert "test_ann_acc" in results

    # The checkpoint rebuilds the same learner, buffers included, and evaluates identically.
    last = tmp_path / "ckpt" / "last.ckpt"
    loaded = SpikingClassifier.load_from_checkpoint(last)
    assert type(loaded.learner) is type(module.learner)
    assert loaded.learner.spec() == module.learner.spec()
    for name, value in module.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    frames, _ = next(iter(loader(2)))
    with torch.no_grad():
        torch.testing.assert_close(loaded.learner.evaluate(loaded, frames).logits, module.learner.evaluate(module, frames).logits)
    if key == "conversion" and architecture == "rec":
        assert all(layer.recurrent_weight is None or not layer.recurrent_weight.any() for layer in loaded.network.layers)

    # A standalone validation run of the reloaded model.
    (validated,) = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                              enable_model_summary=False).validate(loaded, loader(1), verbose=False)
    assert "val_acc" in validated and (key != "conversion" or "val_ann_acc" in validated)

    # Resuming continues from the checkpoint (epoch count, optimizer, learner buffers).
    resumed = trainer(tmp_path / "resume", max_epochs=3)
    resumed.fit(loaded, loader(0), loader(1), ckpt_path=last)
    assert resumed.current_epoch == 3
    # Online DECOLLE and OTTT_O count one optimizer step per update (12 steps / update_every per batch).
    steps_per_batch = {"decolle": STEPS, "decolle_every4": STEPS // 4, "ottt_online": STEPS}.get(key, 1)
    assert resumed.global_step == 3 * 3 * steps_per_batch


def test_the_registry_lists_the_built_in_learners():
    assert {"bptt", "fa", "eprop", "decolle", "conversion", "ottt", "sltt", "ostl"} <= set(REGISTERED)


@pytest.mark.parametrize("architecture", ["ff", "rec"])
@pytest.mark.parametrize("name", REGISTERED)
def test_every_registered_learner_on_a_conv_net(name, architecture, tmp_path):
    """Rules without ``linear_only`` train a conv net through Lightning; the others refuse it in one sentence."""
    linear_only = learner_class(name).linear_only
    torch.manual_seed(0)
    if linear_only:
        with pytest.raises(InvalidInputError, match="trains fully connected networks only") as refused:
            SpikingClassifier(math.prod(IMAGE), CLASSES, learner=name, architecture=architecture, **CONV)
        assert linear_only in str(refused.value)
        return
    module = SpikingClassifier(math.prod(IMAGE), CLASSES, learner=name, architecture=architecture, lr=1e-2, **CONV)
    assert not module.network.is_dense and module.network.input_shape == IMAGE
    assert (module.network.layers[0].recurrent is not None) == (architecture == "rec")
    before = {key: value.clone() for key, value in module.network.state_dict().items()}
    fit = trainer(tmp_path, max_epochs=1)
    fit.fit(module, loader(0, 16, IMAGE), loader(1, 8, IMAGE))
    assert torch.isfinite(fit.callback_metrics["train_loss"]) and "val_acc" in fit.callback_metrics
    for key, value in module.network.state_dict().items():
        assert not torch.equal(value, before[key]), f"{name} did not train {key}"
    (results,) = fit.test(module, loader(2, 8, IMAGE), verbose=False)
    assert 0.0 <= results["test_acc"] <= 1.0

    loaded = SpikingClassifier.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert loaded.learner.spec() == module.learner.spec() and loaded.network.input_shape == IMAGE
    for key, value in module.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    frames, _ = next(iter(loader(2, 8, IMAGE)))
    with torch.no_grad():
        assert torch.equal(loaded(frames), module(frames))
