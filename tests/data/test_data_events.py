"""N-MNIST .bin reading, validation and writing."""

from __future__ import annotations

import numpy as np
import pytest
import tonic

from lightning_local.data.errors import EventDataError
from lightning_local.data.events import NMNIST_DTYPE, encode_nmnist, read_nmnist_bin, write_nmnist_bin


def _one_sentence(message: str) -> bool:
    return message.count(". ") == 0 and message.endswith(".")


def test_round_trip_equals_events(tmp_path, make_events):
    events = make_events(n=1000)
    events["t"][-1] = 2**23 - 1  # largest 23-bit timestamp
    path = tmp_path / "sample.bin"
    write_nmnist_bin(path, events)
    assert path.stat().st_size == 5 * len(events)
    back = read_nmnist_bin(path)
    for field in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(back[field], events[field])


def test_tonic_reads_written_file_identically(tmp_path, make_events):
    events = make_events(n=300, seed=3)
    path = tmp_path / "sample.bin"
    write_nmnist_bin(path, events)
    by_tonic = tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)
    np.testing.assert_array_equal(by_tonic, read_nmnist_bin(path))
    np.testing.assert_array_equal(by_tonic["t"], events["t"])


def test_bit_layout_of_one_event():
    events = np.zeros(1, dtype=NMNIST_DTYPE)
    events[0] = (33, 7, 0x123456, 1)  # x, y, t, p
    assert encode_nmnist(events) == bytes([33, 7, 0x80 | 0x12, 0x34, 0x56])


def test_real_file_survives_rewrite(tmp_path, nmnist_small):
    original = sorted(nmnist_small.glob("Train/3/*.bin"))[0]
    copy = tmp_path / "copy.bin"
    write_nmnist_bin(copy, read_nmnist_bin(original))
    assert copy.read_bytes() == original.read_bytes()


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path, make_events):
    path = tmp_path / "a" / "b" / "sample.bin"
    write_nmnist_bin(path, make_events(n=10))
    write_nmnist_bin(path, make_events(n=20))  # overwrite in place
    assert [p.name for p in path.parent.iterdir()] == ["sample.bin"]
    assert len(read_nmnist_bin(path)) == 20


@pytest.mark.parametrize(
    "field, value, rule",
    [("t", 2**23, "23 bits"), ("y", 240, "overflow marker"), ("x", 256, "x must be"), ("p", 2, "p must be")],
)
def test_writer_rejects_unencodable_events(tmp_path, make_events, field, value, rule):
    events = make_events(n=5)
    events[field][2] = value
    with pytest.raises(EventDataError, match=rule):
        write_nmnist_bin(tmp_path / "bad.bin", events)
    assert not list(tmp_path.iterdir())


def test_truncated_file_raises(tmp_path, make_events):
    path = tmp_path / "truncated.bin"
    write_nmnist_bin(path, make_events(n=10))
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(EventDataError, match="truncated or corrupt") as info:
        read_nmnist_bin(path)
    assert str(path) in str(info.value) and "48 bytes" in str(info.value)
    assert _one_sentence(str(info.value))


def test_empty_file_raises(tmp_path):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    with pytest.raises(EventDataError, match="no events") as info:
        read_nmnist_bin(path)
    assert str(path) in str(info.value)


def test_file_of_only_overflow_records_is_empty(tmp_path):
    path = tmp_path / "overflow.bin"
    path.write_bytes(bytes([0, 240, 0, 0, 0]) * 3)
    with pytest.raises(EventDataError, match="no events"):
        read_nmnist_bin(path)


def test_out_of_sensor_event_raises(tmp_path, make_events):
    events = make_events(n=50)
    events["x"][10] = 34
    path = tmp_path / "outside.bin"
    write_nmnist_bin(path, events)
    with pytest.raises(EventDataError, match="1 events outside the 34x34 sensor") as info:
        read_nmnist_bin(path)
    assert str(path) in str(info.value) and _one_sentence(str(info.value))


def test_missing_file_raises(tmp_path):
    with pytest.raises(EventDataError, match="does not exist"):
        read_nmnist_bin(tmp_path / "nope.bin")
