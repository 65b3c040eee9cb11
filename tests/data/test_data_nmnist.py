"""NMNIST DataModule: real recordings, layouts, splits, errors."""

from __future__ import annotations

import logging
import math
import pickle
from collections import Counter

import pytest
import tonic
import torch

from lightning_local.data import NMNIST, DatasetNotFoundError, EventDataError, write_nmnist_bin
from lightning_local.data.errors import DataArgumentError


def _setup(**kwargs) -> NMNIST:
    dm = NMNIST(**kwargs)
    dm.setup("fit")
    return dm


def test_properties_before_setup():
    dm = NMNIST(root="/nonexistent", n_time_bins=25, downsample=2)
    assert (dm.num_inputs, dm.num_classes, dm.num_steps) == (2 * 17 * 17, 10, 25)
    assert dm.train_dataset is None


def test_real_batches_follow_the_contract(nmnist_small):
    dm = _setup(root=str(nmnist_small), n_time_bins=30, batch_size=16)
    frames, labels = next(iter(dm.train_dataloader()))
    assert frames.shape == (16, 30, 2 * 34 * 34) and frames.dtype == torch.float32
    assert labels.shape == (16,) and labels.dtype == torch.int64
    assert set(frames.unique().tolist()) == {0.0, 1.0}
    assert 0 <= labels.min() and labels.max() <= 9
    assert frames.sum() > 16 * 500  # thousands of events per real sample
    test_frames, _ = next(iter(dm.test_dataloader()))
    assert test_frames.shape[1:] == (30, dm.num_inputs)


@pytest.mark.parametrize("factor", [1, 2])
def test_num_inputs_matches_frames(nmnist_small, factor):
    dm = _setup(root=str(nmnist_small), n_time_bins=10, downsample=factor)
    frames, label = dm.train_dataset[0]
    assert frames.shape == (10, dm.num_inputs) == (10, 2 * math.ceil(34 / factor) ** 2)
    assert isinstance(label, int)


def test_labels_come_from_digit_folders(nmnist_small):
    dm = _setup(root=str(nmnist_small))
    for dataset in (dm.train_dataset, dm.val_dataset, dm.test_dataset):
        for path, label in dataset.records[:20]:
            assert path.split("/")[-2] == str(label)


def test_splits_are_disjoint_complete_and_stratified(nmnist_small):
    dm = _setup(root=str(nmnist_small), val_fraction=0.1, test_fraction=0.2)
    sets = [{r.path for r in d.records} for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert sum(map(len, sets)) == 800
    per_class = Counter(path.split("/")[-2] for path in map(str, nmnist_small.glob("Train/*/*.bin")))
    test_counts = Counter(dm.test_dataset.labels)
    val_counts = Counter(dm.val_dataset.labels)
    for digit, total in per_class.items():
        assert test_counts[int(digit)] == round(0.2 * total)
        assert val_counts[int(digit)] == round(0.1 * (total - round(0.2 * total)))


def test_same_seed_same_batches_and_fixed_test_split(nmnist_small):
    first = [next(iter(_setup(root=str(nmnist_small), seed=s, n_time_bins=10).train_dataloader())) for s in (3, 3, 4)]
    assert torch.equal(first[0][0], first[1][0]) and torch.equal(first[0][1], first[1][1])
    assert not torch.equal(first[0][1], first[2][1])
    tests = [_setup(root=str(nmnist_small), seed=s).test_dataset.records for s in (3, 4)]
    assert tests[0] == tests[1]  # the carved test split does not depend on the seed


def test_only_train_is_shuffled(nmnist_small):
    dm = _setup(root=str(nmnist_small), n_time_bins=5, batch_size=8)
    _, labels = next(iter(dm.val_dataloader()))
    assert labels.tolist() == dm.val_dataset.labels[:8]
    assert dm.train_dataloader().pin_memory is False and dm.train_dataloader().num_workers == 0


def test_setup_keeps_wrapped_datasets(nmnist_small):
    dm = _setup(root=str(nmnist_small))
    wrapper = torch.utils.data.Subset(dm.train_dataset, [0, 1])
    dm.train_dataset = wrapper
    dm.setup("test")
    assert dm.train_dataset is wrapper and len(dm.train_dataloader().dataset) == 2


def test_datasets_pickle_for_worker_processes(nmnist_small):
    dm = _setup(root=str(nmnist_small), n_time_bins=5)
    clone = pickle.loads(pickle.dumps(dm.val_dataset))
    assert torch.equal(clone[0][0], dm.val_dataset[0][0])


def test_uses_test_folder_when_present(nmnist_layout):
    root = nmnist_layout(per_class=3)
    dm = _setup(root=str(root), n_time_bins=5, val_fraction=0.34)
    assert all("/Test/" in r.path for r in dm.test_dataset.records) and len(dm.test_dataset) == 30
    assert len(dm.train_dataset) == 20 and len(dm.val_dataset) == 10


def test_finds_tonic_download_folder(tmp_path, nmnist_layout):
    nmnist_layout(per_class=2, base=tmp_path / "NMNIST")
    dm = _setup(root=str(tmp_path), n_time_bins=5)
    assert len(dm.test_dataset) == 20


def test_missing_root_without_download_names_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        _setup(root=str(tmp_path / "none"), download=False)
    message = str(info.value)
    assert f"{tmp_path / 'none'}/Train/<digit>/*.bin" in message and "download is disabled" in message
    assert "--data.root" in message and ". " not in message


def test_failed_download_names_layout_and_cause(tmp_path, monkeypatch):
    def offline(self):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tonic.datasets.NMNIST, "download", offline)
    with pytest.raises(DatasetNotFoundError) as info:
        _setup(root=str(tmp_path), download=True)
    message = str(info.value)
    assert "download failed (OSError: network is unreachable)" in message
    assert f"{tmp_path}/Test/<digit>/*.bin" in message and "garrickorchard.com" in message


def test_corrupt_file_raises_naming_it(nmnist_layout):
    root = nmnist_layout(per_class=2)
    bad = root / "Train" / "4" / "00001.bin"
    bad.write_bytes(bad.read_bytes()[:-3])
    with pytest.raises(EventDataError, match="truncated or corrupt") as info:
        _setup(root=str(root))
    assert str(bad) in str(info.value)


def test_skip_bad_files_drops_them_with_warning(nmnist_layout, caplog, make_events):
    root = nmnist_layout(per_class=2)
    (root / "Train" / "4" / "00001.bin").write_bytes(b"\x00" * 7)
    outside = make_events(n=20)
    outside["y"][0] = 40
    write_nmnist_bin(root / "Test" / "5" / "00000.bin", outside)
    with caplog.at_level(logging.WARNING):
        dm = _setup(root=str(root), skip_bad_files=True, val_fraction=0.0)
    assert len(dm.train_dataset) == 19 and len(dm.test_dataset) == 19
    assert "00001.bin" in caplog.text and "outside the 34x34 sensor" in caplog.text


def test_invalid_arguments_raise():
    with pytest.raises(DataArgumentError) as info:
        NMNIST(root="x", downsample=0, val_fraction=1.5)
    assert str(info.value) == (
        "invalid data arguments: --data.downsample must be >= 1, got 0; --data.val_fraction must be in [0, 1), got 1.5."
    )
