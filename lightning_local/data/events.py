"""Reading, validating and writing event recordings in the N-MNIST ``.bin`` format.

N-MNIST format (Orchard et al. 2015): one event is 5 bytes, big-endian bit fields

====  =====================================================
byte  content
====  =====================================================
0     x (8 bit, 0..33 on the 34x34 ATIS sensor)
1     y (8 bit); the value 240 marks a timestamp-overflow record, not an event
2     bit 7: polarity (1 = ON, 0 = OFF); bits 6..0: timestamp bits 22..16
3     timestamp bits 15..8
4     timestamp bits 7..0
====  =====================================================

Timestamps are microseconds (23 bits, so at most 8.39 s without overflow
records; this writer never emits overflow records). Reading decodes exactly as
:func:`tonic.io.read_mnist_file` does (every overflow record adds 2**13 us to all
later timestamps, the original N-MNIST reader's convention), but with one cumulative
sum instead of tonic's loop over overflow records, so reading is linear in the file
size (tonic's loop is quadratic for files with many overflow records).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tonic.datasets import NMNIST as _TonicNMNIST

from lightning_local.data.errors import EventDataError
from lightning_local.files import atomic_write

NMNIST_SENSOR_SIZE: tuple[int, int, int] = tuple(_TonicNMNIST.sensor_size)
"""N-MNIST sensor as (width, height, polarities), tonic's convention: (34, 34, 2)."""

NMNIST_DTYPE: np.dtype = _TonicNMNIST.dtype
"""Structured dtype of decoded N-MNIST events: integer fields x, y, t (us), p (0/1)."""

BYTES_PER_EVENT = 5
MAX_TIMESTAMP_US = 2**23 - 1
OVERFLOW_Y = 240
OVERFLOW_INCREMENT_US = 2**13
"""What tonic (and the original N-MNIST reader) adds to later timestamps per overflow record."""


def validate_events(events: np.ndarray, sensor_size: tuple[int, ...], source: str | Path) -> None:
    """Check a structured event array against its sensor.

    Args:
        events: Structured array with at least the fields ``x``, ``y``, ``t``, ``p``.
        sensor_size: ``(width, height, polarities)`` of the recording sensor.
        source: File (or description) the events came from, used in messages.

    Raises:
        EventDataError: No events, non-finite values, coordinates outside the sensor,
            or timestamps that go backwards.
    """
    if len(events) == 0:
        raise EventDataError(f"{source} contains no events (empty sample).")
    for field in events.dtype.names:
        values = events[field]
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            raise EventDataError(f"{source} has NaN or infinite values in event field {field!r}.")
    width, height = sensor_size[0], sensor_size[1]
    outside = (events["x"] < 0) | (events["x"] >= width) | (events["y"] < 0) | (events["y"] >= height)
    if outside.any():
        raise EventDataError(
            f"{source} has {int(outside.sum())} events outside the {width}x{height} sensor "
            f"(x in [{events['x'].min()}, {events['x'].max()}], "
            f"y in [{events['y'].min()}, {events['y'].max()}])."
        )
    t = events["t"]
    backwards = np.flatnonzero(t[1:] < t[:-1])
    if len(backwards):
        first = int(backwards[0]) + 1
        raise EventDataError(
            f"{source} is not in time order: event {first} has t = {t[first]} us after t = {t[first - 1]} us "
            f"({len(backwards)} such steps back)."
        )


def check_time_span(events: np.ndarray, n_time_bins: int, source: str | Path) -> None:
    """Check that a recording lasts long enough to be cut into ``n_time_bins`` non-empty bins.

    tonic's ``ToFrame`` makes bins ``(t_last - t_first) // n_time_bins`` us wide; a
    recording shorter than ``n_time_bins`` us (e.g. every event on one timestamp)
    gets zero-width bins and silently becomes an all-zero sample.

    Args:
        events: Non-empty structured array with field ``t`` (us), in time order.
        n_time_bins: Number of time bins ``T`` the sample will be cut into.
        source: File the events came from, used in messages.

    Raises:
        EventDataError: The recording spans fewer than ``n_time_bins`` microseconds.
    """
    span = int(events["t"][-1] - events["t"][0])
    if span < n_time_bins:
        detail = f"all {len(events)} events share one timestamp" if span == 0 else f"it spans only {span} us"
        raise EventDataError(
            f"{source} cannot be cut into {n_time_bins} time bins: {detail}, so every bin would be "
            "empty and the sample all zeros."
        )


