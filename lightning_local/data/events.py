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
records; this writer never emits overflow records). Reading goes through
:func:`tonic.io.read_mnist_file`, so files written here are read identically by
tonic.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from tonic.datasets import NMNIST as _TonicNMNIST
from tonic.io import read_mnist_file

from lightning_local.data.errors import EventDataError

NMNIST_SENSOR_SIZE: tuple[int, int, int] = tuple(_TonicNMNIST.sensor_size)
"""N-MNIST sensor as (width, height, polarities), tonic's convention: (34, 34, 2)."""

NMNIST_DTYPE: np.dtype = _TonicNMNIST.dtype
"""Structured dtype of decoded N-MNIST events: integer fields x, y, t (us), p (0/1)."""

BYTES_PER_EVENT = 5
MAX_TIMESTAMP_US = 2**23 - 1
OVERFLOW_Y = 240


def validate_events(events: np.ndarray, sensor_size: tuple[int, ...], source: str | Path) -> None:
    """Check a structured event array against its sensor.

    Args:
        events: Structured array with at least the fields ``x``, ``y``, ``t``, ``p``.
        sensor_size: ``(width, height, polarities)`` of the recording sensor.
        source: File (or description) the events came from, used in messages.

    Raises:
        EventDataError: No events, non-finite values, or coordinates outside the sensor.
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
            (truncated or corrupt), it holds no events, or an event lies outside the sensor.
    """
    check_nmnist_file(path)
    events = read_mnist_file(str(path), dtype=NMNIST_DTYPE)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
