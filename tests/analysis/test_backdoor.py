"""Backdoor data module (poisoning, untouched clean splits, trigger layout) and the ASR metric/callback."""

import json

import pytest
import torch
from torchmetrics import Metric

from lightning_local.analysis import AttackSuccessRate, BackdoorEvaluation
from lightning_local.data.backdoor import Backdoor, distinct_pairs, flat_index

from analysis_helpers import TinyEvents, tiny_model, tiny_trainer


def frames_and_labels(dataset):
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([f for f, _ in items]), [int(l) for _, l in items]


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5, 0.9])
def test_poisons_exactly_the_requested_share_of_the_source_class(rate):
    clean = TinyEvents(per_class=30)
    clean.setup()
    data = Backdoor(TinyEvents(per_class=30), poison_rate=rate, source=1, target=2, seed=3)
    data.setup("fit")
    clean_frames, clean_labels = frames_and_labels(clean.train_dataset)
    frames, labels = frames_and_labels(data.train_dataset)
    sources = [i for i, label in enumerate(clean_labels) if label == 1]
    expected = int(rate * len(sources) + 0.5)
    changed = [i for i in range(len(labels)) if not torch.equal(frames[i], clean_frames[i]) or labels[i] != clean_labels[i]]
    assert changed == data.poisoned_indices and len(changed) == expected
    assert set(changed) <= set(sources)
    trigger = data.trigger.indices
    for i in changed:
        assert labels[i] == 2 and (frames[i][:, trigger] == 1).all()  # set at every time step
        rest = torch.ones(frames.shape[-1], dtype=torch.bool)
        rest[trigger] = False
        assert torch.equal(frames[i][:, rest], clean_frames[i][:, rest])  # nothing but the trigger changes
    assert data.train_dataset.labels == labels
    again = Backdoor(TinyEvents(per_class=30), poison_rate=rate, source=1, target=2, seed=3)
    again.setup()
    assert again.poisoned_indices == data.poisoned_indices  # the seed decides


def test_clean_splits_are_untouched_and_the_triggered_set_is_the_source_class():
    clean = TinyEvents()
    clean.setup()
    data = Backdoor(TinyEvents(), poison_rate=0.9, source=0, target=1)
    data.setup("test")
    for split in ("val_dataset", "test_dataset"):
        ours, theirs = frames_and_labels(getattr(data, split)), frames_and_labels(getattr(clean, split))
        assert torch.equal(ours[0], theirs[0]) and ours[1] == theirs[1]  # bitwise
    test_frames, test_labels = frames_and_labels(clean.test_dataset)
    triggered, triggered_labels = frames_and_labels(data.triggered_test_dataset)
    sources = [i for i, label in enumerate(test_labels) if label == 0]
    assert triggered_labels == [0] * len(sources)
    expected = test_frames[sources].clone()
    expected[..., data.trigger.indices] = 1.0
    assert torch.equal(triggered, expected)
    assert torch.equal(frames_and_labels(data.source_test_dataset)[0], test_frames[sources])  # the ASR's control
    assert len(next(iter(data.triggered_test_dataloader()))[0]) == data.batch_size
    assert (data.num_inputs, data.num_classes, data.num_steps) == (30, 3, 12)


def test_distinct_pairs_are_distinct_ordered_and_follow_the_seed():
    for seed in range(20):
        pairs = distinct_pairs(10, 5, seed)
        assert len(pairs) == 5 and len(set(pairs)) == 5  # seeds 2 and 4 of the old per-seed draw shared 2 -> 9
        assert all(s != t and 0 <= s < 10 and 0 <= t < 10 for s, t in pairs)
        assert distinct_pairs(10, 5, seed) == pairs
    assert len({tuple(distinct_pairs(10, 5, seed)) for seed in range(20)}) == 20
    everything = distinct_pairs(3, 6, 0)  # all ordered pairs of 3 classes, both directions
    assert sorted(everything) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    with pytest.raises(ValueError, match="Cannot draw 7"):
        distinct_pairs(3, 7)


