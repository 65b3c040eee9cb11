"""TIMIT frame-wise phone classification (the paper's third dataset).

TIMIT (LDC93S1) is licensed from the Linguistic Data Consortium and cannot be downloaded;
point ``--data.root`` at a local copy in the LDC layout::

    ROOT/[TIMIT/]TRAIN/DR<n>/<SPEAKER>/<UTT>.WAV|.PHN      (and TEST/; upper or lower case)

The ``.WAV`` files may be NIST SPHERE (the LDC's) or RIFF (soundfile reads both).

* Frames: :mod:`lightning_local.data.speech` (39 MFCC features every 10 ms, normalised with
  training statistics); one frame = one time step, utterances keep their own length.
* Labels: one per frame, the ``.PHN`` phone whose segment ``[start, end)`` holds the frame's
  centre sample ``i * hop``, folded from the 61 TIMIT phones to the standard 39 classes
  (Lee & Hon 1989; Kaldi's ``phones.60-48-39.map``, :data:`PHONE_FOLDING`). Frames on ``q``
  (the glottal stop, which the folding drops), and frames outside every segment (audio after
  the last one), get :data:`~lightning_local.data.speech.IGNORE_INDEX` (-100): the loss and the
  frame accuracy skip them.
* Splits: the SA sentences (the same two sentences read by every speaker) are left out by
  default, as is standard. Test: every TEST speaker (``test_set="full"``) or the 24-speaker
  core test set (``test_set="core"``, :data:`CORE_TEST_SPEAKERS`; needs the full corpus).
  Validation: ``val_fraction`` of the TRAIN *speakers* (all their utterances), drawn with ``seed``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
import soundfile

from lightning_local.data.errors import DatasetNotFoundError, check_data_arguments
from lightning_local.data.speech import IGNORE_INDEX, SpeechDataError, SpeechDataModule, Utterance, speaker_split

#: The standard folding of the 61 TIMIT phones to 39 classes (``q`` -> None: no target).
PHONE_FOLDING: dict[str, Optional[str]] = {
    "aa": "aa", "ae": "ae", "ah": "ah", "ao": "aa", "aw": "aw", "ax": "ah", "ax-h": "ah", "axr": "er",
    "ay": "ay", "b": "b", "bcl": "sil", "ch": "ch", "d": "d", "dcl": "sil", "dh": "dh", "dx": "dx",
    "eh": "eh", "el": "l", "em": "m", "en": "n", "eng": "ng", "epi": "sil", "er": "er", "ey": "ey",
    "f": "f", "g": "g", "gcl": "sil", "h#": "sil", "hh": "hh", "hv": "hh", "ih": "ih", "ix": "ih",
    "iy": "iy", "jh": "jh", "k": "k", "kcl": "sil", "l": "l", "m": "m", "n": "n", "ng": "ng",
    "nx": "n", "ow": "ow", "oy": "oy", "p": "p", "pau": "sil", "pcl": "sil", "q": None, "r": "r",
    "s": "s", "sh": "sh", "t": "t", "tcl": "sil", "th": "th", "uh": "uh", "uw": "uw", "ux": "uw",
    "v": "v", "w": "w", "y": "y", "z": "z", "zh": "sh",
}

#: The 39 classes in label order.
PHONE_CLASSES: tuple[str, ...] = tuple(sorted({c for c in PHONE_FOLDING.values() if c is not None}))

#: The core test set: 24 TEST speakers, two men and one woman from each dialect region.
CORE_TEST_SPEAKERS: frozenset[str] = frozenset(
    {
        "MDAB0", "MWBT0", "FELC0",  # DR1
        "MTAS1", "MWEW0", "FPAS0",  # DR2
        "MJMP0", "MLNT0", "FPKT0",  # DR3
        "MLLL0", "MTLS0", "FJLM0",  # DR4
        "MBPM0", "MKLT0", "FNLP0",  # DR5
        "MCMJ0", "MJDH0", "FMGD0",  # DR6
        "MGRT0", "MNJM0", "FDHC0",  # DR7
        "MJLN0", "MPAM0", "FMLD0",  # DR8
    }
)

UTTERANCE_NAME = re.compile(r"(s[aix]\d+)\.wav", re.IGNORECASE)
"""Audio files of the corpus (``SX123.WAV``; not converted copies such as ``SX123.WAV.wav``)."""

LDC_SENTENCE = (
    "TIMIT is licensed from the Linguistic Data Consortium (LDC93S1, https://catalog.ldc.upenn.edu/LDC93S1) "
    "and cannot be downloaded"
)


def _child(folder: Path, name: str) -> Optional[Path]:
    """The sub-folder or file of ``folder`` called ``name`` in any letter case (None if absent)."""
    try:
        return next((p for p in folder.iterdir() if p.name.lower() == name.lower()), None)
    except OSError:
        return None


def read_phn(path: str) -> list[tuple[int, int, str]]:
    """``(start, end, phone)`` segments of a ``.PHN`` file, in sample offsets."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as error:
        raise SpeechDataError(f"Cannot read the TIMIT transcription {path} ({error}).") from None
    segments = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or int(parts[1]) < int(parts[0]):
            raise SpeechDataError(f"TIMIT transcription {path} line {number} is not 'START END PHONE' ({line.strip()!r}).")
        phone = parts[2].lower()
        if phone not in PHONE_FOLDING:
            raise SpeechDataError(f"TIMIT transcription {path} line {number} has the unknown phone {parts[2]!r}.")
        segments.append((int(parts[0]), int(parts[1]), phone))
    if not segments:
        raise SpeechDataError(f"TIMIT transcription {path} holds no phone segments.")
    return sorted(segments)


