"""Saccade digits: simulation, on-disk cache, DataModule."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tonic
import torch

from lightning_local.data import SaccadeDigits, saccade_digits
from lightning_local.data.events import read_nmnist_bin
from lightning_local.data.saccade_digits import MARKER_NAME, default_root, generate_saccade_digits
from lightning_local.data.saccade_sim import SaccadeConfig, saccade_path, simulate_saccades


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("saccade_small")
    generate_saccade_digits(root, max_samples_per_class=4)
    return root


def test_path_is_a_closed_triangle():
    path = saccade_path(SaccadeConfig())
    assert path.shape == (300, 2)
    np.testing.assert_allclose(path[[99, 199, 299]], [[3, 6], [6, 0], [0, 0]])
    assert np.abs(np.diff(path, axis=0)).max() <= 0.07  # sub-pixel steps


def test_still_image_gives_no_events_and_moving_edge_gives_both_polarities():
    blank = np.zeros((1, 28, 28), np.float32)
    square = blank.copy()
    square[0, 10:18, 10:18] = 1.0
    empty, events = simulate_saccades(np.concatenate([blank, square]))
    assert len(empty) == 0
    assert set(np.unique(events["p"])) == {0, 1}
    assert np.all(np.diff(events["t"]) >= 0) and events["t"].max() <= 300_000


def test_generated_files_are_real_nmnist(small_root):
    files = sorted(small_root.glob("*/*/*.bin"))
    assert len(files) == 40 and len(list(small_root.glob("Test/*/*.bin"))) == 10
    for file in files[::7]:
        events = tonic.io.read_mnist_file(str(file), dtype=tonic.datasets.NMNIST.dtype)
        assert len(events) > 1000
        assert events["x"].max() < 34 and events["y"].max() < 34
        on_share = events["p"].mean()
        assert 0.4 < on_share < 0.6
        np.testing.assert_array_equal(events, read_nmnist_bin(file))


def test_different_digits_give_different_frames(small_root):
    dm = SaccadeDigits(root=str(small_root), max_samples_per_class=4, n_time_bins=20, val_fraction=0.0)
    dm.setup("fit")
    by_label = {}
    for index, label in enumerate(dm.train_dataset.labels):
        by_label.setdefault(label, dm.train_dataset[index][0])
    assert len(by_label) == 10
    images = torch.stack([frames.sum(0) for frames in by_label.values()])
    distances = torch.cdist(images, images)
    assert distances[~torch.eye(10, dtype=bool)].min() > 0


def test_datamodule_contract(small_root):
    dm = SaccadeDigits(root=str(small_root), max_samples_per_class=4, n_time_bins=12, batch_size=5, downsample=2)
    assert (dm.num_inputs, dm.num_classes, dm.num_steps) == (578, 10, 12)
    dm.setup("fit")
    assert len(dm.test_dataset) == 10 and len(dm.train_dataset) + len(dm.val_dataset) == 30
    frames, labels = next(iter(dm.train_dataloader()))
    assert frames.shape == (5, 12, 578) and labels.dtype == torch.int64
    assert set(frames.unique().tolist()) == {0.0, 1.0}


def test_marker_guards_half_written_cache(tmp_path):
    generate_saccade_digits(tmp_path, max_samples_per_class=1)
    marker = json.loads((tmp_path / MARKER_NAME).read_text())
    assert marker["n_train"] + marker["n_test"] == 10
    (tmp_path / MARKER_NAME).unlink()  # as if interrupted before the marker
    victim = next(tmp_path.glob("Train/*/*.bin"))
    victim.write_bytes(b"\x01\x02")
    stale = tmp_path / "Train" / "0" / "99999.bin"
    stale.write_bytes(b"")
    dm = SaccadeDigits(root=str(tmp_path), max_samples_per_class=1, val_fraction=0.0)
    dm.setup()
    assert (tmp_path / MARKER_NAME).exists() and not stale.exists()
    assert len(read_nmnist_bin(victim)) > 1000


def test_other_subset_size_regenerates(tmp_path):
    SaccadeDigits(root=str(tmp_path), max_samples_per_class=1).prepare_data()
    dm = SaccadeDigits(root=str(tmp_path), max_samples_per_class=2, val_fraction=0.0)
    dm.setup()
    assert len(dm.train_dataset) + len(dm.test_dataset) == 20


def test_default_root_respects_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LIGHTNING_LOCAL_CACHE", str(tmp_path))
    assert default_root() == tmp_path / "saccade_digits"
    assert SaccadeDigits().root == str(tmp_path / "saccade_digits")
    monkeypatch.delenv("LIGHTNING_LOCAL_CACHE")
    assert default_root() == Path("~/.cache/lightning_local/saccade_digits").expanduser()


def test_full_generation_is_nmnist_like(tmp_path):
    # Its speed is measured by benchmarks/saccade_generation.py, not asserted here.
    info = generate_saccade_digits(tmp_path)
    assert (info["n_train"], info["n_test"]) == (1438, 359)
    files = sorted(tmp_path.glob("*/*/*.bin"))
    assert len(files) == 1797
    counts = np.array([f.stat().st_size // 5 for f in files])
    assert 2500 < counts.mean() < 6000 and counts.min() > 1000  # real N-MNIST: ~4100 on average


def test_parallel_first_uses_generate_once(tmp_path, monkeypatch):
    calls = []
    real = saccade_digits.generate_saccade_digits

    def counting(root, max_samples_per_class=None):
        calls.append(root)
        time.sleep(0.2)  # keep the lock held while the other thread arrives
        return real(root, max_samples_per_class)

    monkeypatch.setattr(saccade_digits, "generate_saccade_digits", counting)
    threads = [threading.Thread(target=saccade_digits.ensure_saccade_digits, args=(tmp_path, 1)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and (tmp_path / MARKER_NAME).exists()
    saccade_digits.ensure_saccade_digits(tmp_path, 1)  # complete cache: no regeneration
    assert len(calls) == 1
