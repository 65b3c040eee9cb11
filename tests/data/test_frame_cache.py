"""The bit-packed frame cache: same frames as reading the files, keyed by files and settings, atomic."""

from __future__ import annotations

import logging
import os
import pickle
import threading
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from filelock import FileLock

from lightning_local.data import NMNIST, write_nmnist_bin
from lightning_local.data.errors import DataArgumentError
from lightning_local.data.events import read_nmnist_bin
from lightning_local.data.frame_cache import FrameCache, PackedFrames, pack_frames, unpack_bits, unpack_numpy
from support.cache_folder import cache_folder_files

SPLITS = ("train_dataset", "val_dataset", "test_dataset")


def _setup(root: Path, **kwargs) -> NMNIST:
    dm = NMNIST(root=str(root), download=False, **kwargs)
    dm.setup("fit")
    return dm


def _cache_files(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("*.npy"))


def _assert_same_frames(cached: NMNIST, plain: NMNIST) -> int:
    """Every sample of every split equal bit for bit (one by one and through the loaders); returns the count."""
    count = 0
    for split in SPLITS:
        a, b = getattr(cached, split), getattr(plain, split)
        assert a.cache is not None and b.cache is None
        assert [r.path for r in a.records] == [r.path for r in b.records]
        for i in range(len(a)):
            (fa, la), (fb, lb) = a[i], b[i]
            assert fa.dtype == fb.dtype == torch.float32 and fa.shape == fb.shape
            assert torch.equal(fa, fb) and la == lb
            count += 1
    for loader_a, loader_b in ((cached.test_dataloader(), plain.test_dataloader()),
                               (cached.train_dataloader(), plain.train_dataloader())):
        for (fa, la), (fb, lb) in zip(loader_a, loader_b, strict=True):
            assert torch.equal(fa, fb) and torch.equal(la, lb)
    return count


