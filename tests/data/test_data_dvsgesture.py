"""DVSGesture DataModule on tiny fixtures in tonic's real on-disk format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tonic
import torch

from lightning_local.data import DatasetNotFoundError, DVSGesture, EventDataError
from lightning_local.data.dvsgesture import read_dvsgesture_npy


def _gesture(seed: int, n: int = 400) -> np.ndarray:
    """Unstructured [n, 4] int64 events (x, y, p, t in ms), as tonic's fixtures save them."""
    rng = np.random.default_rng(seed)
    events = np.zeros(n, dtype=tonic.datasets.DVSGesture.dtype)
    events["x"], events["y"] = rng.integers(0, 128, n), rng.integers(0, 128, n)
    events["p"], events["t"] = rng.integers(0, 2, n), np.sort(rng.integers(0, 6000, n))
    return np.lib.recfunctions.structured_to_unstructured(events)


def _write_split(folder: Path, users: range) -> None:
    for user in users:
        user_dir = folder / f"user{user:02d}_{'led' if user % 2 else 'fluorescent'}"
        user_dir.mkdir(parents=True)
        for label in range(11):
            np.save(user_dir / f"{label}.npy", _gesture(seed=user * 100 + label))


@pytest.fixture(scope="module")
def gesture_root(tmp_path_factory) -> Path:
    """10 training users x 11 gestures (enough for tonic's own >= 100-file check) and 2 test users."""
    root = tmp_path_factory.mktemp("gestures")
    _write_split(root / "DVSGesture" / "ibmGestureTrain", range(1, 11))
    _write_split(root / "DVSGesture" / "ibmGestureTest", range(24, 26))
    return root


@pytest.fixture
def no_download(monkeypatch):
    def offline(self):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tonic.datasets.DVSGesture, "download", offline)


def test_fixture_is_tonics_format(gesture_root, no_download):
    (gesture_root / "DVSGesture" / "ibmGestureTrain.tar.gz").touch()  # tonic wants the archive present
    try:
        theirs = tonic.datasets.DVSGesture(save_to=str(gesture_root), train=True)
    finally:
        (gesture_root / "DVSGesture" / "ibmGestureTrain.tar.gz").unlink()
    assert len(theirs) == 110
    for index in (0, 37, 109):
        events, label = theirs[index]
        np.testing.assert_array_equal(read_dvsgesture_npy(theirs.data[index]), events)
        assert int(Path(theirs.data[index]).stem) == label


def test_batches_follow_the_contract(gesture_root):
    dm = DVSGesture(root=str(gesture_root), batch_size=8)
    assert (dm.num_inputs, dm.num_classes, dm.num_steps) == (2048, 11, 60)
    dm.setup("fit")
    assert len(dm.test_dataset) == 22 and len(dm.train_dataset) + len(dm.val_dataset) == 110
    assert sorted(set(dm.val_dataset.labels)) == list(range(11))
    frames, labels = next(iter(dm.train_dataloader()))
    assert frames.shape == (8, 60, 2048) and frames.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.min() >= 0 and labels.max() <= 10
    assert set(frames.unique().tolist()) == {0.0, 1.0}


def test_frame_counts_match_events(gesture_root):
    dm = DVSGesture(root=str(gesture_root), n_time_bins=1, downsample=1)
    dm.setup()
    path, label = dm.test_dataset.records[0]
    events = read_dvsgesture_npy(path)
    frames, got = dm.test_dataset[0]
    last = events["t"] == events["t"].max()  # tonic drops events at the final timestamp
    pixels = {(int(p), int(y), int(x)) for x, y, p in zip(events["x"][~last], events["y"][~last], events["p"][~last])}
    assert got == label and frames.shape == (1, 2 * 128 * 128) and frames.sum() == len(pixels)


def test_without_test_folder_test_is_carved(tmp_path):
    _write_split(tmp_path / "ibmGestureTrain", range(1, 4))
    dm = DVSGesture(root=str(tmp_path), val_fraction=0.0, test_fraction=0.34)
    dm.setup()
    assert (len(dm.train_dataset), len(dm.test_dataset)) == (22, 11)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.array([[1.0, 2.0, 1.0, np.nan]]), "NaN"),
        (np.zeros((5, 3)), "instead of \\[N, 4\\]"),
        (np.zeros((0, 4)), "no events"),
        (np.array([[128, 5, 1, 10], [3, 5, 0, 20]]), "outside the 128x128 sensor"),
        (np.array([[1, 5, 3, 10]]), "polarities other than 0/1"),
    ],
)
def test_bad_recordings_raise_naming_the_file(tmp_path, array, message):
    _write_split(tmp_path / "DVSGesture" / "ibmGestureTrain", range(1, 3))
    bad = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user02_fluorescent" / "4.npy"
    np.save(bad, array)
    dm = DVSGesture(root=str(tmp_path))
    with pytest.raises(EventDataError, match=message) as info:
        dm.setup()  # every file is checked up front
    assert str(bad) in str(info.value) and "--data.skip_bad_files true" in str(info.value)


def test_missing_layout_names_it(tmp_path, no_download):
    for download, reason in ((False, "download is disabled"), (True, "download failed (OSError")):
        with pytest.raises(DatasetNotFoundError) as info:
            DVSGesture(root=str(tmp_path), download=download).setup()
        message = str(info.value)
        assert reason in message
        assert f"{tmp_path}/DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy" in message
        assert "ibmGestureTest" in message and "--data.root" in message
