"""Common base of every event DataModule: splits, datasets and loaders.

Batch contract: every DataModule yields ``(frames, labels)`` with
``frames: torch.float32 [B, T, num_inputs]`` -- per time bin, the flattened
polarity x height x width grid of event counts clipped at 1, so values are in
{0, 1} (see :mod:`lightning_local.data.frames`) -- and ``labels: torch.int64 [B]``.
Only the training loader of a running ``fit`` may hold other forms of the same frames, when
asked for: bit-packed (``unpack_on_device``) or sparse (``sparse_input``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tonic
import torch
from lightning.pytorch.trainer.states import TrainerFn, TrainerStatus
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from lightning_local.data.choices import ModelFacts, attached_facts, resolve_data_choices
from lightning_local.data.download import download_with_tonic
from lightning_local.data.errors import DatasetNotFoundError, EventDataError, check_data_arguments, not_found_message
from lightning_local.data.events import check_time_span
from lightning_local.data.frame_cache import FrameCache, PackedFrames, SparseBatch, SparseSamples, unpack_bits
from lightning_local.data.frames import LAYOUTS, EventsToFrames
from lightning_local.data.interface import SpikingDataModule
from lightning_local.data.splits import stratified_split
from lightning_local.data.validation import CheckCache

log = logging.getLogger(__name__)

TEST_SPLIT_SEED = 0
"""Seed of the test split carved from the training folder when a dataset has no test folder.

