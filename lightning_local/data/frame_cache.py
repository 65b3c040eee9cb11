"""A bit-packed cache of the binary event frames of a dataset, built once per files and settings.

Framing a recording (reading its events, binning them with tonic's ``ToFrame``) costs
about 1.5 ms per N-MNIST file in Python, far from the ~10**5 samples/s a GPU step can
consume. Frames are binary, so the whole dataset is stored once as bits: the frames of
recording ``i`` are row ``i`` of a ``uint8 [N, T, ceil(F/8)]`` array, ``np.packbits`` along
the feature axis (big bit order: feature ``8*j`` is the top bit of byte ``j``), saved as a
``.npy`` file and memory-mapped on read, so DataLoader workers share its pages.

The file lives in ``cache_dir`` (default ``$LIGHTNING_LOCAL_CACHE/frames``), never next to
the data. Its name is ``<name>-<group>-<content>.npy``: ``group`` hashes the framing
settings (:data:`FORMAT_VERSION`, reader, sensor, ``T``, downsampling, tonic's version)
and the ordered list of files; ``content`` hashes every file's size and modification
time. Touching or replacing a file gives a new ``content`` and a rebuild (older files of
the group are then deleted); other settings or file lists are other groups and coexist.
The file is written atomically (temporary file + rename), so a failed or killed build
leaves no partial cache behind.

Unpacking: :func:`unpack_numpy` on the CPU, or :func:`unpack_bits` -- one vectorised
torch op on whatever device the packed tensor is on, e.g. after a packed batch has
been moved to the GPU (8x less to transfer than bytes, 32x less than float32).

Sparse batches (:class:`~lightning_local.sparse_frames.SparseFrames`, for CPU training)
need each recording's ones as sorted flat indices ``t * F + f``. Finding them per batch
costs more than the training step saves, so :meth:`FrameCache.build_ones_index` derives
them once from the packed file into ``<same name>.ones.npy`` next to it: invalid exactly
when the packed file is, deleted with it, written atomically, memory-mapped on read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from filelock import FileLock
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from lightning_local.data.validation import cache_root
from lightning_local.files import atomic_write
from lightning_local.sparse_frames import SparseFrames

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Bump when the framing or the file format changes, so older caches are not trusted."""

PROGRESS_MIN_FILES = 1000
"""A build shows a progress bar (on a terminal) from this many recordings."""

ONES_SUFFIX = ".ones.npy"
"""The ones index of the cache file ``<stem>.npy`` is ``<stem>.ones.npy``."""

CHUNK_BYTES = 2**22
"""Packed bytes a build of the ones index holds in memory at once (plus a few times that in temporaries)."""

_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)
"""Bit ``k`` of a byte (from the top) is ``(byte >> (7 - k)) & 1``: numpy's big bit order."""

_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint8)
"""Number of set bits of every byte value (``np.bitwise_count`` needs numpy 2)."""


def default_cache_dir() -> Path:
    """``$LIGHTNING_LOCAL_CACHE/frames`` (``~/.cache/lightning_local/frames`` without that variable)."""
    return cache_root() / "frames"


def pack_frames(frames: Union[torch.Tensor, np.ndarray]) -> np.ndarray:
    """Pack binary frames ``[..., F]`` into ``uint8 [..., ceil(F/8)]`` (numpy's ``packbits``, big bit order).

    Any non-zero value counts as 1, which is exact for the {0, 1} frames of
    :class:`~lightning_local.data.frames.EventsToFrames`.
    """
    array = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    return np.packbits(array != 0, axis=-1)


def unpack_numpy(packed: np.ndarray, num_features: int) -> np.ndarray:
    """Unpack ``uint8 [..., ceil(F/8)]`` into ``uint8 [..., F]`` of 0/1 on the CPU (numpy's ``unpackbits``)."""
    return np.unpackbits(packed, axis=-1, count=num_features)