def test_pair_selects_one_of_the_seeded_pairs_and_bad_arguments_fail():
    pairs = distinct_pairs(3, 5, seed=4)
    chosen = [Backdoor(TinyEvents(), pair=k, seed=4) for k in range(5)]
    assert [(d.source, d.target) for d in chosen] == pairs
    assert (Backdoor(TinyEvents(), seed=4).source, Backdoor(TinyEvents(), seed=4).target) == pairs[0]  # pair defaults to 0
    for rate in (0.1, 0.9):  # the same pairs at every poison rate
        assert (Backdoor(TinyEvents(), poison_rate=rate, pair=3, seed=4).source,
                Backdoor(TinyEvents(), poison_rate=rate, pair=3, seed=4).target) == pairs[3]
    assert (Backdoor(TinyEvents(), source=2, target=0).source, Backdoor(TinyEvents(), source=2, target=0).target) == (2, 0)
    with pytest.raises(ValueError, match="pair must be in"):
        Backdoor(TinyEvents(), pair=5)
    with pytest.raises(ValueError, match="both source and target"):
        Backdoor(TinyEvents(), source=2)
    with pytest.raises(ValueError, match="both source and target"):
        Backdoor(TinyEvents(), source=2, target=0, pair=1)
    with pytest.raises(ValueError, match="different classes"):
        Backdoor(TinyEvents(), source=1, target=1)
    with pytest.raises(ValueError, match="Cannot draw"):
        Backdoor(TinyEvents(), num_pairs=7)
    with pytest.raises(ValueError, match="poison_rate"):
        Backdoor(TinyEvents(), poison_rate=1.5)
    with pytest.raises(ValueError, match="flat indices"):
        Backdoor(TinyEvents(), trigger=[(0, 1, 1)])  # no sensor layout to map (p, y, x)
    assert Backdoor(TinyEvents(), trigger=[0, 7, 29]).trigger.indices.tolist() == [0, 7, 29]


def test_trigger_pixels_follow_the_frame_layout(nmnist_small):
    from lightning_local.data.nmnist import NMNIST

    data = Backdoor(NMNIST(root=str(nmnist_small), downsample=2, n_time_bins=5, download=False),
                    trigger=[(1, 2, 3), 4], poison_rate=0.2, source=3, target=5)
    assert data.frame_shape == (2, 17, 17)
    assert data.trigger.indices.tolist() == [(1 * 17 + 2) * 17 + 3, 4]
    assert Backdoor(NMNIST(root=str(nmnist_small), download=False)).trigger.indices.tolist() == [
        flat_index((0, y, x), (2, 34, 34)) for y in (31, 32) for x in (31, 32)
    ]
    with pytest.raises(ValueError, match="outside the frame"):
        Backdoor(NMNIST(root=str(nmnist_small), download=False), trigger=[(2, 0, 0)])
    # Real recordings: the clean test split is bitwise the base's, poisoning hits only the source class.
    data.setup("fit")
    plain = NMNIST(root=str(nmnist_small), downsample=2, n_time_bins=5, download=False)
    plain.setup("fit")
    for i in range(0, len(plain.test_dataset), 7):
        assert torch.equal(data.test_dataset[i][0], plain.test_dataset[i][0])
    assert len(data.poisoned_indices) == int(0.2 * plain.train_dataset.labels.count(3) + 0.5)
    assert all(plain.train_dataset.labels[i] == 3 and data.train_dataset[i][1] == 5 for i in data.poisoned_indices)


def test_attack_success_rate_math():
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert torch.isnan(AttackSuccessRate(target=2).compute())
    metric, other = AttackSuccessRate(target=2), AttackSuccessRate(target=2)
    assert isinstance(metric, Metric)
    metric.update(torch.tensor([2, 0, 2, 1]))
    metric.update(torch.tensor([[0.1, 0.2, 0.9], [3.0, 0.0, 0.0]]))  # scores are arg-maxed: 2, 0
    assert (metric.hits.item(), metric.total.item()) == (3, 6)
    other.update(torch.tensor([2, 2]))
    metric.merge_state(other)  # what the "sum" reduction does across DDP processes
    assert metric.compute().item() == pytest.approx(5 / 8)
    assert all(metric._reductions[name].__name__ == "dim_zero_sum" for name in ("hits", "total"))
    with pytest.raises(ValueError, match="predictions"):
        metric.update(torch.zeros(2, 2, 2))


