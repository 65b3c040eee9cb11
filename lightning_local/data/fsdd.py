"""Free Spoken Digit Dataset (FSDD): spoken digits 0-9, a freely downloadable speech benchmark.

Layout (the upstream repository, https://github.com/Jakobovski/free-spoken-digit-dataset)::

    ROOT/recordings/{digit}_{speaker}_{index}.wav        (8 kHz mono; or ROOT itself holds the .wav files)

Features: :mod:`lightning_local.data.speech` (39 MFCC features per 10 ms frame, normalised with
training statistics), one label per utterance.

Splits: the official one - takes (``index``) 0-4 of every speaker and digit are the test set,
the rest is training. When *no* recording with index 0-4 is present (e.g. a copy that holds
the training part only), the test set falls back to the **five lowest takes present** of every
speaker and digit (take-based, like the official split: same speakers, disjoint takes), and the
log says so. Validation: a class-stratified ``val_fraction`` of the training recordings (seeded).

Padding: every utterance becomes exactly ``num_frames`` steps (default 100 = 1 s; the median
utterance is 0.42 s, and 18 of the 2,700 training recordings are longer than 1 s): shorter ones
are padded at the end with zeros (= the training mean, after normalisation), longer ones are
cut to their first ``num_frames`` frames (counted in the log). With bias-free layers zero input
makes the network fall silent, so padded steps add almost no gradient; they add a nearly
constant ``log(10)`` to the per-step loss, and nothing to the prediction ``argmax_c sum_t u_c^t``
beyond the output membrane's decay. A fixed length keeps results independent of how
utterances are batched. ``num_frames=None`` pads to the longest recording instead.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Optional

from lightning_local.data.errors import DatasetNotFoundError, check_data_arguments
from lightning_local.data.speech import SpeechDataModule, Utterance, class_split

log = logging.getLogger(__name__)

FILE_NAME = re.compile(r"(\d)_([A-Za-z0-9-]+)_(\d+)\.wav")
OFFICIAL_TEST_TAKES = range(0, 5)
URL = "https://github.com/Jakobovski/free-spoken-digit-dataset"


class FSDD(SpeechDataModule):
    """Free Spoken Digit Dataset: 39 MFCC features per 10 ms frame, one digit per utterance.

    Batches: ``frames`` float32 ``[B, num_frames, 39]``, ``labels`` int64 ``[B]``. See the module
    docstring for the official split, its fallback and padding.

    Args:
        root: folder holding ``recordings/`` (or the ``.wav`` files themselves).
        num_frames: time steps per utterance (padded or cut); ``None``: the longest recording.
        **kwargs: every other argument of :class:`~lightning_local.data.speech.SpeechDataModule`
            (batch size, workers, ``val_fraction`` - a share of each digit's training recordings -,
            seed, MFCC settings, cache).
    """

    class_names = tuple(str(d) for d in range(10))
    dataset_name = "FSDD"

    def __init__(self, root: Optional[str] = None, num_frames: Optional[int] = 100, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        check_data_arguments({"num_frames": (num_frames, num_frames is None or num_frames >= 1, ">= 1 (or null)")})
        self.num_frames = num_frames
        self.test_takes: tuple[int, ...] = tuple(OFFICIAL_TEST_TAKES)
        self._longest: Optional[int] = None

    @property
    def pad_length(self) -> Optional[int]:
        """``num_frames``, or the longest recording's frame count (known after ``setup``)."""
        return self.num_frames if self.num_frames is not None else self._longest

    def recordings(self) -> list[tuple[Path, int, str, int]]:
        """``(path, digit, speaker, take)`` of every recording under ``root``."""
        root = Path(self.root or "").expanduser()
        for folder in (root / "recordings", root) if self.root else ():
            found = []
            if folder.is_dir():
                for path in sorted(folder.iterdir()):
                    match = FILE_NAME.fullmatch(path.name)
                    if match:
                        found.append((path, int(match.group(1)), match.group(2), int(match.group(3))))
            if found:
                return found
        where = f"under {root}" if self.root else "(no --data.root given)"
        raise DatasetNotFoundError(
            f"FSDD not found {where} (expected ROOT/recordings/{{digit}}_{{speaker}}_{{index}}.wav): "
            f"download it from {URL} and pass --data.root"
        )

    def find_utterances(self) -> tuple[list[Utterance], list[Utterance]]:
        found = self.recordings()
        takes = sorted({take for *_, take in found})
        if any(take in OFFICIAL_TEST_TAKES for take in takes):
            self.test_takes = tuple(OFFICIAL_TEST_TAKES)
        else:
            fallback = tuple(takes[: len(OFFICIAL_TEST_TAKES)])
            if fallback != self.test_takes:  # say it once (prepare_data and setup both look)
                log.warning(
                    "FSDD: no recording with index 0-4 (the official test takes) under %s; using takes %s of every "
                    "speaker and digit as the test set instead (take-based fallback).",
                    self.root, ", ".join(map(str, fallback)),
                )
            self.test_takes = fallback
        train, test = [], []
        for path, digit, speaker, take in found:
            (test if take in self.test_takes else train).append(Utterance(str(path), speaker, digit))
        return train, test

    def split_validation(self, train: list[Utterance]) -> tuple[list[Utterance], list[Utterance]]:
        """A class-stratified ``val_fraction`` of the training recordings."""
        return class_split(train, self.val_fraction, self.seed)

    def setup(self, stage: Optional[str] = None) -> None:
        """Build the splits, then report how many utterances the fixed length cuts."""
        if self.train_dataset is not None:
            return
        super().setup(stage)
        lengths = [len(f) for d in (self.train_dataset, self.val_dataset, self.test_dataset) for f in d.features]
        self._longest = max(lengths)
        cut = sum(n > self.pad_length for n in lengths)
        log.info("FSDD: %d time steps per utterance; %d of %d utterances are longer and cut.", self.pad_length, cut, len(lengths))
