"""IBM DVS Gesture (Amir et al. 2017) in tonic's preprocessed on-disk layout.

Layout (what ``tonic.datasets.DVSGesture`` downloads and extracts)::

    ROOT/DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy
    ROOT/DVSGesture/ibmGestureTest/user<NN>_<lighting>/<label>.npy

``ROOT/ibmGestureTrain`` (without the ``DVSGesture`` level) is accepted too. Each
``.npy`` holds one gesture as a 2-D array with columns ``x, y, p, t`` and ``t`` in
milliseconds; ``<label>`` is the class index 0..10. The files are read here
rather than through ``tonic.datasets.DVSGesture(...)`` because tonic's
``_check_exists`` demands the ``.tar.gz`` archive next to at least 100 extracted
files and otherwise starts a download; reading the files directly accepts an
extracted copy without archives (and small test fixtures). The decoding matches
tonic's ``__getitem__``: ``t`` is multiplied by 1000 (ms -> us) and the columns
become tonic's ``DVSGesture.dtype``. tonic's class is only used to download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tonic
from numpy.lib import recfunctions

from lightning_local.data.base import EventDataModule, Record
from lightning_local.data.errors import EventDataError
from lightning_local.data.events import validate_events

_TONIC = tonic.datasets.DVSGesture
DVSGESTURE_SENSOR_SIZE: tuple[int, int, int] = tuple(_TONIC.sensor_size)
LABELS = tuple(str(label) for label in range(len(_TONIC.classes)))
SPLIT_FOLDERS = ("ibmGestureTrain", "ibmGestureTest")


def _npy_shape(path: Path) -> tuple[int, ...]:
    """Shape from a ``.npy`` header, without reading the data."""
    with open(path, "rb") as handle:
        major, _ = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, _ = read_header(handle)
    return shape


def check_dvsgesture_npy(path: str | Path) -> None:
    """Cheap header check of one DVS Gesture ``.npy`` file: exists, readable, ``[N >= 1, 4]``.

    Raises:
        EventDataError: The file is missing, not a ``.npy`` file, or not a non-empty ``[N, 4]`` array.
    """
    path = Path(path)
    if not path.is_file():
        raise EventDataError(f"DVS Gesture file {path} does not exist.")
    try:
        shape = _npy_shape(path)
    except (OSError, ValueError, EOFError) as err:
        raise EventDataError(f"DVS Gesture file {path} is not a readable .npy file ({err}).") from err
    if len(shape) != 2 or shape[1] != 4:
        raise EventDataError(f"DVS Gesture file {path} holds an array of shape {shape} instead of [N, 4] (x, y, p, t).")
    if shape[0] == 0:
        raise EventDataError(f"DVS Gesture file {path} contains no events (empty sample).")


def read_dvsgesture_npy(path: str | Path) -> np.ndarray:
    """Read and validate one DVS Gesture recording.

    Args:
        path: A ``<label>.npy`` file with columns x, y, p, t (ms).

    Returns:
        Structured array with tonic's ``DVSGesture.dtype`` (x, y, p, t in us).

    Raises:
        EventDataError: Missing, unreadable, empty, NaN/inf values, polarity not 0/1,
            negative time, or events outside the 128x128 sensor.
    """
    check_dvsgesture_npy(path)
    try:
        raw = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise EventDataError(f"DVS Gesture file {path} is truncated or corrupt ({err}).") from err
    source = f"DVS Gesture file {path}"
    if not np.issubdtype(raw.dtype, np.number) or not np.isfinite(raw).all():
        raise EventDataError(f"{source} has non-numeric, NaN or infinite values.")
    if not np.isin(raw[:, 2], (0, 1)).all() or (raw[:, 3] < 0).any():
        raise EventDataError(f"{source} has polarities other than 0/1 or negative timestamps.")
    raw = raw.astype(np.float64) if np.issubdtype(raw.dtype, np.floating) else raw.astype(np.int64)
    raw[:, 3] *= 1000  # ms -> us, as tonic does
    events = recfunctions.unstructured_to_structured(raw, _TONIC.dtype)
    validate_events(events, DVSGESTURE_SENSOR_SIZE, source)
    return events


def scan_split(split_dir: Path) -> list[Record]:
    """All ``<split_dir>/user*/<label>.npy`` files with a label in 0..10, sorted; others are ignored."""
    return [
        Record(str(file), int(file.stem))
        for user_dir in sorted(split_dir.glob("user*"))
        for file in sorted(user_dir.glob("*.npy"))
        if file.stem in LABELS
    ]


class DVSGesture(EventDataModule):
    """IBM DVS Gesture (128x128 DVS, 2 polarities, 11 classes) as binary frames.

    Reads tonic's layout (see the module docstring); the label is the file name.
    Defaults follow common SNN practice: ``T = 60`` time bins over each recording
    (~6 s, so ~100 ms per bin) and 4x spatial downsampling 128x128 -> 32x32, so
    ``num_inputs = 2 * 32 * 32 = 2048``; frames hold event counts per bin clipped at 1.
    Validation is a seeded class-stratified share of the training recordings
    (users are mixed across train and validation); without ``ibmGestureTest`` the
    test set is a class-stratified ``test_fraction`` of the training recordings
    chosen with a fixed seed (0).

    Args:
        root: Folder holding ``DVSGesture/ibmGestureTrain`` (or ``ibmGestureTrain``) and
            optionally the matching ``ibmGestureTest``.
        n_time_bins: Number of time bins ``T`` per sample (default 60).
        downsample: Integer spatial downsampling factor (default 4: 128x128 -> 32x32).
        batch_size: Samples per batch (default 32).
        **kwargs: Every other argument of :class:`~lightning_local.data.base.EventDataModule`
            (``download`` into ``root/DVSGesture/``, splits, file checks, frame cache, ``layout``).
    """

    sensor_size = DVSGESTURE_SENSOR_SIZE
    class_names = tuple(_TONIC.classes)
    read_events = staticmethod(read_dvsgesture_npy)
    dataset_name = "DVS Gesture"
    tonic_dataset = _TONIC
    download_url = f"{_TONIC.train_url} and {_TONIC.test_url} (tonic's {_TONIC.train_filename} and {_TONIC.test_filename}, extracted into ROOT/DVSGesture/)"

    def __init__(self, root: str, n_time_bins: int = 60, downsample: int = 4, batch_size: int = 32, **kwargs: Any) -> None:
        super().__init__(root=root, n_time_bins=n_time_bins, downsample=downsample, batch_size=batch_size, **kwargs)

    def scan_root(self, root: Path) -> tuple[list[Record], list[Record] | None] | None:
        """Use ``root/DVSGesture`` (tonic's folder) or ``root``, whichever has training recordings."""
        train_folder, test_folder = SPLIT_FOLDERS
        for base in (root / "DVSGesture", root):
            train = scan_split(base / train_folder)
            if train:
                return train, scan_split(base / test_folder) or None
        return None

    def describe_layout(self, root: Path) -> str:
        """tonic's layout below ``root``."""
        return " and ".join(f"{root}/DVSGesture/{folder}/user<NN>_<lighting>/<label>.npy" for folder in SPLIT_FOLDERS)