def decode_nmnist(raw: np.ndarray) -> np.ndarray:
    """Decode N-MNIST bytes exactly as :func:`tonic.io.read_mnist_file`, in time linear in their length.

    Args:
        raw: ``uint8`` array whose length is a multiple of 5.

    Returns:
        Structured array with dtype :data:`NMNIST_DTYPE`; overflow records are removed
        and each adds :data:`OVERFLOW_INCREMENT_US` to every later timestamp.
    """
    raw = raw.reshape(-1, BYTES_PER_EVENT)
    overflow = raw[:, 1] == OVERFLOW_Y
    t = (raw[:, 2].astype(np.int64) & 127) << 16 | raw[:, 3].astype(np.int64) << 8 | raw[:, 4]
    if overflow.any():
        t += OVERFLOW_INCREMENT_US * np.cumsum(overflow)  # tonic: all_ts[i:] += 2**13 per overflow record i
    keep = ~overflow
    events = np.empty(int(keep.sum()), dtype=NMNIST_DTYPE)
    events["x"] = raw[keep, 0]
    events["y"] = raw[keep, 1]
    events["t"] = t[keep]
    events["p"] = raw[keep, 2] >> 7
    return events


def check_nmnist_file(path: str | Path) -> None:
    """Cheap checks of an N-MNIST file that need no decoding (existence and size).

    Args:
        path: The ``.bin`` file.

    Raises:
        EventDataError: The file is missing, empty, or its size is not a multiple
            of 5 bytes (truncated or corrupt).
    """
    path = Path(path)
    if not path.is_file():
        raise EventDataError(f"N-MNIST file {path} does not exist.")
    size = path.stat().st_size
    if size == 0:
        raise EventDataError(f"N-MNIST file {path} contains no events (empty sample).")
    if size % BYTES_PER_EVENT:
        raise EventDataError(
            f"N-MNIST file {path} is truncated or corrupt: its size ({size} bytes) "
            f"is not a multiple of {BYTES_PER_EVENT} bytes per event."
        )


def read_nmnist_bin(
    path: str | Path, sensor_size: tuple[int, ...] = NMNIST_SENSOR_SIZE
) -> np.ndarray:
    """Read and validate one N-MNIST ``.bin`` recording.

    Args:
        path: The ``.bin`` file.
        sensor_size: ``(width, height, polarities)``; events must lie inside it.

    Returns:
        Structured array with dtype :data:`NMNIST_DTYPE` (fields x, y, t, p).

    Raises:
        EventDataError: The file is missing, its size is not a multiple of 5 bytes
            (truncated or corrupt), it holds no events, an event lies outside the sensor,
            or its timestamps go backwards.
    """
    check_nmnist_file(path)
    events = decode_nmnist(np.fromfile(path, dtype=np.uint8))
    validate_events(events, sensor_size, source=f"N-MNIST file {path}")
    return events


def encode_nmnist(events: np.ndarray) -> bytes:
    """Encode events into the 5-byte N-MNIST layout (see the module docstring).

    Args:
        events: Structured array with fields ``x``, ``y``, ``t`` (us), ``p`` (0/1 or bool).

    Returns:
        The raw bytes, 5 per event, in the order given.

    Raises:
        EventDataError: A field does not fit its bit width, or y equals the overflow marker 240.
    """
    x, y, t, p = (np.asarray(events[name]) for name in ("x", "y", "t", "p"))
    checks = {
        "x must be in [0, 255]": (x < 0) | (x > 255),
        "y must be in [0, 255] and not 240 (the overflow marker)": (y < 0) | (y > 255) | (y == OVERFLOW_Y),
        f"t must be in [0, {MAX_TIMESTAMP_US}] us (23 bits)": (t < 0) | (t > MAX_TIMESTAMP_US),
        "p must be 0 or 1": (p != 0) & (p != 1),
    }
    for rule, bad in checks.items():
        if np.any(bad):
            raise EventDataError(f"Cannot encode {int(np.sum(bad))} events as N-MNIST: {rule}.")
    t = t.astype(np.uint32)
    raw = np.empty((len(t), BYTES_PER_EVENT), dtype=np.uint8)
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = (p.astype(np.uint32) << 7) | (t >> 16)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    return raw.tobytes()


def write_nmnist_bin(path: str | Path, events: np.ndarray) -> None:
    """Write events as an N-MNIST ``.bin`` file, atomically.

    The bytes go to a temporary file in the same folder, which then replaces
    ``path`` with :func:`os.replace`, so a reader never sees a half-written file.

    Args:
        path: Destination file; parent folders are created.
        events: Structured array with fields ``x``, ``y``, ``t`` (us), ``p``.

    Raises:
        EventDataError: An event does not fit the format (see :func:`encode_nmnist`).
    """
    path = Path(path)
    data = encode_nmnist(events)
    atomic_write(path, lambda handle: handle.write(data), binary=True)