Fixed (not the DataModule's ``seed``) so runs with different seeds are tested on the same samples.
"""

PROGRESS_MIN_FILES = 1000
"""The up-front file check shows a progress bar (on a terminal) from this many unchecked files."""

SKIP_HINT = "fix or remove it, or pass --data.skip_bad_files true to leave bad files out"


def _sparse_input_rule(sparse_input: bool | None, frame_cache: bool, unpack_on_device: bool,
                       layout: str) -> tuple[object, bool, str]:
    """:func:`check_data_arguments`' rule for ``sparse_input``: true only with the frame cache, without
    ``unpack_on_device`` and with flat frames."""
    conflict = next((why for conflicts, why in (
        (not frame_cache, "false when --data.frame_cache is false (sparse batches are read from the frame cache)"),
        (unpack_on_device, "false with --data.unpack_on_device true (training batches are sparse or packed: "
                           "choose one)"),
        (layout != "flat", f"false with --data.layout {layout} (sparse input feeds fully connected networks; "
                           "convolutional networks take image frames)"),
    ) if conflicts), "")
    return sparse_input, not (sparse_input and conflict), conflict


class Record(NamedTuple):
    """One recording on disk: its file and its class label."""

    path: str
    label: int


class EventFrameDataset(Dataset):
    """Recordings on disk, read and framed on access, or read from a :class:`FrameCache`.

    Args:
        records: The recordings of this split.
        read_events: Reads one file into a structured event array (must be picklable
            for ``num_workers > 0``, e.g. a module-level function).
        to_frames: Converts events to a ``[T, num_inputs]`` float32 tensor.
        cache: Bit-packed frames of these recordings (None: read and frame every access);
            gives the same frames bit for bit.
        rows: Cache row of every record (needed with ``cache``).

    Attributes:
        records: The recordings, in index order.
        cache: The frame cache, or None.
        rows: Cache row of every record, or None.
    """

    def __init__(
        self,
        records: Sequence[Record],
        read_events: Callable[[str], np.ndarray],
        to_frames: EventsToFrames,
        cache: FrameCache | None = None,
        rows: Sequence[int] | None = None,
    ) -> None:
        self.records = list(records)
        self.read_events = read_events
        self.to_frames = to_frames
        self.cache = cache
        self.rows = None if rows is None else list(rows)
        if cache is not None and (self.rows is None or len(self.rows) != len(self.records)):
            raise ValueError("A frame cache needs one cache row per record.")

    @property
    def labels(self) -> list[int]:
        """Class label of every sample, in index order (no file is read)."""
        return [record.label for record in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def _read(self, index: int) -> torch.Tensor:
        path = self.records[index].path
        return self.to_frames(self.read_events(path), source=path)

    def flat_frames(self, index: int) -> torch.Tensor:
        """Read and frame recording ``index`` from its file, flattened: ``[T, num_inputs]`` float32 (never cached)."""
        return self._read(index).flatten(1)

    def _arrange(self, frames: torch.Tensor) -> torch.Tensor:
        arrange = getattr(self.to_frames, "arrange", None)  # the frame layout, where the converter has one
        return frames if arrange is None else arrange(frames)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Return ``(frames float32 [T, num_inputs] or [T, P, H, W] (the converter's layout), label int)``."""
        frames = self._read(index) if self.cache is None else self._arrange(self.cache.frames(self.rows[index]))
        return frames, self.records[index].label

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        """The samples ``indices`` (DataLoader batches); with a cache, one read and unpack for all."""
        if self.cache is None:
            return [self[index] for index in indices]
        batch = self.cache.frames([self.rows[index] for index in indices])
        return [(self._arrange(frames), self.records[index].label) for frames, index in zip(batch, indices)]


class EventDataModule(SpikingDataModule):
    """Base class of the event-camera DataModules (frames of binary event counts).

    Subclasses set the class attributes (sensor, classes, reader, download source)
    and implement :meth:`scan_root` and :meth:`describe_layout`; this class finds
    the data under ``root`` (downloading it with tonic when allowed) and does the
    rest. ``setup`` builds ``train_dataset``, ``val_dataset`` and ``test_dataset``
    once (later calls keep them, so a wrapper installed after ``setup`` survives
    ``trainer.test``). Validation is a class-stratified ``val_fraction`` of the
    training recordings chosen with ``seed``. When the dataset has no test folder,
    a class-stratified ``test_fraction`` of the training recordings is set aside
    first with the fixed seed :data:`TEST_SPLIT_SEED`. Only the train loader
    shuffles, in an order fixed by ``(seed, epoch)`` (:class:`EpochShuffleSampler`),
    so two runs with one seed see identical batches and a resumed run sees the
    batches an uninterrupted one would. Under DDP the validation and test loaders
    give every sample to exactly one process (no padding), so metrics count each
    sample once.

    ``setup`` reads every recording once and checks it (readable, non-empty, inside
    the sensor, timestamps in order, long enough for ``n_time_bins``, at most
    ``max_file_mb``); the first bad file stops the run with one line naming it, unless
    ``skip_bad_files``. Verdicts are cached (:mod:`lightning_local.data.validation`),
    so later runs only read files that changed.

    With ``frame_cache`` (the default), ``setup`` then frames every recording once into a
    bit-packed cache (:mod:`lightning_local.data.frame_cache`) keyed by the framing settings
    and every file's size and modification time; the datasets read their frames from it,
    the same frames bit for bit, instead of re-reading and re-framing each file every epoch.

    Args:
        root: Folder holding the dataset in its original layout.
        download: If the layout is missing under ``root``, let tonic download it.
        n_time_bins: Number of time bins ``T`` per sample (``num_steps``).
        downsample: Integer spatial downsampling factor (1 = full resolution).
        batch_size: Samples per batch in every loader.
        num_workers: DataLoader worker processes (0 = load in the main process).
        val_fraction: Share of each class of the training recordings used for validation.
        test_fraction: Share of each class carved out as test set, only when no test folder exists.
        seed: Seed of the validation split and of the train shuffling.
        skip_bad_files: If True, drop unreadable or invalid files found by the check at
            setup with a logged warning; if False, the first bad file raises
            :class:`EventDataError` naming it.
        max_file_mb: Largest recording file accepted, in MB (10**6 bytes); bigger files
            count as bad (reading needs roughly 8x the file size in memory).
        frame_cache: Frame every recording once at ``setup`` into a bit-packed cache and
            read the frames from it (False: read and frame the file at every access).
        cache_dir: Folder of the frame cache files (default ``$LIGHTNING_LOCAL_CACHE/frames``).
        unpack_on_device: With ``frame_cache``, the training loader of a running ``fit`` of
            this module yields bit-packed ``uint8 [B, T, ceil(num_inputs/8)]`` frames, unpacked
            by ``on_after_batch_transfer`` on the training device (32x less to copy than
            float32). Every other loader and the datasets give unpacked frames.
        sparse_input: With ``frame_cache`` and the ``flat`` layout, the training loader of a
            running ``fit`` of this module yields
            :class:`~lightning_local.sparse_frames.SparseFrames` (the ones of the frames as
            CSR indices; for fully connected networks on a CPU, whose first layer then skips
            the zeros), built from an index of every recording's ones that ``setup`` derives
            once from the cache. Every other loader and the datasets give dense frames.
            ``None`` (default): chosen from the model (:mod:`lightning_local.data.choices`) - on
            for a CPU run of a rule that takes sparse batches (``bptt``, ``fa``) on a fully
            connected network, else off - by the command line, or by ``setup`` under a Trainer
            (Python API); off for a module set up without one.
        layout: ``flat`` (frames ``[T, P*H*W]``, for fully connected networks) or ``image``
            (``[T, P, H, W]``, for convolutional ones; a convolutional model switches ``flat`` to
            ``image``, see :mod:`lightning_local.data.choices`).

    Attributes:
        train_dataset: Training split (``None`` before ``setup``).
        val_dataset: Validation split (``None`` before ``setup``).
        test_dataset: Test split (``None`` before ``setup``).
        to_frames: The events-to-frames converter shared by all splits.
    """

    sensor_size: tuple[int, int, int] = (1, 1, 1)
    """``(width, height, polarities)`` of the recording sensor (set by subclasses)."""
    class_names: tuple[str, ...] = ()
    """Names of the classes in label order (set by subclasses)."""
    read_events: Callable[[str], np.ndarray]
    """Reads one recording file; a ``staticmethod`` wrapping a module-level function."""
    dataset_name: str = "dataset"
    """Human-readable name used in messages."""
    tonic_dataset: type | None = None
    """tonic dataset class that can download the data into ``root`` (None: no download)."""
    download_url: str = ""
    """Where users can download the data by hand (used in messages)."""

    def __init__(
        self,
        root: str,
        download: bool = True,
        n_time_bins: int = 100,
        downsample: int = 1,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        skip_bad_files: bool = False,
        max_file_mb: float = 64.0,
        frame_cache: bool = True,
        cache_dir: str | None = None,
        unpack_on_device: bool = False,
        layout: str = "flat",
        sparse_input: bool | None = None,
    ) -> None:
        super().__init__()
        check_data_arguments({
            "n_time_bins": (n_time_bins, n_time_bins >= 1, ">= 1"),
            "downsample": (downsample, downsample >= 1, ">= 1"),
            "batch_size": (batch_size, batch_size >= 1, ">= 1"),
            "num_workers": (num_workers, num_workers >= 0, ">= 0"),
            "val_fraction": (val_fraction, 0 <= val_fraction < 1, "in [0, 1)"),
            "test_fraction": (test_fraction, 0 <= test_fraction < 1, "in [0, 1)"),
            "max_file_mb": (max_file_mb, max_file_mb > 0, "> 0"),
            "unpack_on_device": (
                unpack_on_device, frame_cache or not unpack_on_device, "false when --data.frame_cache is false"
            ),
            "layout": (layout, layout in LAYOUTS, f"one of {', '.join(LAYOUTS)}"),
            "sparse_input": _sparse_input_rule(sparse_input, frame_cache, unpack_on_device, layout),
        })
        self.root = root
        self.download = download
        self.n_time_bins = n_time_bins
        self.downsample = downsample
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.skip_bad_files = skip_bad_files
        self.max_file_mb = max_file_mb
        self.frame_cache = frame_cache
        self.cache_dir = cache_dir
        self.unpack_on_device = unpack_on_device
        if unpack_on_device:  # an instance hook, so Lightning sees it overridden only when asked for
            self.on_after_batch_transfer = self._unpack_after_transfer
        self.layout = layout
        self.sparse_input = sparse_input  # None: chosen by follow_model (off if nothing chooses)
        self.to_frames = EventsToFrames(tuple(self.sensor_size), n_time_bins, downsample, layout)
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None

    @property
    def num_inputs(self) -> int:
        """Length of one flattened frame, ``polarities * ceil(H/downsample) * ceil(W/downsample)``."""
        return self.to_frames.num_inputs

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(num_inputs,)`` with ``layout="flat"``, ``(polarities, height, width)`` with ``"image"``."""
        return self.to_frames.input_shape

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def num_steps(self) -> int:
        """Number of time bins ``T`` per sample."""
        return self.n_time_bins

    def scan_root(self, root: Path) -> tuple[list[Record], list[Record] | None] | None:
        """Find the recordings under ``root``.

        Returns:
            ``(train_records, test_records or None)``, or ``None`` when ``root`` does
            not hold the dataset's layout.
        """
        raise NotImplementedError

    def describe_layout(self, root: Path) -> str:
        """The expected layout below ``root``, for messages."""
        raise NotImplementedError

    def find_records(self) -> tuple[list[Record], list[Record] | None]:
        """Locate the recordings under ``root``, downloading them first if missing and allowed.

        Returns:
            ``(train_records, test_records)``; ``test_records`` is ``None`` when the
            dataset has no test folder.

        Raises:
            DatasetNotFoundError: The layout is missing and downloading is disabled,
                impossible, or failed.
        """
        root = Path(self.root).expanduser()
        found = self.scan_root(root)
        if found is not None:
            return found
        if not self.download:
            self._not_found(root, "download is disabled (download=False)")
        if self.tonic_dataset is None:
            self._not_found(root, "it cannot be downloaded automatically")
        download_with_tonic(
            self.tonic_dataset, root, name=self.dataset_name, layout=self.describe_layout(root), url=self.download_url
        )
        found = self.scan_root(root)
        if found is None:
            self._not_found(root, "the download did not produce that layout")
        return found

    def _not_found(self, root: Path, reason: str) -> None:
        """Raise the one-sentence "dataset not found" error."""
        message = not_found_message(self.dataset_name, root, self.describe_layout(root), reason, self.download_url)
        raise DatasetNotFoundError(message)

    def prepare_data(self) -> None:
        """Download (or generate) the data if needed; Lightning runs this on one process."""
        self.find_records()

    def setup(self, stage: str | None = None) -> None:
        """Build ``train_dataset``, ``val_dataset`` and ``test_dataset`` (once).

        Args:
            stage: Lightning stage (``"fit"``, ``"validate"``, ``"test"``, ...); all
                splits are built regardless.
        """
        if self.train_dataset is not None:
            return
        self._follow_attached_model()
        train, test = self.find_records()
        train = self._screen(train)
        test = None if test is None else self._screen(test)
        cache, rows = self._frame_cache(train + (test or []))
        if test is None:
            train, test = self._carve(train, self.test_fraction, TEST_SPLIT_SEED)
        train, val = self._carve(train, self.val_fraction, self.seed)
        self.train_dataset, self.val_dataset, self.test_dataset = (
            EventFrameDataset(
                split, self.read_events, self.to_frames, cache, None if rows is None else [rows[r.path] for r in split]
            )
            for split in (train, val, test)
        )

    def follow_model(self, facts: ModelFacts, wrapped: bool = False) -> None:
        """Take the data choices that follow from the model (:mod:`lightning_local.data.choices`).

        A convolutional model switches a ``flat`` layout to ``image``; a ``sparse_input`` left at None is
        decided. ``setup`` calls this with the facts of the model a Trainer runs (the Python API); the command
        line has made the same choices in the config before building this module.

        Args:
            facts: the model's facts.
            wrapped: this module is a wrapper's base.
        """
        current = {"layout": self.layout, "sparse_input": self.sparse_input, "frame_cache": self.frame_cache,
                   "unpack_on_device": self.unpack_on_device}
        choices = resolve_data_choices(current, facts, wrapped)
        if "layout" in choices:
            self.layout = choices["layout"]
            self.to_frames = dataclasses.replace(self.to_frames, layout=self.layout)
        self.sparse_input = choices.get("sparse_input", self.sparse_input)
        # an explicit sparse_input=True no longer fits once a conv model asks for image frames
        check_data_arguments({"sparse_input": _sparse_input_rule(
            self.sparse_input, self.frame_cache, self.unpack_on_device, self.layout)})

    def _follow_attached_model(self) -> None:
        """:meth:`follow_model` of the model a Trainer runs, if one is attached (not when set up by hand)."""
        facts = attached_facts(self.trainer)
        if facts is not None:
            self.follow_model(facts)

    def _frame_cache(self, records: list[Record]) -> tuple[FrameCache | None, dict[str, int] | None]:
        """The frame cache of all screened recordings and each path's row, or ``(None, None)`` without one."""
        if not self.frame_cache or not records:
            return None, None
        settings = {key: value for key, value in self._check_settings().items() if key != "max_file_mb"}
        settings.update(downsample=self.downsample, tonic=tonic.__version__)
        source = EventFrameDataset(records, self.read_events, self.to_frames)
        try:
            cache = FrameCache.open(
                [r.path for r in records], source.flat_frames, (self.n_time_bins, self.num_inputs), settings,
                self.dataset_name, self.cache_dir, self.num_workers,
            )
        except OSError as err:  # an unwritable or full cache folder costs speed, not the run
            log.warning("No frame cache (%s); event files are read and framed at every access.", err)
            return None, None
        if getattr(self, "sparse_input", False):
            try:  # now, not in the training loop (or in every loader worker)
                cache.build_ones_index()
            except OSError as err:
                log.warning("No index of the frames' ones (%s); training batches are dense frames.", err)
        return cache, {r.path: row for row, r in enumerate(records)}

    def train_dataloader(self):
        """The shuffled training loader; while a Trainer fits this module, bit-packed frames with
        ``unpack_on_device`` or :class:`~lightning_local.sparse_frames.SparseFrames` with ``sparse_input``.

        Only the training loop's own loader packs or goes sparse (validation, test and the
        analyses, which iterate the trainer's evaluation loaders themselves, keep dense frames);
        Lightning's ``on_after_batch_transfer`` (:meth:`_unpack_after_transfer`) unpacks packed
        batches on the device.
        """
        trainer, dataset = self.trainer, self.train_dataset
        if (isinstance(dataset, EventFrameDataset) and dataset.cache is not None and trainer is not None
                and trainer.datamodule is self
                and trainer.state.fn == TrainerFn.FITTING and trainer.state.status == TrainerStatus.RUNNING):
            if getattr(self, "unpack_on_device", False):
                return self._loader(PackedFrames(dataset.cache, dataset.rows, dataset.labels), shuffle=True)
            if getattr(self, "sparse_input", False) and dataset.cache.has_ones_index:
                return self._loader(SparseSamples(dataset.cache, dataset.rows, dataset.labels), shuffle=True,
                                    collate_fn=SparseBatch(self.n_time_bins, self.num_inputs))
        return super().train_dataloader()

    def _unpack_after_transfer(self, batch, dataloader_idx: int):
        """``on_after_batch_transfer`` with ``unpack_on_device``: unpack uint8 frames where the batch now is."""
        frames, labels = batch
        if frames.dtype == torch.uint8:
            frames = unpack_bits(frames, self.num_inputs)
            arrange = getattr(self.to_frames, "arrange", None)
            if arrange is not None:
                frames = arrange(frames)
        return frames, labels

    @staticmethod
    def _carve(records: list[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
        """Split records into (kept, carved) class-stratified with the given seed."""
        kept, carved = stratified_split([record.label for record in records], fraction, seed)
        return [records[i] for i in kept], [records[i] for i in carved]

    def check_file(self, path: str) -> str | None:
        """Read one recording and check it; return the one-sentence reason it is bad, or None."""
        try:
            size = Path(path).stat().st_size
            if size > self.max_file_mb * 1e6:
                return (
                    f"{self.dataset_name} file {path} is {size / 1e6:.1f} MB, above the {self.max_file_mb:g} MB "
                    "limit (--data.max_file_mb)."
                )
            events = self.read_events(path)
            check_time_span(events, self.n_time_bins, f"{self.dataset_name} file {path}")
        except OSError as err:
            return f"{self.dataset_name} file {path} cannot be read ({err})."
        except EventDataError as err:
            return str(err)
        return None

    def _check_settings(self) -> dict:
        """Everything a file's verdict depends on besides the file itself (the cache key)."""
        reader = type(self).read_events
        return {
            "reader": f"{reader.__module__}.{reader.__qualname__}",
            "sensor_size": list(self.sensor_size),
            "n_time_bins": self.n_time_bins,
            "max_file_mb": self.max_file_mb,
        }

    def _screen(self, records: list[Record]) -> list[Record]:
        """Check every record once: raise on the first bad one, or drop bad ones with a warning."""
        cache = CheckCache(self._check_settings())
        verdicts = [cache.lookup(record.path) for record in records]
        unchecked = sum(not known for known, _ in verdicts)
        progress = tqdm(
            total=unchecked, desc=f"Checking {self.dataset_name} files", unit="file", leave=False,
            disable=None if unchecked >= PROGRESS_MIN_FILES else True,
        )
        good, bad = [], 0
        try:
            for record, (known, error) in zip(records, verdicts):
                if not known:
                    error = self.check_file(record.path)
                    cache.store(record.path, error)
                    progress.update()
                if error is None:
                    good.append(record)
                elif not self.skip_bad_files:
                    raise EventDataError(f"{error.rstrip('.')}: {SKIP_HINT}.")
                else:
                    log.warning("Skipping bad recording: %s", error)
                    bad += 1
        finally:
            progress.close()
            cache.save()
        if bad:
            log.warning("Dropped %d of %d recordings as unreadable or invalid.", bad, len(records))
        return good