def unpack_bits(packed: torch.Tensor, num_features: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Unpack ``uint8 [..., ceil(F/8)]`` into ``dtype [..., F]`` of 0/1 on the tensor's own device.

    The same bits as :func:`unpack_numpy`, in one broadcast shift-and-mask, so a packed
    batch can be moved to the GPU first and unpacked there.
    """
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed frames must be uint8, got {packed.dtype}")
    bits = (packed.unsqueeze(-1) >> _SHIFTS.to(packed.device)) & 1
    return bits.flatten(-2)[..., :num_features].to(dtype)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_") or "dataset"


def _write_npy(path: Path, dtype: np.dtype, shape: tuple[int, ...], chunks: Iterable[np.ndarray], what: str) -> None:
    """Write ``chunks`` one after another as the ``.npy`` array ``shape`` of ``dtype``, atomically.

    Checks the free space first (``OSError``) and the number of values written (``ValueError``);
    nothing is left at ``path`` after a failure.
    """
    dtype = np.dtype(dtype)
    total = int(np.prod(shape))
    needed = total * dtype.itemsize + 4096
    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise OSError(f"{path.parent} has {free / 1e9:.2f} GB free, the {what} needs {needed / 1e9:.2f} GB")

    def write(handle) -> None:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(handle, header)
        written = 0
        for chunk in chunks:
            chunk = np.ascontiguousarray(chunk, dtype=dtype)
            handle.write(chunk.tobytes())
            written += chunk.size
        if written != total:
            raise ValueError(f"the {what} got {written} values, expected {total}")

    atomic_write(path, write, binary=True)


def _ones_of_packed(block: np.ndarray, num_features: int) -> tuple[np.ndarray, np.ndarray]:
    """``(row, flat index t*F + f)`` of every one of packed rows ``uint8 [n, T, ceil(F/8)]``, sorted by both.

    Only the non-zero bytes are unpacked (frames are mostly zeros): 3x faster than
    ``np.nonzero`` of the unpacked frames.
    """
    rows, steps, row_bytes = block.shape
    flat_bytes = block.reshape(rows, steps * row_bytes)
    row, byte = np.nonzero(flat_bytes)
    which, bit = np.nonzero(np.unpackbits(flat_bytes[row, byte][:, None], axis=1))  # row-major: order kept
    step, byte_in_step = np.divmod(byte[which], row_bytes)
    return row[which], step * num_features + byte_in_step * 8 + bit


class _PackedRecordings(Dataset):
    """Item ``i``: the packed frames of recording ``i``, framed by ``flat_frames(i)`` (run in loader workers)."""

    def __init__(self, flat_frames: Callable[[int], torch.Tensor], count: int, frame_shape: tuple[int, int]) -> None:
        self.flat_frames = flat_frames
        self.count = count
        self.frame_shape = tuple(frame_shape)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        frames = self.flat_frames(index)
        if tuple(frames.shape) != self.frame_shape:
            raise ValueError(f"recording {index} framed to shape {tuple(frames.shape)}, expected {self.frame_shape}")
        return pack_frames(frames)


class FrameCache:
    """The packed frames of an ordered list of recordings, memory-mapped from one ``.npy`` file.

    Build or find one with :meth:`open`. Pickling (for DataLoader workers) sends only the
    path; each process maps the file itself, so all of them share the page cache.
    :meth:`sample_indices` reads each recording's ones from the index next to the file
    (:meth:`build_ones_index`).

    Args:
        path: The ``.npy`` file holding ``uint8 [N, T, ceil(F/8)]``.
        num_features: ``F``, the length of an unpacked frame.

    Attributes:
        path: The cache file.
        num_features: ``F``.
    """

    def __init__(self, path: Union[str, Path], num_features: int) -> None:
        self.path = Path(path)
        self.num_features = num_features
        self._array: Optional[np.ndarray] = None
        self._ones: Optional[tuple[np.ndarray, np.ndarray]] = None

    @property
    def lock_path(self) -> Path:
        """``<name>-<group>-build.lock``: held while a process builds this group's cache or ones index."""
        return self.path.with_name(f"{self.path.name.rsplit('-', 1)[0]}-build.lock")

    @property
    def ones_path(self) -> Path:
        """The ones index of this cache: ``<stem>.ones.npy`` next to :attr:`path`."""
        return self.path.with_suffix(ONES_SUFFIX)

    @property
    def array(self) -> np.ndarray:
        """The packed frames ``uint8 [N, T, ceil(F/8)]``, memory-mapped read-only on first use."""
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None, "_ones": None}  # never pickle the mapped data itself

    def __len__(self) -> int:
        return len(self.array)

    def packed(self, rows: Union[int, Sequence[int]]) -> np.ndarray:
        """Packed frames of one row ``[T, ceil(F/8)]`` or of several ``[n, T, ceil(F/8)]`` (a copy)."""
        return np.array(self.array[rows if isinstance(rows, (int, np.integer)) else np.asarray(rows, dtype=np.int64)])

    def frames(self, rows: Union[int, Sequence[int]]) -> torch.Tensor:
        """Unpacked float32 frames ``[T, F]`` of one row, or ``[n, T, F]`` of several."""
        return torch.from_numpy(unpack_numpy(self.packed(rows), self.num_features).astype(np.float32))

    def sample_indices(self, rows: Sequence[int]) -> list[np.ndarray]:
        """Each row's ones as sorted flat indices ``t * F + f`` into its ``[T, F]`` frames (uint32 views of the index).

        Builds the ones index first if there is no valid one (:meth:`build_ones_index`).
        """
        if self._ones is None:
            self.build_ones_index()
        ones, offsets = self._ones
        return [ones[offsets[row]:offsets[row + 1]] for row in np.asarray(rows, dtype=np.int64).reshape(-1).tolist()]

    @property
    def has_ones_index(self) -> bool:
        """Whether a valid ones index exists (mapped now if it does; never built here)."""
        if self._ones is None:
            self._ones = self._open_ones()
        return self._ones is not None

    def build_ones_index(self) -> None:
        """Map the ones index :attr:`ones_path`, building it from the packed file first if it is missing or damaged.

        The index is one ``uint32 [N + nnz]`` ``.npy``: the number of ones of each of the
        ``N`` recordings, then every recording's sorted flat indices ``t * F + f`` in row
        order. It is derived chunk-wise from the packed file (no event file is read).

        Raises:
            OSError: The folder has too little free space or cannot be written.
            ValueError: ``T * F`` does not fit in 32 bits.
        """
        if self.has_ones_index:
            return
        with FileLock(self.lock_path):  # one builder; the others wait, then map it
            self._ones = self._open_ones()
            if self._ones is not None:
                return
            log.info("Building the ones index %s", self.ones_path)
            self._build_ones()
            self._ones = self._open_ones()
            if self._ones is None:
                raise OSError(f"the ones index {self.ones_path} was written but does not read back")

    def _open_ones(self) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """``(index, offsets [N + 1])`` of a valid ones index on disk, or None (missing, damaged, of other frames)."""
        count = len(self.array)
        try:
            ones = np.asarray(np.load(self.ones_path, mmap_mode="r"))  # a plain ndarray view of the mapping
        except (OSError, ValueError):  # missing, truncated, or not a .npy
            return None
        if ones.dtype != np.uint32 or ones.ndim != 1 or len(ones) < count:
            return None
        offsets = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(ones[:count], out=offsets[1:])
        offsets += count
        if offsets[-1] != len(ones):
            return None
        # Spot-check a few rows against the packed frames: a mismatch means another file's index.
        for row in np.unique(np.linspace(0, count - 1, min(count, 8)).astype(np.int64)).tolist():
            _, expected = _ones_of_packed(self.array[row:row + 1], self.num_features)
            if not np.array_equal(ones[offsets[row]:offsets[row + 1]], expected):
                return None
        return ones, offsets

    def _build_ones(self) -> None:
        """Write the ones index of the packed file atomically (two chunk-wise passes: counts, then indices)."""
        count, num_steps, row_bytes = self.array.shape
        if num_steps * self.num_features >= 2**32:
            raise ValueError(f"the ones index holds 32-bit indices: T * F = {num_steps * self.num_features} is too large")
        step = max(1, CHUNK_BYTES // max(1, num_steps * row_bytes))
        chunks = [slice(start, min(start + step, count)) for start in range(0, count, step)]
        counts = np.concatenate(
            [_POPCOUNT[self.array[rows]].reshape(rows.stop - rows.start, -1).sum(axis=1, dtype=np.int64) for rows in chunks]
            or [np.zeros(0, np.int64)]
        )

        def indices() -> Iterable[np.ndarray]:
            yield counts
            for rows in chunks:
                row, flat = _ones_of_packed(self.array[rows], self.num_features)
                if not np.array_equal(np.bincount(row, minlength=rows.stop - rows.start), counts[rows]):
                    raise ValueError(f"{self.path} changed while its ones index was built")
                yield flat

        _write_npy(self.ones_path, np.uint32, (count + int(counts.sum()),), indices(), "ones index")

    @classmethod
    def open(
        cls,
        files: Sequence[str],
        flat_frames: Callable[[int], torch.Tensor],
        frame_shape: tuple[int, int],
        settings: dict[str, Any],
        name: str,
        cache_dir: Union[str, Path, None] = None,
        num_workers: int = 0,
    ) -> "FrameCache":
        """The cache of ``files`` under ``settings``: the existing file, or a new one built now.

        Args:
            files: The recordings, in row order.
            flat_frames: ``flat_frames(i)`` reads and frames ``files[i]`` into ``[T, F]``
                (picklable when ``num_workers > 0``, e.g. a bound method of a dataset).
            frame_shape: ``(T, F)``.
            settings: Everything the frames depend on besides the files (JSON-serialisable).
            name: Dataset name, the start of the file name.
            cache_dir: Folder of the cache files (default :func:`default_cache_dir`).
            num_workers: Loader worker processes that frame files in parallel during a build.

        Raises:
            OSError: The cache folder cannot be written or has too little free space.
        """
        num_steps, num_features = frame_shape
        directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        stamps = []
        for file in files:
            stat = os.stat(file)
            stamps.append([file, stat.st_size, stat.st_mtime_ns])
        group = _digest({"format_version": FORMAT_VERSION, "settings": settings, "frame_shape": frame_shape,
                         "files": list(files)})
        prefix = f"{_slug(name)}-{group}-"
        cache = cls(directory / f"{prefix}{_digest(stamps)}.npy", num_features)
        shape = (len(files), num_steps, -(-num_features // 8))
        if cache._holds(shape):
            return cache
        directory.mkdir(parents=True, exist_ok=True)
        # One builder per files and settings: DDP ranks and parallel benchmark runs wait for it.
        with FileLock(cache.lock_path):
            if cache._holds(shape):  # built by another process while this one waited
                return cache
            for partial in directory.glob(f".{prefix}*.tmp"):  # left by a killed build of this group
                partial.unlink(missing_ok=True)
            cache._build(_PackedRecordings(flat_frames, len(files), frame_shape), shape, name, num_workers)
            # Older caches of these files and settings, and every ones index: each was derived from a
            # file that is now replaced or removed.
            for stale in directory.glob(f"{prefix}*.npy"):
                if stale != cache.path:
                    stale.unlink(missing_ok=True)
        return cache

    def _holds(self, shape: tuple[int, int, int]) -> bool:
        """Whether :attr:`path` is a complete cache of ``shape`` (mapped if so)."""
        try:
            if self.array.shape == shape and self.array.dtype == np.uint8:
                return True
        except (OSError, ValueError):  # missing, removed meanwhile, or not a cache file
            pass
        self._array = None
        return False

    def _build(self, recordings: _PackedRecordings, shape: tuple[int, int, int], name: str, num_workers: int) -> None:
        """Frame every recording and write the packed rows atomically to :attr:`path`."""
        log.info("Building the frame cache %s (%d recordings)", self.path, shape[0])
        loader = DataLoader(recordings, batch_size=None, num_workers=num_workers)
        progress = tqdm(total=shape[0], desc=f"Caching {name} frames", unit="file", leave=False,
                        disable=None if shape[0] >= PROGRESS_MIN_FILES else True)

        def rows() -> Iterable[np.ndarray]:
            for row in loader:
                yield row
                progress.update()

        try:
            _write_npy(self.path, np.uint8, shape, rows(), "frame cache")
        finally:
            progress.close()


class _CacheRows(Dataset):
    """Item ``i``: ``(what :meth:`_read` gives for cache row rows[i], label)``; a batch is one read."""

    def __init__(self, cache: FrameCache, rows: Sequence[int], labels: Sequence[int]) -> None:
        self.cache = cache
        self.rows = list(rows)
        self.labels = list(labels)

    def __len__(self) -> int:
        return len(self.rows)

    def _read(self, rows: list[int]) -> Sequence[Any]:
        """One item per cache row."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, int]]:
        data = self._read([self.rows[i] for i in indices])
        return [(item, self.labels[i]) for item, i in zip(data, indices)]


class PackedFrames(_CacheRows):
    """Item ``i``: ``(uint8 [T, ceil(F/8)] packed frames, label)`` of row ``rows[i]`` of a :class:`FrameCache`.

    For loaders whose batches are unpacked later with :func:`unpack_bits` (on the GPU).
    ``__getitems__`` reads a whole batch with one gather from the mapped file.

    Args:
        cache: The frame cache.
        rows: Cache row of every sample.
        labels: Label of every sample.
    """

    def _read(self, rows: list[int]) -> torch.Tensor:
        return torch.from_numpy(self.cache.packed(rows))


class SparseSamples(_CacheRows):
    """Item ``i``: ``(uint32 sorted flat indices t*F + f of the ones, label)`` of row ``rows[i]`` of a :class:`FrameCache`.

    Batch it with :class:`SparseBatch` into :class:`~lightning_local.sparse_frames.SparseFrames`.
    The indices are views of the memory-mapped ones index (:meth:`FrameCache.sample_indices`).

    Args:
        cache: The frame cache.
        rows: Cache row of every sample.
        labels: Label of every sample.
    """

    def _read(self, rows: list[int]) -> list[np.ndarray]:
        return self.cache.sample_indices(rows)


class SparseBatch:
    """Collate ``[(indices, label), ...]`` of :class:`SparseSamples` into ``(SparseFrames [B, T, F], int64 labels [B])``.

    A module-level class, so DataLoader worker processes can unpickle it.

    Args:
        steps: ``T``.
        features: ``F``.
    """

    def __init__(self, steps: int, features: int) -> None:
        self.steps = steps
        self.features = features

    def __call__(self, samples: Sequence[tuple[np.ndarray, int]]) -> tuple[SparseFrames, torch.Tensor]:
        frames = SparseFrames.from_sample_indices([indices for indices, _ in samples], self.steps, self.features)
        return frames, torch.tensor([label for _, label in samples], dtype=torch.int64)
