"""Every learner lowers its training loss on real N-MNIST recordings (../shared/data/nmnist_small)."""

from __future__ import annotations

import pytest
import torch

from lightning_local.learners import LEARNER_GROUP, available
from lightning_local.module import SpikingClassifier

SAMPLES, BATCH, EPOCHS = 128, 32, 10

# Every registered rule under its defaults, and the options that change what it computes.
LEARNERS = {
    **{name: name for name in sorted(available(LEARNER_GROUP))},
    "eprop_random": {"class_path": "lightning_local.plugins.eprop.EProp", "init_args": {"feedback": "random"}},
    "decolle_offline": {"class_path": "lightning_local.plugins.decolle.Decolle", "init_args": {"online": False}},
}


@pytest.fixture(scope="module")
def recordings(nmnist_small):
    """128 class-mixed training recordings as 30 frames of 2x17x17 (2x downsampled) binary events."""
    from lightning_local.data.nmnist import NMNIST

    data = NMNIST(root=str(nmnist_small), n_time_bins=30, downsample=2, batch_size=BATCH, download=False)
    data.setup()
    dataset = data.train_dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:SAMPLES]
    frames = torch.stack([dataset[int(i)][0] for i in order])
    labels = torch.tensor([dataset[int(i)][1] for i in order])
    assert len(set(labels.tolist())) == 10
    return frames, labels


def training_loss(module, frames, labels):
    """The rule's own training loss on the whole set (conversion's is its ANN's), from :meth:`Learner.updates`."""
    return module.learner.updates(module.network, frames, labels).loss.item()


@pytest.mark.parametrize("architecture", ["ff", "rec"])
@pytest.mark.parametrize("key", list(LEARNERS))
def test_learner_lowers_training_loss(key, architecture, recordings):
    frames, labels = recordings
    torch.manual_seed(0)
    module = SpikingClassifier(frames.shape[-1], 10, learner=LEARNERS[key], architecture=architecture, hidden_sizes=[120, 84])
    learner = module.learner
    online = learner.manual_optimization
    # Online DECOLLE takes T / update_every Adam steps per batch: lr scaled to the same movement per batch.
    lr = 2e-3 * (learner.update_every / frames.shape[1] if online else 1.0)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    module.optimizers = lambda: optimizer
    hidden_before = module.network.layers[0].weight.detach().clone()
    before = training_loss(module, frames, labels)
    for _ in range(EPOCHS):
        for start in range(0, SAMPLES, BATCH):
            step = module.learner.training_step(module, frames[start:start + BATCH], labels[start:start + BATCH])
            if not online:
                optimizer.zero_grad()
                step.objective.backward()
                optimizer.step()
    after = training_loss(module, frames, labels)
    assert after < 0.7 * before, f"{key}/{architecture}: training loss {before:.3f} -> {after:.3f}"
    assert not torch.equal(module.network.layers[0].weight, hidden_before), "the first hidden layer did not learn"
    if key == "conversion":
        learner = module.learner
        learner.convert(module.network)
        with torch.no_grad():
            snn_acc = (module.network(frames).logits.argmax(-1) == labels).float().mean().item()
            ann_acc = learner.ann_accuracy(module.network, frames, labels).item()
        assert ann_acc > 0.6 and snn_acc > 0.5, f"ANN {ann_acc:.2f}, converted SNN {snn_acc:.2f}"