def phone_frame_labels(segments: list[tuple[int, int, str]], num_frames: int, hop: int) -> np.ndarray:
    """int64 ``[num_frames]``: the folded class of the segment holding sample ``i * hop``, else -100."""
    starts = np.array([s for s, _, _ in segments])
    ends = np.array([e for _, e, _ in segments])
    classes = np.array([
        PHONE_CLASSES.index(PHONE_FOLDING[p]) if PHONE_FOLDING[p] is not None else IGNORE_INDEX for _, _, p in segments
    ])
    centres = np.arange(num_frames) * hop
    index = np.searchsorted(starts, centres, side="right") - 1
    inside = (index >= 0) & (centres < ends[np.maximum(index, 0)])
    return np.where(inside, classes[np.maximum(index, 0)], IGNORE_INDEX).astype(np.int64)


class TIMIT(SpeechDataModule):
    """TIMIT frame-wise phone classification: 39 MFCC features and one of 39 phone classes per 10 ms frame.

    Batches: ``frames`` float32 ``[B, T, 39]`` and ``labels`` int64 ``[B, T]``, both padded to the
    longest utterance of the batch (labels with -100, which the loss and accuracy ignore).
    See the module docstring for features, labels and splits.

    Args:
        root: the corpus folder (holding ``TRAIN``/``TEST``, or ``TIMIT/TRAIN``...).
        test_set: ``"full"`` (every TEST speaker) or ``"core"`` (the 24 core test speakers).
        include_sa: keep the SA sentences (left out by default).
        batch_size: utterances per batch (Table VII: 8 for BPTT, 4 for e-prop).
        max_phn_overrun_ms: how far a ``.PHN`` may end past its audio before it counts as not
            belonging to it (a few TIMIT files end a sample or two late).
        **kwargs: every other argument of :class:`~lightning_local.data.speech.SpeechDataModule`
            (workers, ``val_fraction`` - a share of the TRAIN speakers -, seed, MFCC settings, cache).
    """

    class_names = PHONE_CLASSES
    dataset_name = "TIMIT"

    def __init__(
        self,
        root: Optional[str] = None,
        test_set: Literal["full", "core"] = "full",
        include_sa: bool = False,
        batch_size: int = 8,
        max_phn_overrun_ms: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, batch_size=batch_size, **kwargs)
        check_data_arguments({"test_set": (test_set, test_set in ("full", "core"), "'full' or 'core'")})
        self.test_set = test_set
        self.include_sa = include_sa
        self.max_phn_overrun_ms = max_phn_overrun_ms

    def corpus_folder(self) -> Path:
        """The folder holding ``TRAIN`` and ``TEST`` (any letter case) below ``root``."""
        root = Path(self.root or "").expanduser()
        if self.root:
            for candidate in (root, _child(root, "timit"), _child(root, "data")):
                if candidate is not None and _child(candidate, "train") and _child(candidate, "test"):
                    return candidate
        where = f"under {root}" if self.root else "(no --data.root given)"
        raise DatasetNotFoundError(
            f"TIMIT not found {where}: expected ROOT/[TIMIT/]TRAIN|TEST/DR<n>/<SPEAKER>/<UTT>.WAV|PHN; "
            f"{LDC_SENTENCE}, so pass --data.root DIR pointing to your licensed copy."
        )

    def _scan(self, split: Path) -> list[Utterance]:
        utterances = []
        for region in sorted(p for p in split.iterdir() if p.is_dir() and p.name.lower().startswith("dr")):
            for speaker in sorted(p for p in region.iterdir() if p.is_dir()):
                names = {p.name.lower(): p for p in speaker.iterdir()}
                for name in sorted(names):
                    match = UTTERANCE_NAME.fullmatch(name)
                    if match is None or (not self.include_sa and name.startswith("sa")):
                        continue
                    phn = names.get(f"{match.group(1)}.phn")
                    if phn is None:
                        raise SpeechDataError(
                            f"TIMIT recording {names[name]} has no transcription {match.group(1).upper()}.PHN next to it: "
                            "restore it from the corpus."
                        )
                    utterances.append(Utterance(str(names[name]), speaker.name.upper(), transcription=str(phn)))
        return utterances

    def find_utterances(self) -> tuple[list[Utterance], list[Utterance]]:
        corpus = self.corpus_folder()
        train, test = self._scan(_child(corpus, "train")), self._scan(_child(corpus, "test"))
        if self.test_set == "core":
            missing = sorted(CORE_TEST_SPEAKERS - {u.speaker for u in test})
            if missing:
                raise SpeechDataError(
                    f"The TIMIT core test set needs the full corpus, but {len(missing)} of its 24 speakers "
                    f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}) are not under {corpus}: "
                    "use --data.test_set full."
                )
            test = [u for u in test if u.speaker in CORE_TEST_SPEAKERS]
        return train, test

    def split_validation(self, train: list[Utterance]) -> tuple[list[Utterance], list[Utterance]]:
        """Whole speakers: ``val_fraction`` of the TRAIN speakers (at least one)."""
        return speaker_split(train, self.val_fraction, self.seed)

    def frame_labels(self, utterance: Utterance, num_frames: int) -> np.ndarray:
        """The folded phone class of every frame (``-100`` for ``q`` and unlabelled frames)."""
        try:
            info = soundfile.info(utterance.path)
        except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
            raise SpeechDataError(f"Cannot read the audio file {utterance.path} ({error}): fix or replace it.") from None
        segments = read_phn(utterance.transcription)
        end = max(e for _, e, _ in segments)
        if end > info.frames + self.max_phn_overrun_ms * info.samplerate / 1000:
            raise SpeechDataError(
                f"TIMIT transcription {utterance.transcription} runs to sample {end}, past the end of its audio "
                f"{utterance.path} ({info.frames} samples): it does not belong to this recording; restore both from the corpus."
            )
        _, hop, _ = self.settings.frame_sizes(info.samplerate)
        return phone_frame_labels(segments, num_frames, hop)
