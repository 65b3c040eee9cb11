"""FSDD: layout, the official split and its fallback, fixed-length batches, and training through the CLI."""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import pytest
import torch

from lightning_local.cli.main import main
from lightning_local.data.errors import DataArgumentError, DatasetNotFoundError
from lightning_local.data.fsdd import FSDD
from lightning_local.data.timit import TIMIT


def takes(utterances) -> set[int]:
    return {int(Path(u.path).stem.split("_")[2]) for u in utterances}


def test_official_split_takes_0_to_4_for_test(fsdd_root, link_fsdd, tmp_path):
    root = link_fsdd(fsdd_root, tmp_path, takes=range(5, 15), shift=-5)  # renumbered to takes 0-9
    train, test = FSDD(root=str(root)).find_utterances()
    assert takes(test) == {0, 1, 2, 3, 4} and takes(train) == {5, 6, 7, 8, 9}
    assert len(test) == 100 and len(train) == 100
    assert {u.label for u in test} == set(range(10)) and all(Path(u.path).name[0] == str(u.label) for u in test)


def test_without_the_official_test_takes_the_five_lowest_takes_are_test(fsdd_root, caplog):
    data = FSDD(root=str(fsdd_root))
    with caplog.at_level(logging.WARNING):
        train, test = data.find_utterances()
    assert data.test_takes == (5, 6, 7, 8, 9)
    assert takes(test) == {5, 6, 7, 8, 9} and takes(train) == set(range(10, 50))
    assert len(test) == 300 and len(train) == 2400
    assert {u.speaker for u in test} == {u.speaker for u in train}  # take-based: same speakers, like the official split
    assert "no recording with index 0-4" in caplog.text and "takes 5, 6, 7, 8, 9" in caplog.text


def test_fixed_length_batches(fsdd_small):
    data = FSDD(root=str(fsdd_small), num_frames=60, batch_size=16)
    assert (data.num_inputs, data.num_classes, data.num_steps) == (39, 10, 60)
    data.setup()
    assert (len(data.train_dataset), len(data.val_dataset), len(data.test_dataset)) == (90, 10, 100)
    assert sorted(data.val_dataset.labels) == list(range(10))  # one per digit: class-stratified
    frames, labels = next(iter(data.test_dataloader()))
    assert frames.shape == (16, 60, 39) and frames.dtype == torch.float32
    assert labels.shape == (16,) and labels.dtype == torch.int64
    lengths = [len(f) for f in data.test_dataset.features[:16]]
    assert min(lengths) < 60 < max(lengths)  # both padding and cutting happen here
    for i, n in enumerate(lengths):
        assert torch.equal(frames[i, : min(n, 60)], data.test_dataset.features[i][:60])
        assert (frames[i, n:] == 0).all()
    assert labels.tolist() == data.test_dataset.labels[:16]
    longest = FSDD(root=str(fsdd_small), num_frames=None)
    longest.setup()
    every = [len(f) for d in (longest.train_dataset, longest.val_dataset, longest.test_dataset) for f in d.features]
    assert longest.num_steps == max(every)


def test_missing_recordings_are_one_sentence(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="FSDD not found under .*free-spoken-digit-dataset"):
        FSDD(root=str(tmp_path)).setup()


@pytest.mark.parametrize("learner", ["bptt", "fa", "eprop", "decolle", "conversion"])
def test_every_rule_trains_through_the_cli(learner, fsdd_small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main([
        "fit", "--learner", learner, "--data", "fsdd", "--data.root", str(fsdd_small), "--data.num_frames", "30",
        "--data.batch_size", "16", "--model.hidden_sizes", "[40]", "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "3", "--trainer.enable_progress_bar", "false",
    ])
    (metrics,) = (tmp_path / "runs").rglob("metrics.csv")
    rows = list(csv.DictReader(metrics.open()))
    (test_acc,) = [float(row["test_acc"]) for row in rows if row.get("test_acc")]
    assert 0.0 <= test_acc <= 1.0 and any(row.get("val_acc") for row in rows)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: FSDD(root="x", num_frames=0), "--data.num_frames must be >= 1 (or null), got 0"),
        (lambda: FSDD(root="x", batch_size=0, val_fraction=1.0), "--data.batch_size must be >= 1, got 0; --data.val_fraction must be in [0, 1), got 1.0"),
        (lambda: TIMIT(root="x", test_set="small"), "--data.test_set must be 'full' or 'core', got 'small'"),
    ],
)
def test_speech_arguments_out_of_range_are_one_sentence(make, message):
    with pytest.raises(DataArgumentError, match=re.escape(f"invalid data arguments: {message}.")):
        make()
