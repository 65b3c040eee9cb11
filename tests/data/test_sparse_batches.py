"""Sparse training batches from the frame cache: the ones index, its life cycle, and the loaders that use it."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lightning_local.data import NMNIST
from lightning_local.data import frame_cache as frame_cache_module
from lightning_local.data.backdoor import Backdoor
from lightning_local.data.errors import DataArgumentError
from lightning_local.data.frame_cache import FrameCache, SparseBatch, SparseSamples
from lightning_local.sparse_frames import SparseFrames
from support.cache_folder import cache_folder_files


def _setup(root: Path, **kwargs) -> NMNIST:
    dm = NMNIST(root=str(root), download=False, **kwargs)
    dm.setup("fit")
    return dm


def _assert_index_is_flatnonzero(cache: FrameCache, dense_rows) -> None:
    """Every row's indices are ``np.flatnonzero`` of its dense frames (``dense_rows(row)`` -> ``[T, F]``)."""
    rows = list(range(len(cache)))
    for row, indices in zip(rows, cache.sample_indices(rows), strict=True):
        assert indices.dtype == np.uint32
        assert np.array_equal(indices, np.flatnonzero(np.asarray(dense_rows(row))))


def test_real_recordings_index_equals_the_files_ones(real_subset, tmp_path):
    cache_dir = tmp_path / "frames"
    dm = _setup(real_subset, n_time_bins=100, cache_dir=str(cache_dir), sparse_input=True)
    cache = dm.train_dataset.cache
    assert cache.ones_path.exists() and cache.ones_path.parent == cache.path.parent  # built at setup
    # The reference reads and frames the event files themselves, not the cache.
    source = _setup(real_subset, n_time_bins=100, frame_cache=False)
    dense = {r.path: split[i][0].numpy() for split in (source.train_dataset, source.val_dataset, source.test_dataset)
             for i, r in enumerate(split.records)}
    paths = {row: r.path for split in (dm.train_dataset, dm.val_dataset, dm.test_dataset)
             for row, r in zip(split.rows, split.records)}
    assert sorted(paths) == list(range(40)) and len(dense) == 40
    _assert_index_is_flatnonzero(cache, lambda row: dense[paths[row]])
    ones = cache.sample_indices(range(40))
    assert 0.005 < np.mean([len(o) for o in ones]) / (100 * 2312) < 0.1  # real, sparse recordings
    assert cache.ones_path.stat().st_size == 128 + 4 * (40 + sum(len(o) for o in ones))  # header, counts, indices


@pytest.mark.parametrize("num_features", [13, 64, 2312])
def test_synthetic_index_over_several_chunks(tmp_path, monkeypatch, num_features):
    monkeypatch.setattr(frame_cache_module, "CHUNK_BYTES", 1)  # one row per chunk
    rng = np.random.default_rng(num_features)
    steps = 7
    frames = (rng.random((9, steps, num_features)) < rng.random((9, 1, 1))).astype(np.float32)
    frames[2] = 0  # a recording without a single event
    frames[5] = 1  # and one with events everywhere
    files = []
    for i in range(len(frames)):
        files.append(str(tmp_path / f"{i}.bin"))
        Path(files[-1]).write_bytes(b"x")
    cache = FrameCache.open(files, lambda i: torch.from_numpy(frames[i]), (steps, num_features), {}, "syn",
                            tmp_path / "frames")
    cache.build_ones_index()
    _assert_index_is_flatnonzero(cache, lambda row: frames[row])
    assert len(cache.sample_indices([2])[0]) == 0 and len(cache.sample_indices([5])[0]) == steps * num_features
    # Any rows, in any order, as a batch: SparseFrames gives back the dense frames.
    order = [5, 0, 2, 8, 0]
    batch = SparseFrames.from_sample_indices(cache.sample_indices(order), steps, num_features)
    assert torch.equal(batch.to_dense(), torch.from_numpy(frames[order]))


