"""Speech as spiking-network input: MFCC frames, one frame per time step.

Feature pipeline (shared by :class:`~lightning_local.data.timit.TIMIT` and
:class:`~lightning_local.data.fsdd.FSDD`):

* Audio is read with ``soundfile`` (libsndfile: RIFF WAV, NIST SPHERE, FLAC, ...), as float32
  in [-1, 1), mono.
* ``librosa.feature.mfcc``: 25 ms Hamming windows every 10 ms (``n_fft`` the next power of two,
  the window zero-padded to it), ``n_mels`` mel bands up to the Nyquist frequency, log power
  (librosa's ``power_to_db``, 80 dB floor below the utterance's peak), DCT-II, the first
  ``n_mfcc`` (13) coefficients; frames are centred (``center=True``, zero padding), so frame
  ``i`` is centred on sample ``i * hop`` and an utterance of ``N`` samples has ``1 + N // hop``
  frames. Then ``librosa.feature.delta`` (9-frame Savitzky-Golay, ``nearest`` edges, so short
  utterances work) of order 1 and 2: ``3 * n_mfcc = 39`` features per frame.
* Normalisation: per feature, minus the mean and divided by the standard deviation of all
  frames of the *training* split; validation and test use the same statistics. The network
  receives these real values directly as input currents.

Extraction takes ~1-35 ms per utterance on a busy 2-core CPU (``benchmarks/speech_features.py``),
so features are cached on disk, one ``.npy`` per recording under
``$LIGHTNING_LOCAL_CACHE/speech_features/`` (default ``~/.cache/lightning_local``), keyed by the
file's path, size and modification time, the settings and the librosa version; ``cache=False``
turns this off.

Batches (:func:`pad_batch`): ``frames`` float32 ``[B, T, 3 n_mfcc]`` padded at the end with
zeros (the training mean, after normalisation); ``labels`` int64 ``[B]`` (one class per
utterance) or ``[B, T]`` (one class per frame, padded with :data:`IGNORE_INDEX`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple, Optional, Union

import numpy as np
import soundfile
import torch
from threadpoolctl import threadpool_limits
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from lightning_local.data.base import PROGRESS_MIN_FILES
from lightning_local.data.errors import DataArgumentError, EventDataError, check_data_arguments
from lightning_local.data.interface import SpikingDataModule
from lightning_local.data.splits import stratified_split
from lightning_local.data.validation import cache_root
from lightning_local.files import atomic_write
from lightning_local.models.network import IGNORE_INDEX

log = logging.getLogger(__name__)

FEATURE_CACHE_VERSION = 1
"""Bump when the extraction changes, so old cached features are not reused."""


class SpeechDataError(EventDataError):
    """A speech recording or its transcription is missing, unreadable or inconsistent.

    A subclass of :class:`EventDataError`, so the command line reports it as one line.
    """


class Utterance(NamedTuple):
    """One recording: its audio file, speaker, class (per-utterance tasks) and transcription file."""

    path: str
    speaker: str
    label: int = IGNORE_INDEX
    transcription: Optional[str] = None


@dataclass(frozen=True)
class MFCCSettings:
    """MFCC + delta + delta-delta settings (the defaults are the paper's TIMIT features).

    Args:
        n_mfcc: cepstral coefficients per frame (features = ``3 * n_mfcc``).
        n_mels: mel bands the coefficients are computed from.
        window_ms: analysis window length.
        hop_ms: step between frames (one frame = one network time step).
        delta_width: frames used by the delta filters (odd, >= 3).
    """

    n_mfcc: int = 13
    n_mels: int = 40
    window_ms: float = 25.0
    hop_ms: float = 10.0
    delta_width: int = 9

    def __post_init__(self) -> None:
        problems = []
        if self.n_mfcc < 1 or self.n_mels < self.n_mfcc:
            problems.append(f"need 1 <= n_mfcc <= n_mels (got n_mfcc={self.n_mfcc}, n_mels={self.n_mels})")
        if not 0 < self.hop_ms <= self.window_ms:
            problems.append(f"need 0 < hop_ms <= window_ms (got hop_ms={self.hop_ms}, window_ms={self.window_ms})")
        if self.delta_width < 3 or self.delta_width % 2 == 0:
            problems.append(f"delta_width must be odd and >= 3 (got {self.delta_width})")
        if problems:
            raise DataArgumentError(f"invalid data arguments: {'; '.join(problems)}.")

    @property
    def num_features(self) -> int:
        """Features per frame: MFCC, delta and delta-delta."""
        return 3 * self.n_mfcc

    def frame_sizes(self, sample_rate: int) -> tuple[int, int, int]:
        """``(window, hop, n_fft)`` in samples at ``sample_rate``."""
        window = int(round(self.window_ms * sample_rate / 1000))
        hop = int(round(self.hop_ms * sample_rate / 1000))
        return window, hop, 1 << (window - 1).bit_length()


def read_audio(path: str) -> tuple[np.ndarray, int]:
    """``(samples float32 [N] in [-1, 1), sample rate)`` of a mono recording (RIFF, NIST SPHERE, ...)."""
    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        raise SpeechDataError(f"Cannot read the audio file {path} ({error}): fix or replace it.") from None
    if audio.shape[1] != 1:
        raise SpeechDataError(f"Audio file {path} has {audio.shape[1]} channels; expected mono recordings.")
    if audio.shape[0] == 0:
        raise SpeechDataError(f"Audio file {path} holds no samples: fix or replace it.")
    return audio[:, 0], int(rate)


def mfcc_features(audio: np.ndarray, sample_rate: int, settings: MFCCSettings = MFCCSettings()) -> np.ndarray:
    """MFCC + delta + delta-delta of one recording: float32 ``[1 + N // hop, 3 * n_mfcc]`` (not normalised)."""
    import librosa  # its first call in a process compiles numba kernels (seconds; cached runs skip it)

    window, hop, n_fft = settings.frame_sizes(sample_rate)
    mfcc = librosa.feature.mfcc(
        y=audio, sr=sample_rate, n_mfcc=settings.n_mfcc, n_fft=n_fft, win_length=window, hop_length=hop,
        window="hamming", center=True, pad_mode="constant", n_mels=settings.n_mels,
    )
    deltas = [librosa.feature.delta(mfcc, width=settings.delta_width, order=k, mode="nearest") for k in (1, 2)]
    return np.concatenate([mfcc, *deltas]).T.astype(np.float32)


class FeatureCache:
    """Features of recordings on disk, one ``.npy`` per file, keyed by file stamp and settings.

    Args:
        settings: the extraction settings.
        enabled: ``False`` extracts every time and writes nothing.

    Attributes:
        hits: recordings served from the cache since creation.
        misses: recordings extracted since creation.
    """

    def __init__(self, settings: MFCCSettings, enabled: bool = True) -> None:
        self.settings = settings
        self.enabled = enabled
        self.folder = cache_root() / "speech_features"
        self._salt = json.dumps(
            {"version": FEATURE_CACHE_VERSION, "librosa": version("librosa"), **asdict(settings)}, sort_keys=True
        )
        self.hits = self.misses = 0

    def _key(self, path: str) -> Path:
        stat = os.stat(path)
        blob = f"{self._salt}|{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}"
        return self.folder / f"{hashlib.sha256(blob.encode()).hexdigest()[:32]}.npy"

    def features(self, path: str) -> np.ndarray:
        """Features ``[T, 3 n_mfcc]`` of the recording ``path`` (from the cache when it is unchanged)."""
        try:
            key = self._key(path)
        except OSError as error:
            raise SpeechDataError(f"Cannot read the audio file {path} ({error}): fix or replace it.") from None
        if self.enabled:
            try:
                features = np.load(key)
                self.hits += 1
                return features
            except (OSError, ValueError):
                pass
        features = mfcc_features(*read_audio(path), self.settings)
        self.misses += 1
        if self.enabled:
            try:
                atomic_write(key, lambda handle: np.save(handle, features), binary=True)
            except OSError:  # an unwritable cache only costs time
                pass
        return features


class SpeechDataset(Dataset):
    """Normalised feature sequences held in memory, with their labels.

    Args:
        features: per utterance float32 ``[T_i, F]`` (already normalised).
        labels: per utterance an ``int`` (one class) or an int64 array ``[T_i]`` (one class per frame).
        utterances: the recordings, in the same order.
    """

    def __init__(
        self, features: Sequence[np.ndarray], labels: Sequence[Union[int, np.ndarray]], utterances: Sequence[Utterance]
    ) -> None:
        self.features = [torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32)) for f in features]
        self.targets = [label if isinstance(label, int) else torch.from_numpy(np.asarray(label, np.int64)) for label in labels]
        self.utterances = list(utterances)

    @property
    def labels(self) -> list[int]:
        """Class of every utterance (per-utterance tasks only)."""
        if any(not isinstance(t, int) for t in self.targets):
            raise TypeError("This dataset labels every frame; it has no per-utterance labels.")
        return list(self.targets)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Union[int, torch.Tensor]]:
        return self.features[index], self.targets[index]


