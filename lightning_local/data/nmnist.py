"""N-MNIST (Orchard et al. 2015) from its original on-disk layout of ``.bin`` files."""

from __future__ import annotations

from pathlib import Path

import tonic

from lightning_local.data.base import EventDataModule, Record
from lightning_local.data.events import NMNIST_SENSOR_SIZE, read_nmnist_bin

DIGITS = tuple(str(digit) for digit in range(10))


def scan_split(split_dir: Path) -> list[Record]:
    """All ``<split_dir>/<digit>/*.bin`` files, sorted, labelled by their digit folder.

    Folders not named ``0`` .. ``9`` are ignored.

    Args:
        split_dir: A ``Train`` or ``Test`` folder.

    Returns:
        The records (empty when the folder is absent or holds no ``.bin`` files).
    """
    return [
        Record(str(file), int(digit))
        for digit in DIGITS
        for file in sorted((split_dir / digit).glob("*.bin"))
    ]


class NMNIST(EventDataModule):
    """N-MNIST digits (34x34 ATIS sensor, 2 polarities, 10 classes) as binary frames.

    Reads the original layout ``root/Train/<digit>/*.bin`` and, if present,
    ``root/Test/<digit>/*.bin`` (also found under ``root/NMNIST/``, where tonic
    downloads to); the label is the digit folder name. Frames are
    ``[n_time_bins, 2 * ceil(34/downsample)**2]`` with values {0, 1} (event count
    per bin clipped at 1). Validation is a seeded class-stratified share of Train/.
    Without a Test/ folder (e.g. the 800-sample ``nmnist_small``) the test set is a
    class-stratified ``test_fraction`` of Train/ chosen with a fixed seed (0), so
    fit -> test works and every ``seed`` is tested on the same samples.

    Args:
        root: Folder holding ``Train/<digit>/*.bin`` (and optionally ``Test/<digit>/*.bin``).
        n_time_bins: Number of time bins ``T`` per sample (default 100, i.e. ~3 ms bins).
        downsample: Integer spatial downsampling factor (default 1, full 34x34).
        batch_size: Samples per batch (default 64).
        num_workers: DataLoader worker processes (default 0).
        val_fraction: Share of each class of Train/ used for validation (default 0.1).
        test_fraction: Share of each class of Train/ used as test set, only when Test/
            is missing (default 0.2).
        seed: Seed of the validation split and of train shuffling (default 0).
        download: If the layout is missing, download N-MNIST with tonic into
            ``root/NMNIST/`` (default True); if that fails an error says what to do.
        skip_bad_files: Drop corrupt or invalid files found by the check at setup with a
            logged warning instead of stopping (default False).
        max_file_mb: Largest file accepted, in MB (default 64; a recording is ~20 kB).
        frame_cache: Frame every recording once into a bit-packed cache and read frames from
            it (default True; see :class:`~lightning_local.data.base.EventDataModule`).
        cache_dir: Folder of the frame cache (default ``$LIGHTNING_LOCAL_CACHE/frames``).
        unpack_on_device: Move the training batches bit-packed and unpack them on the
            training device (default False).
        layout: ``flat`` ``[T, P*H*W]`` frames (default) or ``image`` ``[T, P, H, W]`` for
            convolutional networks (a convolutional model switches ``flat`` to ``image``).
        sparse_input: Training batches of ``fit`` as sparse frames (the ones' indices), for
            fully connected networks on a CPU (needs the frame cache and ``flat``; default None:
            on for CPU runs of rules that take them, see :mod:`lightning_local.data.choices`).
    """

    sensor_size = NMNIST_SENSOR_SIZE
    class_names = DIGITS
    read_events = staticmethod(read_nmnist_bin)
    dataset_name = "N-MNIST"
    tonic_dataset = tonic.datasets.NMNIST
    download_url = "https://www.garrickorchard.com/datasets/n-mnist"

    def scan_root(self, root: Path) -> tuple[list[Record], list[Record] | None] | None:
        """Use ``root`` or ``root/NMNIST`` (tonic's download folder), whichever has Train/ recordings."""
        for base in (root, root / "NMNIST"):
            train = scan_split(base / "Train")
            if train:
                return train, scan_split(base / "Test") or None
        return None

    def describe_layout(self, root: Path) -> str:
        """``ROOT/Train/<digit>/*.bin and ROOT/Test/<digit>/*.bin``."""
        return f"{root}/Train/<digit>/*.bin and {root}/Test/<digit>/*.bin"
