"""The LightningModule's input checks and learner wiring."""

import pytest
import torch

from lightning_local.learners import UnknownNameError
from lightning_local.module import InvalidInputError, SpikingClassifier


def test_bad_batches_are_rejected_with_a_clear_error():
    model = SpikingClassifier(num_inputs=8, num_classes=3, hidden_sizes=[5])
    labels = torch.zeros(2, dtype=torch.long)
    with pytest.raises(InvalidInputError, match=r"\[batch, time, 8\]"):
        model.training_step((torch.zeros(2, 4, 9), labels), 0)
    with pytest.raises(InvalidInputError, match="NaN"):
        frames = torch.zeros(2, 4, 8)
        frames[1, 2, 3] = float("nan")
        model.training_step((frames, labels), 0)


def test_learner_spec_rebuilds_from_checkpoint_hparams():
    model = SpikingClassifier(num_inputs=8, num_classes=3, learner="bptt", architecture="rec", hidden_sizes=[5])
    assert model.hparams["learner"] == {"class_path": "lightning_local.plugins.bptt.BPTT", "init_args": {}}
    clone = SpikingClassifier(**model.hparams)
    assert type(clone.learner) is type(model.learner) and clone.network.architecture == "rec"
    with pytest.raises(UnknownNameError, match="available learners"):
        SpikingClassifier(num_inputs=8, num_classes=3, learner="nope")