def pad_batch(
    samples: Sequence[tuple[torch.Tensor, Union[int, torch.Tensor]]], length: Optional[int] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate ``(frames [T_i, F], label)`` pairs into ``(frames [B, T, F], labels)``.

    ``T`` is ``length`` (longer samples are cut to their first ``length`` frames) or, if
    ``None``, the longest sample of the batch. Frames are padded with zeros at the end;
    per-frame labels ``[T_i]`` are padded (and cut) alike with :data:`IGNORE_INDEX`, giving
    ``[B, T]``; per-utterance labels give ``[B]``.
    """
    steps = length if length is not None else max(frames.shape[0] for frames, _ in samples)
    frames = torch.zeros(len(samples), steps, samples[0][0].shape[1], dtype=torch.float32)
    per_frame = not isinstance(samples[0][1], int)
    labels = torch.full((len(samples), steps), IGNORE_INDEX, dtype=torch.long) if per_frame else None
    for i, (x, y) in enumerate(samples):
        n = min(x.shape[0], steps)
        frames[i, :n] = x[:n]
        if per_frame:
            labels[i, :n] = y[:n]
    if not per_frame:
        labels = torch.tensor([int(y) for _, y in samples], dtype=torch.long)
    return frames, labels


def speaker_split(
    utterances: Sequence[Utterance], fraction: float, seed: int
) -> tuple[list[Utterance], list[Utterance]]:
    """Split into (kept, carved) with ``round(fraction * speakers)`` whole speakers carved out.

    At least one speaker is carved when ``fraction > 0`` and there are two or more, and at
    least one is kept. The speakers are drawn with ``numpy.random.default_rng(seed)`` from
    their sorted list, so one seed always gives the same split.
    """
    speakers = sorted({u.speaker for u in utterances})
    count = int(round(fraction * len(speakers)))
    if fraction > 0 and len(speakers) >= 2:
        count = min(max(count, 1), len(speakers) - 1)
    chosen = set(np.random.default_rng(seed).choice(speakers, size=count, replace=False).tolist()) if count else set()
    return [u for u in utterances if u.speaker not in chosen], [u for u in utterances if u.speaker in chosen]


def class_split(utterances: Sequence[Utterance], fraction: float, seed: int) -> tuple[list[Utterance], list[Utterance]]:
    """Split into (kept, carved) with ``fraction`` of every class carved out (:func:`stratified_split`)."""
    kept, carved = stratified_split([u.label for u in utterances], fraction, seed)
    return [utterances[i] for i in kept], [utterances[i] for i in carved]


class SpeechDataModule(SpikingDataModule):
    """Base of the speech data modules: find recordings, extract and normalise MFCC frames, batch them.

    Subclasses implement :meth:`find_utterances` (train and test recordings), :meth:`split_validation`
    and, for frame-wise tasks, :meth:`frame_labels`; they set :attr:`class_names`,
    :attr:`dataset_name` and :attr:`pad_length`. ``setup`` builds ``train_dataset``,
    ``val_dataset`` and ``test_dataset`` once: it extracts (or loads from the cache) the
    features of every recording, computes the per-feature mean and standard deviation over
    all frames of the training split (:attr:`feature_mean`, :attr:`feature_std`) and
    normalises every split with them. Only the train loader shuffles, in an order fixed by
    ``(seed, epoch)``; under DDP the evaluation loaders give each sample to exactly one process.

    Args:
        root: folder holding the dataset.
        batch_size: utterances per batch.
        num_workers: DataLoader worker processes (features are in memory; 0 is usually best).
        val_fraction: share of the training data held out for validation (how: see the subclass).
        seed: seed of the validation split and of the train shuffling.
        n_mfcc: cepstral coefficients per frame (:class:`MFCCSettings`).
        n_mels: mel bands.
        window_ms: analysis window length in milliseconds.
        hop_ms: step between frames in milliseconds.
        cache: keep extracted features on disk (see the module docstring).
    """

    class_names: tuple[str, ...] = ()
    """Names of the classes in label order (set by subclasses)."""
    dataset_name: str = "speech"
    """Human-readable name used in messages."""

    def __init__(
        self,
        root: Optional[str],
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        n_mfcc: int = 13,
        n_mels: int = 40,
        window_ms: float = 25.0,
        hop_ms: float = 10.0,
        cache: bool = True,
    ) -> None:
        super().__init__()
        check_data_arguments({
            "batch_size": (batch_size, batch_size >= 1, ">= 1"),
            "num_workers": (num_workers, num_workers >= 0, ">= 0"),
            "val_fraction": (val_fraction, 0 <= val_fraction < 1, "in [0, 1)"),
        })
        self.root = root
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.seed = seed
        self.settings = MFCCSettings(n_mfcc=n_mfcc, n_mels=n_mels, window_ms=window_ms, hop_ms=hop_ms)
        self.cache = cache
        self.feature_mean: Optional[np.ndarray] = None
        self.feature_std: Optional[np.ndarray] = None
        self.train_dataset: Optional[SpeechDataset] = None
        self.val_dataset: Optional[SpeechDataset] = None
        self.test_dataset: Optional[SpeechDataset] = None

    # ------------------------------------------------------------------ sizes
    @property
    def num_inputs(self) -> int:
        """Features per frame, ``3 * n_mfcc`` (39)."""
        return self.settings.num_features

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_steps(self) -> Optional[int]:
        """Frames per sample when batches have a fixed length, else ``None``."""
        return self.pad_length

    @property
    def pad_length(self) -> Optional[int]:
        """Frames every batch is padded or cut to (``None``: the longest utterance of each batch)."""
        return None

    # ------------------------------------------------------- subclass hooks
    def find_utterances(self) -> tuple[list[Utterance], list[Utterance]]:
        """``(train, test)`` recordings (raises :class:`DatasetNotFoundError` when the data is absent)."""
        raise NotImplementedError

    def split_validation(self, train: list[Utterance]) -> tuple[list[Utterance], list[Utterance]]:
        """``(train, validation)`` from the training recordings."""
        raise NotImplementedError

    def frame_labels(self, utterance: Utterance, num_frames: int) -> Union[int, np.ndarray]:
        """The target of one utterance: its class (default) or one class per frame (int64 ``[num_frames]``)."""
        return utterance.label

    # ----------------------------------------------------------------- setup
    def prepare_data(self) -> None:
        """Check that the recordings are there (nothing is downloaded)."""
        self.find_utterances()

    def setup(self, stage: Optional[str] = None) -> None:
        """Build the three splits (once): features, normalisation from the training split, labels."""
        if self.train_dataset is not None:
            return
        train, test = self.find_utterances()
        train, val = self.split_validation(train)
        if not train or not test:
            raise SpeechDataError(
                f"{self.dataset_name} under {self.root} gives {len(train)} training and {len(test)} test utterances; "
                "both must be non-empty."
            )
        features = self._extract([*train, *val, *test])
        train_frames = np.concatenate(features[: len(train)])
        self.feature_mean = train_frames.mean(axis=0, dtype=np.float64).astype(np.float32)
        self.feature_std = np.maximum(train_frames.std(axis=0, dtype=np.float64), 1e-8).astype(np.float32)
        start = 0
        splits = []
        for utterances in (train, val, test):
            chunk = features[start : start + len(utterances)]
            start += len(utterances)
            normalised = [(f - self.feature_mean) / self.feature_std for f in chunk]
            labels = [self.frame_labels(u, len(f)) for u, f in zip(utterances, chunk)]
            splits.append(SpeechDataset(normalised, labels, utterances))
        self.train_dataset, self.val_dataset, self.test_dataset = splits
        log.info(
            "%s: %d train / %d validation / %d test utterances, %d training frames.",
            self.dataset_name, len(train), len(val), len(test), len(train_frames),
        )

    def _extract(self, utterances: list[Utterance]) -> list[np.ndarray]:
        """Features of every utterance, through the cache."""
        cache = FeatureCache(self.settings, enabled=self.cache)
        started = time.perf_counter()
        features = []
        # One BLAS thread: the matrices of one utterance are small, and threads that wait
        # for busy cores made extraction 4-5x slower on a loaded 2-core machine.
        with threadpool_limits(limits=1):
            for utterance in tqdm(
                utterances, desc=f"{self.dataset_name} features", unit="file", leave=False,
                disable=None if len(utterances) >= PROGRESS_MIN_FILES else True,
            ):
                features.append(cache.features(utterance.path))
        log.info(
            "%s: features of %d recordings in %.1f s (%d extracted, %d from the cache %s).",
            self.dataset_name, len(utterances), time.perf_counter() - started, cache.misses, cache.hits, cache.folder,
        )
        return features

    def collate_fn(self):
        """Pad each batch with :func:`pad_batch` (features with zeros, frame labels with -100)."""
        return partial(pad_batch, length=self.pad_length)