class _Recorder(pl.LightningModule):
    """Records what each step receives (sparse batches as their dense frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[str, str, torch.Tensor, torch.Tensor]] = []

    def _record(self, stage: str, batch) -> None:
        frames, labels = batch
        kind = "sparse" if isinstance(frames, SparseFrames) else str(frames.dtype)
        dense = frames.to_dense() if isinstance(frames, SparseFrames) else frames.detach().clone()
        self.seen.append((stage, kind, dense, labels.clone()))

    def training_step(self, batch, batch_idx):
        self._record("train", batch)
        return self.weight.square().sum() + self.weight.sum()

    def validation_step(self, batch, batch_idx):
        self._record("val", batch)

    def test_step(self, batch, batch_idx):
        self._record("test", batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer() -> pl.Trainer:
    return pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_only_fits_training_loader_is_sparse(nmnist_layout, tmp_path, num_workers):
    root = nmnist_layout(per_class=2)
    settings = dict(n_time_bins=10, batch_size=8, val_fraction=0.5)
    dm = NMNIST(root=str(root), cache_dir=str(tmp_path / "frames"), sparse_input=True, num_workers=num_workers,
                **settings)
    plain = _setup(root, frame_cache=False, **settings)
    model = _Recorder()
    trainer = _trainer()
    trainer.fit(model, datamodule=dm)
    assert isinstance(trainer.train_dataloader.dataset, SparseSamples)
    expected = ([("train", "sparse", f, y) for f, y in plain.train_dataloader()]
                + [("val", "torch.float32", f, y) for f, y in plain.val_dataloader()])
    assert len(model.seen) == len(expected) and len(plain.val_dataset) > 0
    for (stage, kind, frames, labels), (stage_, kind_, frames_, labels_) in zip(model.seen, expected):
        assert (stage, kind) == (stage_, kind_)
        assert frames.dtype == torch.float32 and torch.equal(frames, frames_) and torch.equal(labels, labels_)
    # After fit, and for every other loader and the datasets: dense frames.
    for loader, want in ((dm.train_dataloader(), plain.train_dataloader()), (dm.val_dataloader(), plain.val_dataloader())):
        frames, _ = next(iter(loader))
        assert frames.dtype == torch.float32 and torch.equal(frames, next(iter(want))[0])
    assert torch.equal(dm.train_dataset[0][0], plain.train_dataset[0][0])
    model.seen.clear()
    trainer.test(model, datamodule=dm, verbose=False)
    assert {kind for _, kind, _, _ in model.seen} == {"torch.float32"} and len(model.seen) == len(plain.test_dataloader())


def test_sparse_batches_pickle_and_pin(nmnist_layout, tmp_path):
    root = nmnist_layout(per_class=1, splits=("Train",))
    dm = _setup(root, n_time_bins=10, cache_dir=str(tmp_path / "frames"), sparse_input=True)
    cache = dm.train_dataset.cache
    assert cache.has_ones_index
    clone = pickle.loads(pickle.dumps(cache))  # what a loader worker gets: paths, not mapped data
    assert clone._ones is None and clone._array is None and len(pickle.dumps(cache)) < 1000
    assert all(np.array_equal(a, b) for a, b in zip(clone.sample_indices(range(10)), cache.sample_indices(range(10))))
    collate = pickle.loads(pickle.dumps(SparseBatch(10, dm.num_inputs)))
    frames, labels = collate([(cache.sample_indices([r])[0], r) for r in (3, 1)])
    assert torch.equal(frames.to_dense(), cache.frames([3, 1])) and labels.tolist() == [3, 1]
    assert labels.dtype == torch.int64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="page-locked memory needs CUDA")
def test_sparse_loader_with_pinned_memory_and_a_worker(nmnist_layout, tmp_path):
    root = nmnist_layout(per_class=1, splits=("Train",))
    dm = _setup(root, n_time_bins=10, cache_dir=str(tmp_path / "frames"), sparse_input=True)
    cache = dm.train_dataset.cache
    loader = DataLoader(SparseSamples(cache, range(10), list(range(10))), batch_size=4, num_workers=1, pin_memory=True,
                        collate_fn=SparseBatch(10, dm.num_inputs))
    batches = list(loader)
    for start, (frames, labels) in zip(range(0, 10, 4), batches, strict=True):
        assert isinstance(frames, SparseFrames) and frames.row_columns.is_pinned() and frames.column_rows.is_pinned()
        rows = list(range(start, min(start + 4, 10)))
        assert torch.equal(frames.to("cuda", non_blocking=True).to_dense().cpu(), cache.frames(rows))
        assert labels.tolist() == rows


def test_touched_file_rebuilds_the_index_and_drops_the_stale_one(nmnist_layout, tmp_path):
    root = nmnist_layout(per_class=2, splits=("Train",))
    cache_dir = tmp_path / "frames"
    first = _setup(root, n_time_bins=10, cache_dir=str(cache_dir), sparse_input=True)
    old = first.train_dataset.cache
    assert cache_folder_files(cache_dir) == sorted([old.path.name, old.ones_path.name])
    assert old.ones_path.name == old.path.stem + ".ones.npy"

    record = first.train_dataset.records[0]
    stat = os.stat(record.path)
    os.utime(record.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    touched = _setup(root, n_time_bins=10, cache_dir=str(cache_dir), sparse_input=True)
    new = touched.train_dataset.cache
    assert new.path != old.path
    assert cache_folder_files(cache_dir) == sorted([new.path.name, new.ones_path.name])  # the stale pair is gone
    _assert_index_is_flatnonzero(new, lambda row: new.frames(row).numpy())

    other = _setup(root, n_time_bins=12, cache_dir=str(cache_dir), sparse_input=True).train_dataset.cache
    dense_only = _setup(root, n_time_bins=14, cache_dir=str(cache_dir)).train_dataset.cache
    assert not dense_only.ones_path.exists()  # built only for sparse input
    assert cache_folder_files(cache_dir) == sorted([new.path.name, new.ones_path.name, other.path.name, other.ones_path.name,
                                        dense_only.path.name])  # other settings keep theirs


def _damage_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-8])


def _damage_garbage(path: Path) -> None:
    path.write_bytes(b"not a numpy file")


def _damage_counts(path: Path) -> None:
    ones = np.load(path)
    ones[0] += 1  # one count too many: no longer adds up to the file length
    np.save(path, ones)


def _damage_content(path: Path) -> None:
    ones = np.load(path)
    ones[-3:] = ones[-3:][::-1]  # consistent lengths, wrong (unsorted) indices of the last row
    np.save(path, ones)


def _damage_dtype(path: Path) -> None:
    np.save(path, np.load(path).astype(np.int64))


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_garbage, _damage_counts, _damage_content, _damage_dtype])
def test_damaged_index_is_rebuilt(nmnist_layout, tmp_path, damage):
    root = nmnist_layout(per_class=2, splits=("Train",))
    cache_dir = tmp_path / "frames"
    cache = _setup(root, n_time_bins=10, cache_dir=str(cache_dir), sparse_input=True).train_dataset.cache
    good = cache.ones_path.read_bytes()
    damage(cache.ones_path)
    assert cache.ones_path.read_bytes() != good
    again = _setup(root, n_time_bins=10, cache_dir=str(cache_dir), sparse_input=True).train_dataset.cache
    assert again.ones_path == cache.ones_path and again.ones_path.read_bytes() == good


def test_index_of_other_frames_is_rebuilt(nmnist_layout, tmp_path):
    root = nmnist_layout(per_class=2, splits=("Train",))
    cache_dir = tmp_path / "frames"
    ten = _setup(root, n_time_bins=10, cache_dir=str(cache_dir), sparse_input=True).train_dataset.cache
    twelve = _setup(root, n_time_bins=12, cache_dir=str(cache_dir), sparse_input=True).train_dataset.cache
    good = ten.ones_path.read_bytes()
    shutil.copyfile(twelve.ones_path, ten.ones_path)  # a valid index, of another file
    again = _setup(root, n_time_bins=10, cache_dir=str(cache_dir), sparse_input=True).train_dataset.cache
    assert again.ones_path.read_bytes() == good


def test_rebuilt_frame_cache_drops_its_old_index(nmnist_layout, tmp_path):
    root = nmnist_layout(per_class=2, splits=("Train",))
    cache_dir = tmp_path / "frames"
    cache = _setup(root, n_time_bins=10, cache_dir=str(cache_dir), sparse_input=True).train_dataset.cache
    cache.path.write_bytes(b"damaged")  # the packed file is rebuilt; its index was derived from the old one
    cache._array = cache._ones = None
    dm = _setup(root, n_time_bins=10, cache_dir=str(cache_dir))
    assert dm.train_dataset.cache.path == cache.path and not cache.ones_path.exists()


def test_failed_build_leaves_no_file(nmnist_layout, tmp_path, monkeypatch, caplog):
    root = nmnist_layout(per_class=4, splits=("Train",))
    cache_dir = tmp_path / "frames"
    cache = _setup(root, n_time_bins=10, cache_dir=str(cache_dir)).train_dataset.cache
    before = cache_folder_files(cache_dir)
    monkeypatch.setattr(frame_cache_module, "CHUNK_BYTES", 1)
    calls = []
    real = frame_cache_module._ones_of_packed

    def failing(block, num_features):
        calls.append(1)
        if len(calls) == 3:  # after two chunks were written
            raise OSError("disk write failed")
        return real(block, num_features)

    monkeypatch.setattr(frame_cache_module, "_ones_of_packed", failing)
    with pytest.raises(OSError, match="disk write failed"):
        cache.build_ones_index()
    assert cache_folder_files(cache_dir) == before  # neither an index nor a temporary file
    monkeypatch.setattr(frame_cache_module, "_ones_of_packed", real)

    # Too little free space: refused before writing; setup warns and training stays dense.
    monkeypatch.setattr(frame_cache_module.shutil, "disk_usage", lambda path: SimpleNamespace(total=1, used=1, free=100))
    with pytest.raises(OSError, match="GB free, the ones index needs"):
        cache.build_ones_index()
    dm = _setup(root, n_time_bins=10, cache_dir=str(cache_dir), sparse_input=True)
    assert "No index of the frames' ones" in caplog.text and cache_folder_files(cache_dir) == before
    trainer = _trainer()
    model = _Recorder()
    trainer.fit(model, datamodule=dm)
    assert model.seen and {kind for stage, kind, _, _ in model.seen if stage == "train"} == {"torch.float32"}


def test_too_many_frame_cells_for_32_bit_indices(tmp_path):
    path = tmp_path / "wide.npy"
    np.save(path, np.zeros((1, 2**16, 1), dtype=np.uint8))
    with pytest.raises(ValueError, match="32-bit"):
        FrameCache(path, num_features=2**16).build_ones_index()
    assert not (tmp_path / "wide.ones.npy").exists()


@pytest.mark.parametrize("settings, fix", [
    ({"frame_cache": False}, "false when --data.frame_cache is false"),
    ({"unpack_on_device": True}, "false with --data.unpack_on_device true"),
    ({"layout": "image"}, "sparse input feeds fully connected networks; convolutional networks take image frames"),
])
def test_bad_combinations_are_one_line_errors(settings, fix):
    with pytest.raises(DataArgumentError, match="--data.sparse_input must be") as error:
        NMNIST(root="/nonexistent", sparse_input=True, **settings)
    assert fix in str(error.value) and "\n" not in str(error.value)
    NMNIST(root="/nonexistent", **settings)  # each setting alone is fine


def test_backdoor_refuses_sparse_input(tmp_path):
    base = NMNIST(root=str(tmp_path), sparse_input=True)
    with pytest.raises(DataArgumentError, match="--data.base.sparse_input must be false with the Backdoor"):
        Backdoor(base, poison_rate=0.5, source=1, target=2)