@pytest.mark.parametrize("downsample", [1, 2])
def test_real_recordings_cached_equal_read(real_subset, tmp_path, downsample):
    cache_dir = tmp_path / "frames"
    cached = _setup(real_subset, n_time_bins=100, downsample=downsample, batch_size=7, cache_dir=str(cache_dir))
    plain = _setup(real_subset, n_time_bins=100, downsample=downsample, batch_size=7, frame_cache=False)
    assert _assert_same_frames(cached, plain) == 40
    (file,) = _cache_files(cache_dir)
    assert cached.train_dataset.cache.path == file
    side = -(-34 // downsample)
    assert np.load(file, mmap_mode="r").shape == (40, 100, -(-2 * side * side // 8))
    assert not file.is_relative_to(real_subset)


def test_synthetic_layout_cached_equal_read(nmnist_layout, tmp_path):
    root = nmnist_layout(per_class=3)
    cached = _setup(root, n_time_bins=20, batch_size=8, cache_dir=str(tmp_path / "frames"))
    plain = _setup(root, n_time_bins=20, batch_size=8, frame_cache=False)
    assert _assert_same_frames(cached, plain) == 60  # Train/ and Test/ folders: one cache for both
    assert len(cached.test_dataset.cache) == 60


def test_image_layout_reads_the_same_cache(nmnist_layout, tmp_path):
    root = nmnist_layout(per_class=2, splits=("Train",))
    cache_dir = tmp_path / "frames"
    flat = _setup(root, n_time_bins=10, batch_size=8, cache_dir=str(cache_dir))
    image = _setup(root, n_time_bins=10, batch_size=8, cache_dir=str(cache_dir), layout="image")
    plain = _setup(root, n_time_bins=10, batch_size=8, frame_cache=False, layout="image")
    assert image.train_dataset.cache.path == flat.train_dataset.cache.path  # the layout is a view, not a new cache
    assert _assert_same_frames(image, plain) == 20
    assert image.train_dataset[0][0].shape == (10, 2, 34, 34)
    assert torch.equal(image.train_dataset[0][0].flatten(1), flat.train_dataset[0][0])


def test_touched_or_replaced_file_rebuilds(nmnist_layout, make_events, tmp_path):
    root = nmnist_layout(per_class=2, splits=("Train",))
    cache_dir = tmp_path / "frames"
    first = _setup(root, n_time_bins=10, cache_dir=str(cache_dir))
    (old,) = _cache_files(cache_dir)
    assert _setup(root, n_time_bins=10, cache_dir=str(cache_dir)).train_dataset.cache.path == old

    record = first.train_dataset.records[0]
    stat = os.stat(record.path)
    os.utime(record.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    touched = _setup(root, n_time_bins=10, cache_dir=str(cache_dir))
    (new,) = _cache_files(cache_dir)  # rebuilt, and the stale file of these files and settings removed
    assert new != old and touched.train_dataset.cache.path == new

    write_nmnist_bin(record.path, make_events(seed=999, n=800))  # new content
    replaced = _setup(root, n_time_bins=10, cache_dir=str(cache_dir))
    (newer,) = _cache_files(cache_dir)
    assert newer not in (old, new)
    row = replaced.train_dataset.records.index(record)
    expected = replaced.to_frames(read_nmnist_bin(record.path))
    assert torch.equal(replaced.train_dataset[row][0], expected)
    assert not torch.equal(expected, touched.to_frames(make_events(seed=0)))  # the content really changed


def test_settings_change_gives_another_cache(nmnist_layout, tmp_path):
    root = nmnist_layout(per_class=2, splits=("Train",))
    cache_dir = tmp_path / "frames"
    paths = {
        settings: _setup(root, cache_dir=str(cache_dir), **dict(settings)).train_dataset.cache.path
        for settings in ((("n_time_bins", 10),), (("n_time_bins", 12),), (("n_time_bins", 10), ("downsample", 2)))
    }
    assert len(set(paths.values())) == 3
    assert _cache_files(cache_dir) == sorted(paths.values())  # other settings are kept, not stale
    for settings, path in paths.items():
        plain = _setup(root, frame_cache=False, **dict(settings))
        cached = _setup(root, cache_dir=str(cache_dir), **dict(settings))
        assert cached.train_dataset.cache.path == path
        assert np.load(path).shape[1:] == (plain.n_time_bins, -(-plain.num_inputs // 8))
        assert all(torch.equal(cached.train_dataset[i][0], plain.train_dataset[i][0]) for i in range(len(plain.train_dataset)))


class _CountingNMNIST(NMNIST):
    """NMNIST whose reader counts the files it reads."""

    reads = 0

    @staticmethod
    def read_events(path: str) -> np.ndarray:
        _CountingNMNIST.reads += 1
        return read_nmnist_bin(path)


def test_second_setup_reads_no_file(nmnist_layout, tmp_path):
    root = nmnist_layout(per_class=2)
    cache_dir = str(tmp_path / "frames")
    _CountingNMNIST.reads = 0
    first = _CountingNMNIST(root=str(root), n_time_bins=10, batch_size=4, cache_dir=cache_dir)
    first.setup("fit")
    assert _CountingNMNIST.reads == 2 * 40  # the check at setup, then the cache build
    for _ in first.train_dataloader():
        pass
    assert _CountingNMNIST.reads == 2 * 40  # an epoch reads the cache, no file

    _CountingNMNIST.reads = 0
    second = _CountingNMNIST(root=str(root), n_time_bins=10, batch_size=4, cache_dir=cache_dir)
    second.setup("fit")
    batches = [frames for frames, _ in second.train_dataloader()]
    assert _CountingNMNIST.reads == 0
    assert sum(len(b) for b in batches) == len(second.train_dataset) and batches[0].sum() > 0


def test_torch_unpack_equals_numpy_unpack():
    rng = np.random.default_rng(0)
    for num_features in (2312, 2048, 13, 8, 1):
        bits = rng.random((3, 5, num_features)) < 0.3
        packed = pack_frames(bits)
        assert packed.shape == (3, 5, -(-num_features // 8)) and packed.dtype == np.uint8
        numpy_bits = unpack_numpy(packed, num_features)
        assert np.array_equal(numpy_bits, bits)
        unpacked = unpack_bits(torch.from_numpy(packed), num_features)
        assert unpacked.dtype == torch.float32 and torch.equal(unpacked, torch.from_numpy(numpy_bits).float())
        assert torch.equal(unpack_bits(torch.from_numpy(packed), num_features, torch.uint8), torch.from_numpy(numpy_bits))
    every_byte = torch.arange(256, dtype=torch.uint8)[:, None]  # each byte value, bit order included
    assert torch.equal(unpack_bits(every_byte, 8, torch.uint8), torch.from_numpy(np.unpackbits(every_byte.numpy(), axis=-1)))
    with pytest.raises(TypeError):
        unpack_bits(torch.zeros(2, 3), 8)


def test_failed_build_leaves_no_file(tmp_path):
    good = torch.ones(4, 20)

    def flaky(index: int) -> torch.Tensor:
        if index == 3:
            raise OSError("disk read failed")
        return good

    files = []
    for i in range(6):
        files.append(str(tmp_path / f"{i}.bin"))
        Path(files[-1]).write_bytes(b"x")
    cache_dir = tmp_path / "frames"
    with pytest.raises(OSError, match="disk read failed"):
        FrameCache.open(files, flaky, (4, 20), {"a": 1}, "flaky", cache_dir)
    assert cache_folder_files(cache_dir) == []  # neither a cache file nor a temporary one

    cache = FrameCache.open(files, lambda i: good * (i % 2), (4, 20), {"a": 1}, "flaky", cache_dir)
    assert cache_folder_files(cache_dir) == [cache.path.name]
    assert torch.equal(cache.frames([1, 2]), torch.stack([good, good * 0]))
    with pytest.raises(ValueError, match="expected"):  # a frame of the wrong shape is refused, nothing written
        FrameCache.open(files, lambda i: torch.ones(4, 21), (4, 20), {"a": 2}, "flaky", cache_dir)
    assert cache_folder_files(cache_dir) == [cache.path.name]


def test_a_second_process_waits_for_the_build_and_reuses_it(tmp_path):
    """Concurrent opens (DDP ranks, parallel runs) build once: the waiting one maps the finished file."""
    files = []
    for i in range(3):
        files.append(str(tmp_path / f"{i}.bin"))
        Path(files[-1]).write_bytes(b"x")
    cache_dir = tmp_path / "frames"
    framed = []

    def counting(index: int) -> torch.Tensor:
        framed.append(index)
        return torch.ones(2, 9)

    builder = FrameCache.open(files, counting, (2, 9), {"a": 1}, "locked", cache_dir)
    assert len(framed) == 3
    (lock_path,) = cache_dir.glob("*.lock")
    builder.path.rename(builder.path.with_suffix(".kept"))  # as if no cache existed yet
    # A killed build of the same group left a temporary file behind.
    partial = cache_dir / f".{builder.path.name}.abc.tmp"
    partial.write_bytes(b"partial")
    lock = FileLock(lock_path)
    lock.acquire()  # another process is building
    opened = []
    waiter = threading.Thread(target=lambda: opened.append(
        FrameCache.open(files, counting, (2, 9), {"a": 1}, "locked", cache_dir)))
    waiter.start()
    waiter.join(timeout=0.5)
    assert waiter.is_alive() and not opened  # it waits instead of building alongside
    builder.path.with_suffix(".kept").rename(builder.path)  # the other process finishes its build
    lock.release()
    waiter.join(timeout=30)
    assert opened and opened[0].path == builder.path
    assert len(framed) == 3  # the waiting open framed nothing
    assert partial.exists()  # the finished cache was used: no build ran, so nothing was cleaned

    builder.path.unlink()  # now a real rebuild: it removes the killed build's temporary file
    FrameCache.open(files, counting, (2, 9), {"a": 1}, "locked", cache_dir)
    assert len(framed) == 6 and not partial.exists()


def test_pickled_cache_damaged_file_and_workers(nmnist_layout, tmp_path):
    root = nmnist_layout(per_class=2, splits=("Train",))
    cache_dir = tmp_path / "frames"
    dm = _setup(root, n_time_bins=10, batch_size=5, cache_dir=str(cache_dir))
    cache = dm.train_dataset.cache
    cache.array  # mapped
    clone = pickle.loads(pickle.dumps(cache))
    assert clone._array is None and len(pickle.dumps(cache)) < 1000  # only the path travels to workers
    assert torch.equal(clone.frames(0), cache.frames(0))

    # A damaged file of the right name (not written by us) is rebuilt, not trusted.
    count, path = len(cache), cache.path
    cache._array = None  # unmap (every split shares this object) before overwriting the file in place
    path.write_bytes(b"not a numpy file")
    again = _setup(root, n_time_bins=10, cache_dir=str(cache_dir))
    assert again.train_dataset.cache.path == path
    assert np.load(path).shape == (count, 10, 2 * 34 * 34 // 8)
    assert torch.equal(again.train_dataset[0][0], dm.train_dataset.flat_frames(0))

    # Built by two worker processes and read through workers: the same frames.
    plain = _setup(root, n_time_bins=10, batch_size=5, frame_cache=False)
    workers = _setup(root, n_time_bins=10, batch_size=5, num_workers=2, cache_dir=str(tmp_path / "frames2"))
    for (fa, la), (fb, lb) in zip(workers.val_dataloader(), plain.val_dataloader(), strict=True):
        assert torch.equal(fa, fb) and torch.equal(la, lb)


def test_unwritable_cache_dir_falls_back_to_files(nmnist_layout, tmp_path, caplog):
    root = nmnist_layout(per_class=1, splits=("Train",))
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        dm = _setup(root, n_time_bins=10, cache_dir=str(blocker / "frames"))
    assert dm.train_dataset.cache is None and "No frame cache" in caplog.text
    plain = _setup(root, n_time_bins=10, frame_cache=False)
    assert torch.equal(dm.train_dataset[0][0], plain.train_dataset[0][0])


def test_unpack_on_device_needs_the_cache():
    with pytest.raises(DataArgumentError, match="unpack_on_device"):
        NMNIST(root="/nonexistent", frame_cache=False, unpack_on_device=True)


class _Recorder(pl.LightningModule):
    """Records the frames each step receives (after Lightning's batch transfer)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch[0].detach().clone())
        return (self.weight * batch[0].float().mean()).sum() + self.weight.square().sum()

    def validation_step(self, batch, batch_idx):
        self.seen.append(batch[0].detach().clone())

    def test_step(self, batch, batch_idx):
        self.seen.append(batch[0].detach().clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer() -> pl.Trainer:
    return pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)


def test_unpack_on_device_under_a_trainer(nmnist_layout, tmp_path):
    root = nmnist_layout(per_class=2)
    dm = NMNIST(root=str(root), n_time_bins=10, batch_size=8, val_fraction=0.5, cache_dir=str(tmp_path / "frames"),
                unpack_on_device=True)
    plain = _setup(root, n_time_bins=10, batch_size=8, val_fraction=0.5, frame_cache=False)
    model = _Recorder()
    trainer = _trainer()
    trainer.fit(model, datamodule=dm)
    assert isinstance(trainer.train_dataloader.dataset, PackedFrames)  # uint8 batches travel
    expected = [f for f, _ in plain.train_dataloader()] + [f for f, _ in plain.val_dataloader()]
    assert len(model.seen) == len(expected) and len(plain.val_dataset) > 0
    for seen, want in zip(model.seen, expected):
        assert seen.dtype == torch.float32 and torch.equal(seen, want)
    # After fit, and for every other loader and the datasets: unpacked frames.
    for loader, want in ((dm.train_dataloader(), plain.train_dataloader()), (dm.test_dataloader(), plain.test_dataloader())):
        frames, _ = next(iter(loader))
        assert frames.dtype == torch.float32 and torch.equal(frames, next(iter(want))[0])
    assert torch.equal(dm.train_dataset[0][0], plain.train_dataset[0][0])
    model.seen.clear()
    trainer.test(model, datamodule=dm, verbose=False)  # the test loop (and analyses iterating its loaders)
    assert [f.dtype for f in model.seen] == [torch.float32] * len(list(plain.test_dataloader()))


def test_unpack_on_device_in_image_layout(nmnist_layout, tmp_path):
    root = nmnist_layout(per_class=2)
    dm = NMNIST(root=str(root), n_time_bins=10, batch_size=8, val_fraction=0.5, cache_dir=str(tmp_path / "frames"),
                unpack_on_device=True, layout="image")
    plain = _setup(root, n_time_bins=10, batch_size=8, val_fraction=0.5, frame_cache=False, layout="image")
    model = _Recorder()
    _trainer().fit(model, datamodule=dm)
    expected = [f for f, _ in plain.train_dataloader()] + [f for f, _ in plain.val_dataloader()]
    assert [tuple(f.shape[1:]) for f in model.seen] == [(10, 2, 34, 34)] * len(expected)
    assert all(torch.equal(seen, want) for seen, want in zip(model.seen, expected))


def test_unpack_on_device_base_of_a_wrapper_stays_unpacked(nmnist_layout, tmp_path):
    from lightning_local.data.backdoor import Backdoor

    root = nmnist_layout(per_class=3, splits=("Train",))
    base = NMNIST(root=str(root), n_time_bins=10, batch_size=8, cache_dir=str(tmp_path / "frames"), unpack_on_device=True)
    data = Backdoor(base, poison_rate=0.5, source=1, target=2)
    model = _Recorder()
    _trainer().fit(model, datamodule=data)  # the wrapper's hook does not unpack, so the base must not pack
    assert model.seen and all(seen.dtype == torch.float32 and seen.shape[1:] == (10, 2312) for seen in model.seen)