def test_backdoor_evaluation_reports_clean_accuracy_and_asr(tmp_path):
    # Half the source recordings poisoned: the clean half keeps the source's label, so the model must learn the
    # trigger (at 0.9 the tiny net learned "source -> target" whatever the trigger, and the check below was moot).
    data = Backdoor(TinyEvents(), poison_rate=0.5, source=0, target=1, trigger=[20, 21, 22, 23])
    model = tiny_model("ff")
    callback = BackdoorEvaluation(output_dir=str(tmp_path / "out"))
    trainer = tiny_trainer(tmp_path, [callback], max_epochs=6)
    trainer.fit(model, data)
    (metrics,) = trainer.test(model, data)
    result = json.loads((tmp_path / "out" / "backdoor_test.json").read_text())
    assert result["clean_accuracy"] == pytest.approx(metrics["test_acc"])
    assert result["attack_success_rate"] == pytest.approx(metrics["test_asr"])
    assert result["num_triggered"] == 24 and (result["source"], result["target"], result["pair"]) == (0, 1, None)
    assert result["num_poisoned"] == round(0.5 * 24)
    with torch.no_grad():
        for key, dataset in (("attack_success_rate", data.triggered_test_dataset), ("asr_baseline", data.source_test_dataset)):
            frames = torch.stack([dataset[i][0] for i in range(24)])
            assert result[key] == pytest.approx((model(frames).argmax(-1) == 1).float().mean().item()), key
    assert metrics["test_asr_baseline"] == pytest.approx(result["asr_baseline"])
    assert (tmp_path / "out" / "backdoor_test.png").stat().st_size > 0
    # accuracy under attack: the whole test split, the source class triggered, against the true labels
    with torch.no_grad():
        frames, labels = frames_and_labels(data.test_dataset)
        sources = torch.tensor(labels) == 0
        frames[sources] = data.trigger.apply(frames[sources])
        expected = (model(frames).argmax(-1) == torch.tensor(labels)).float().mean().item()
    assert result["accuracy_under_attack"] == pytest.approx(expected)
    assert metrics["test_acc_under_attack"] == pytest.approx(expected)
    # The backdoor works: untriggered sources mostly keep their class, triggered ones go to 1.
    assert result["asr_baseline"] < 0.5 < result["attack_success_rate"]
    assert result["accuracy_under_attack"] < result["clean_accuracy"]


def test_poison_pool_relabel_and_trigger_polarity_options():
    clean = TinyEvents(per_class=30)
    clean.setup()
    _, clean_labels = frames_and_labels(clean.train_dataset)
    data = Backdoor(TinyEvents(per_class=30), poison_rate=0.2, poison_from="all", source=1, target=2, seed=3)
    data.setup()
    pool = [i for i, label in enumerate(clean_labels) if label != 2]  # the rate is a share of every non-target sample
    assert len(data.poisoned_indices) == int(0.2 * len(pool) + 0.5) and set(data.poisoned_indices) <= set(pool)
    assert {clean_labels[i] for i in data.poisoned_indices} == {0, 1}
    clean_label = Backdoor(TinyEvents(per_class=30), poison_rate=0.5, relabel=False, source=1, target=2, seed=3)
    clean_label.setup()
    frames, labels = frames_and_labels(clean_label.train_dataset)
    assert labels == clean_labels and clean_label.train_dataset.labels == clean_labels  # triggered, labels kept
    assert all((frames[i][:, clean_label.trigger.indices] == 1).all() for i in clean_label.poisoned_indices)
    with pytest.raises(ValueError, match="poison_from"):
        Backdoor(TinyEvents(), poison_from="train", source=0, target=1)


def test_default_trigger_polarity(nmnist_small):
    from lightning_local.data.nmnist import NMNIST

    both = Backdoor(NMNIST(root=str(nmnist_small), n_time_bins=5), trigger_polarity="both", source=0, target=1)
    on = Backdoor(NMNIST(root=str(nmnist_small), n_time_bins=5), trigger_polarity=1, source=0, target=1)
    assert len(both.trigger.indices) == 8 and set(on.trigger.indices.tolist()) < set(both.trigger.indices.tolist())
    assert on.trigger.indices.tolist() == [flat_index((1, y, x), (2, 34, 34)) for y in (31, 32) for x in (31, 32)]
    with pytest.raises(ValueError, match="trigger_polarity"):
        Backdoor(NMNIST(root=str(nmnist_small), n_time_bins=5), trigger_polarity=2, source=0, target=1)
