"""The up-front file check at setup, its cache, linear decoding, and the data order across epochs and ranks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tonic

from lightning_local.data import NMNIST, EventDataError, write_nmnist_bin
from lightning_local.data.interface import EpochShuffleSampler
from lightning_local.data.events import NMNIST_DTYPE, decode_nmnist
from lightning_local.data.saccade_digits import MARKER_NAME

REPO = Path(__file__).resolve().parents[2]


def _bad_file(root: Path) -> Path:
    return root / "Train" / "4" / "00001.bin"


def _write_raw(path: Path, rows: list[list[int]]) -> None:
    path.write_bytes(np.asarray(rows, dtype=np.uint8).tobytes())


def _same_timestamp(path: Path, make_events) -> None:
    events = make_events(n=30)
    events["t"] = 1234
    write_nmnist_bin(path, events)


def _unsorted(path: Path, make_events) -> None:
    events = make_events(n=30)
    events["t"][10], events["t"][11] = events["t"][11] + 5, events["t"][10]
    write_nmnist_bin(path, events)


def _outside(path: Path, make_events) -> None:
    events = make_events(n=30)
    events["x"][3] = 200
    write_nmnist_bin(path, events)


BAD_FILES = {
    "random bytes": (lambda p, _: p.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()),
                     "outside the 34x34 sensor"),
    "only overflow records": (lambda p, _: _write_raw(p, [[0, 240, 0, 0, 0]] * 4), "contains no events"),
    "empty": (lambda p, _: p.write_bytes(b""), "contains no events"),
    "truncated": (lambda p, _: p.write_bytes(b"\x01" * 12), "truncated or corrupt"),
    "outside the sensor": (_outside, "1 events outside the 34x34 sensor"),
    "timestamps out of order": (_unsorted, "not in time order: event 11"),
    "all on one timestamp": (_same_timestamp, "all 30 events share one timestamp"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_setup_stops_at_a_bad_file_naming_it(nmnist_layout, make_events, kind):
    root = nmnist_layout(per_class=2)
    write, expected = BAD_FILES[kind]
    write(_bad_file(root), make_events)
    dm = NMNIST(root=str(root), download=False, n_time_bins=10)
    with pytest.raises(EventDataError) as info:
        dm.setup()
    message = str(info.value)
    assert expected in message and str(_bad_file(root)) in message
    assert message.endswith("or pass --data.skip_bad_files true to leave bad files out.") and "\n" not in message
    skipping = NMNIST(root=str(root), download=False, n_time_bins=10, skip_bad_files=True, val_fraction=0.0)
    skipping.setup()
    assert str(_bad_file(root)) not in {r.path for r in skipping.train_dataset.records + skipping.test_dataset.records}
    assert len(skipping.train_dataset) + len(skipping.test_dataset) == 19 + 20


def test_size_cap_is_configurable(nmnist_layout, make_events):
    root = nmnist_layout(per_class=2)
    write_nmnist_bin(_bad_file(root), make_events(n=3000))  # 15 kB
    with pytest.raises(EventDataError, match=r"0\.0 MB|above the 0\.01 MB limit \(--data\.max_file_mb\)"):
        NMNIST(root=str(root), download=False, max_file_mb=0.01).setup()
    NMNIST(root=str(root), download=False, max_file_mb=0.02).setup()


def test_short_recording_is_checked_against_n_time_bins(nmnist_layout, make_events):
    root = nmnist_layout(per_class=2)
    events = make_events(n=30)
    events["t"] = np.arange(30) * 2  # spans 58 us
    write_nmnist_bin(_bad_file(root), events)
    NMNIST(root=str(root), download=False, n_time_bins=50).setup()  # 1 us bins: fine
    with pytest.raises(EventDataError, match="cannot be cut into 100 time bins: it spans only 58 us"):
        NMNIST(root=str(root), download=False, n_time_bins=100).setup()


def test_verdicts_are_cached_and_changed_files_rechecked(nmnist_layout, make_events, monkeypatch):
    root = nmnist_layout(per_class=2)
    reads: list[str] = []
    real = NMNIST.read_events

    def counting(path):
        reads.append(str(path))
        return real(path)

    monkeypatch.setattr(NMNIST, "read_events", staticmethod(counting))
    # frame_cache=False: only the check reads here (the frame cache's reads are counted in test_frame_cache.py)
    NMNIST(root=str(root), download=False, frame_cache=False).setup()
    assert len(reads) == 40
    reads.clear()
    NMNIST(root=str(root), download=False, frame_cache=False).setup()
    assert reads == []  # nothing re-read
    NMNIST(root=str(root), download=False, frame_cache=False, n_time_bins=50).setup()
    assert len(reads) == 40  # other settings, other verdicts
    reads.clear()
    _same_timestamp(_bad_file(root), make_events)
    with pytest.raises(EventDataError, match="share one timestamp"):
        NMNIST(root=str(root), download=False, frame_cache=False).setup()
    assert reads == [str(_bad_file(root))]
    with pytest.raises(EventDataError, match="share one timestamp"):  # a cached bad verdict still stops the run
        NMNIST(root=str(root), download=False, frame_cache=False).setup()
    assert reads == [str(_bad_file(root))]


def test_decoding_matches_tonic_with_many_overflow_records(tmp_path, make_events):
    raw = np.frombuffer(
        b"".join(
            bytes([x % 34, y % 34, 0x80 * (x % 2), 0, x % 256]) if x % 3 else bytes([0, 240, 0, 0, 0])
            for x, y in zip(range(3000), range(7, 3007))
        ),
        dtype=np.uint8,
    )
    path = tmp_path / "overflow.bin"
    path.write_bytes(raw.tobytes())
    ours = decode_nmnist(raw.copy())
    theirs = tonic.io.read_mnist_file(str(path), dtype=NMNIST_DTYPE)
    for field in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(ours[field], theirs[field])
    assert ours["t"][-1] == 1000 * 2**13 + 2999 % 256  # x = 0, 3, ..., 2997 are overflow records


def test_epoch_order_depends_only_on_seed_and_epoch():
    data = list(range(50))
    first = EpochShuffleSampler(data, seed=3)
    orders = []
    for epoch in range(3):
        first.set_epoch(epoch)
        orders.append(list(first))
    fresh = EpochShuffleSampler(data, seed=3)  # as after resuming at epoch 2
    fresh.set_epoch(2)
    assert list(fresh) == orders[2]
    assert orders[0] != orders[1] != orders[2] and sorted(orders[1]) == data
    other_seed = EpochShuffleSampler(data, seed=4)
    other_seed.set_epoch(2)
    assert list(other_seed) != orders[2]


class _FakeTrainer:
    def __init__(self, world_size: int, global_rank: int) -> None:
        self.world_size, self.global_rank = world_size, global_rank


def test_evaluation_shards_under_ddp_count_each_sample_once(nmnist_layout):
    root = nmnist_layout(per_class=3)  # 30 test samples
    seen = []
    for rank in range(4):
        dm = NMNIST(root=str(root), download=False, batch_size=4)
        dm.setup()
        dm.trainer = _FakeTrainer(world_size=4, global_rank=rank)
        seen.append([i for i in dm.test_dataloader().sampler])
    flat = sorted(i for shard in seen for i in shard)
    assert flat == list(range(30))  # no sample padded in twice
    assert [len(shard) for shard in seen] == [8, 8, 7, 7]


def test_two_processes_generate_the_default_cache_once(tmp_path):
    script = textwrap.dedent(
        f"""
        from lightning_local.data import saccade_digits
        real = saccade_digits.generate_saccade_digits
        def logged(root, max_samples_per_class=None):
            with open({str(tmp_path / 'calls.log')!r}, 'a') as handle:
                handle.write('generate\\n')
            return real(root, max_samples_per_class)
        saccade_digits.generate_saccade_digits = logged
        dm = saccade_digits.SaccadeDigits(root={str(tmp_path / 'cache')!r}, max_samples_per_class=3, n_time_bins=10)
        dm.setup()
        print(len(dm.train_dataset) + len(dm.val_dataset) + len(dm.test_dataset))
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-2000:]
        assert out.strip() == "30"
    assert (tmp_path / "calls.log").read_text() == "generate\n"
    assert (tmp_path / "cache" / MARKER_NAME).exists()
    assert len(list((tmp_path / "cache").glob("*/*/*.bin"))) == 30
