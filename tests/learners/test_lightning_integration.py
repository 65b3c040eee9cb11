"""Every learner through Lightning: fit / validate / test, checkpoint reload and resume, FF and REC."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lightning_local.module import SpikingClassifier

STEPS, INPUTS, CLASSES = 12, 24, 3

LEARNERS = {
    "fa": "fa",
    "dfa": {"class_path": "lightning_local.plugins.feedback_alignment.FeedbackAlignment", "init_args": {"direct": True}},
    "eprop": "eprop",
    "eprop_random": {"class_path": "lightning_local.plugins.eprop.EProp", "init_args": {"feedback": "random"}},
    "decolle": "decolle",  # online, an optimizer step every time step
    "decolle_every4": {"class_path": "lightning_local.plugins.decolle.Decolle", "init_args": {"update_every": 4}},
    "decolle_offline": {"class_path": "lightning_local.plugins.decolle.Decolle", "init_args": {"online": False}},
    "conversion": "conversion",
}


def loader(seed: int, samples: int = 24) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (samples,), generator=generator)
    # Class-dependent input rates, so there is something to learn.
    rates = 0.1 + 0.4 * (torch.arange(INPUTS) % CLASSES == labels[:, None]).float()
    frames = (torch.rand(samples, STEPS, INPUTS, generator=generator) < rates[:, None, :]).float()
    return DataLoader(TensorDataset(frames, labels), batch_size=8)


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
    # Online DECOLLE counts one optimizer step per update (12 steps / update_every per batch).
    steps_per_batch = {"decolle": STEPS, "decolle_every4": STEPS // 4}.get(key, 1)
    assert resumed.global_step == 3 * 3 * steps_per_batch
