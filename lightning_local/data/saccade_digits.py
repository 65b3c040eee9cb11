"""Saccade digits: the built-in default dataset, generated locally with no download.

scikit-learn's 1797 real 8x8 handwritten digits (``sklearn.datasets.load_digits``,
shipped inside the package) are upsampled to 28x28 (bilinear), then "recorded"
like N-MNIST by :mod:`lightning_local.data.saccade_sim` (three 100 ms saccades
along a triangle, DVS pixel model, 1 ms steps) and written once as real N-MNIST
``.bin`` files into ``<root>/Train/<digit>/<index>.bin`` and
``<root>/Test/<digit>/<index>.bin`` (``index`` = position in ``load_digits``;
test = a fixed class-stratified 20 % with seed 0). A marker file
``<root>/saccade_digits.json``, written last, records the generator settings; if
it is missing (e.g. an interrupted run) or differs, the ``.bin`` files in those
digit folders are deleted and everything is regenerated (under an exclusive
lock on ``<root>/.lock``, so parallel first runs generate once). Everything else is
inherited from :class:`~lightning_local.data.nmnist.NMNIST`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits

from lightning_local.data.base import Record
from lightning_local.data.errors import DataArgumentError
from lightning_local.data.events import write_nmnist_bin
from lightning_local.data.nmnist import DIGITS, NMNIST
from lightning_local.data.saccade_sim import SaccadeConfig, simulate_saccades
from lightning_local.data.splits import stratified_split
from lightning_local.data.validation import cache_root

try:  # POSIX only; elsewhere concurrent first uses of one cache are not serialised
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

log = logging.getLogger(__name__)

MARKER_NAME = "saccade_digits.json"
GENERATOR_VERSION = 1
DIGIT_SIZE = 28
TEST_SHARE = 0.2
SPLIT_SEED = 0


def default_root() -> Path:
    """``$LIGHTNING_LOCAL_CACHE/saccade_digits``, or ``~/.cache/lightning_local/saccade_digits``."""
    return cache_root() / "saccade_digits"


def load_digit_images(max_samples_per_class: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits, upsampled to 28x28 intensities in [0, 1].

    Args:
        max_samples_per_class: Keep only the first this many digits of each class.

    Returns:
        ``(images float32 [N, 28, 28], labels int64 [N], indices int64 [N])`` where
        ``indices`` are the positions in ``load_digits``.
    """
    digits = load_digits()
    labels = digits.target.astype(np.int64)
    indices = np.arange(len(labels))
    if max_samples_per_class is not None:
        first = [np.flatnonzero(labels == label)[:max_samples_per_class] for label in np.unique(labels)]
        indices = np.sort(np.concatenate(first))
    small = torch.from_numpy(digits.images[indices].astype(np.float32) / 16.0)[:, None]
    big = torch.nn.functional.interpolate(small, size=(DIGIT_SIZE, DIGIT_SIZE), mode="bilinear", align_corners=False)
    return big[:, 0].clamp(0, 1).numpy(), labels[indices], indices


def _settings(max_samples_per_class: int | None) -> dict:
    """What the marker records; a cache with other settings is regenerated."""
    return {
        "version": GENERATOR_VERSION,
        "max_samples_per_class": max_samples_per_class,
        "test_share": TEST_SHARE,
        "split_seed": SPLIT_SEED,
        "simulation": dataclasses.asdict(SaccadeConfig()),
    }


def _marker_matches(root: Path, settings: dict) -> bool:
    try:
        return json.loads((root / MARKER_NAME).read_text())["settings"] == settings
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _clear(root: Path) -> None:
    """Delete the marker and the ``.bin`` files of a previous, incomplete or different generation."""
    (root / MARKER_NAME).unlink(missing_ok=True)
    for split in ("Train", "Test"):
        for digit in DIGITS:
            for file in (root / split / digit).glob("*.bin"):
                file.unlink()


def generate_saccade_digits(root: str | Path, max_samples_per_class: int | None = None) -> dict:
    """(Re)generate the dataset under ``root`` and write the marker last.

    Args:
        root: Destination folder.
        max_samples_per_class: Generate only the first this many digits of each class.

    Returns:
        The marker's content: settings, sample counts and generation time.
    """
    root = Path(root)
    start = time.perf_counter()
    settings = _settings(max_samples_per_class)
    _clear(root)
    images, labels, indices = load_digit_images(max_samples_per_class)
    recordings = simulate_saccades(images)
    _, test = stratified_split(labels, TEST_SHARE, SPLIT_SEED)
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test] = True
    for events, label, index, in_test in zip(recordings, labels, indices, is_test):
        split = "Test" if in_test else "Train"
        write_nmnist_bin(root / split / str(label) / f"{index:05d}.bin", events)
    info = {
        "settings": settings,
        "n_train": int((~is_test).sum()),
        "n_test": int(is_test.sum()),
        "seconds": round(time.perf_counter() - start, 2),
    }
    marker_tmp = root / f".{MARKER_NAME}.tmp"
    marker_tmp.write_text(json.dumps(info, indent=2))
    os.replace(marker_tmp, root / MARKER_NAME)
    log.info("Generated %d saccade-digit recordings in %s (%.1f s)", len(labels), root, info["seconds"])
    return info


@contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``root/.lock`` so parallel runs do not generate at once."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def ensure_saccade_digits(root: str | Path, max_samples_per_class: int | None = None) -> None:
    """Generate the dataset under ``root`` unless a complete one with these settings is there."""
    root = Path(root)
    settings = _settings(max_samples_per_class)
    if _marker_matches(root, settings):
        return
    with _exclusive(root):
        if not _marker_matches(root, settings):  # another process may have finished meanwhile
            generate_saccade_digits(root, max_samples_per_class)


class SaccadeDigits(NMNIST):
    """Built-in default dataset: sklearn's handwritten digits recorded like N-MNIST, no download.

    On first use (``prepare_data`` or ``setup``) the recordings are simulated and
    written as N-MNIST ``.bin`` files under ``root`` (about 10 s for all 1797 on two
    CPU cores; see the module docstring); afterwards this behaves exactly like :class:`NMNIST` on that folder
    (34x34x2 sensor, 10 classes, frames ``[n_time_bins, 2 * ceil(34/downsample)**2]``
    of event counts clipped at 1). The test set is the generated ``Test/`` folder.

    Args:
        root: Cache folder; ``None`` (default) means ``$LIGHTNING_LOCAL_CACHE/saccade_digits``
            or, without that variable, ``~/.cache/lightning_local/saccade_digits``.
        max_samples_per_class: Generate and use only the first this many digits of each
            class (default None = all 1797); for quick tests.
        **kwargs: Every other argument of :class:`~lightning_local.data.base.EventDataModule`
            (``n_time_bins``, ``downsample``, ``batch_size``, splits, file checks, frame cache,
            ``layout``) with its default; nothing is downloaded.
    """

    def __init__(self, root: str | None = None, max_samples_per_class: int | None = None, **kwargs: Any) -> None:
        if max_samples_per_class is not None and max_samples_per_class < 1:
            raise DataArgumentError(
                f"invalid data arguments: --data.max_samples_per_class must be >= 1 (or null), got {max_samples_per_class}."
            )
        super().__init__(root=str(Path(root).expanduser() if root else default_root()), download=False, **kwargs)
        self.max_samples_per_class = max_samples_per_class

    def find_records(self) -> tuple[list[Record], list[Record] | None]:
        """Generate the recordings if needed, then scan them like N-MNIST."""
        ensure_saccade_digits(self.root, self.max_samples_per_class)
        return super().find_records()
