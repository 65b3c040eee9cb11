"""Feature extraction time per utterance, and what the feature cache saves.

    python benchmarks/speech_features.py [--timit DIR] [--fsdd DIR] [--limit N]

For each corpus: reading the audio (soundfile), MFCC + deltas (librosa), and loading the
cached ``.npy`` instead (with one BLAS thread, as the data modules extract); median and mean milliseconds per utterance over the first ``--limit``
recordings, and the seconds of the one-time librosa warm-up (first call in a process). The
cache lives in a temporary folder, so the user's cache is neither used nor changed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result, (time.perf_counter() - started) * 1000


def measure(name: str, paths: list[str]) -> None:
    with threadpool_limits(limits=1):  # as SpeechDataModule extracts
        _measure(name, paths)


def _measure(name: str, paths: list[str]) -> None:
    from lightning_local.data.speech import FeatureCache, MFCCSettings, mfcc_features, read_audio

    settings = MFCCSettings()
    _, warm_up = timed(lambda: mfcc_features(*read_audio(paths[0]), settings))
    reading, extracting, frames, durations = [], [], [], []
    for path in paths:
        (audio, rate), ms_read = timed(read_audio, path)
        features, ms_mfcc = timed(mfcc_features, audio, rate, settings)
        reading.append(ms_read)
        extracting.append(ms_mfcc)
        frames.append(len(features))
        durations.append(len(audio) / rate)
    cache = FeatureCache(settings)
    for path in paths:  # fill the cache
        cache.features(path)
    loading = [timed(FeatureCache(settings).features, path)[1] for path in paths]
    print(
        f"{name}: {len(paths)} utterances, median {statistics.median(durations):.2f} s / "
        f"{statistics.median(frames):.0f} frames; first call {warm_up / 1000:.1f} s (librosa warm-up)\n"
        f"  read audio      median {statistics.median(reading):7.2f} ms  mean {statistics.mean(reading):7.2f} ms\n"
        f"  MFCC + deltas   median {statistics.median(extracting):7.2f} ms  mean {statistics.mean(extracting):7.2f} ms\n"
        f"  cached .npy     median {statistics.median(loading):7.2f} ms  mean {statistics.mean(loading):7.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timit", type=Path, default=SHARED / "timit_sample")
    parser.add_argument("--fsdd", type=Path, default=SHARED / "fsdd")
    parser.add_argument("--limit", type=int, default=200, help="utterances per corpus")
    args = parser.parse_args()
    os.environ["LIGHTNING_LOCAL_CACHE"] = tempfile.mkdtemp(prefix="speech_features_")
    from lightning_local.data.fsdd import FSDD
    from lightning_local.data.timit import TIMIT

    if args.timit.exists():
        train, test = TIMIT(root=str(args.timit)).find_utterances()
        measure("TIMIT", [u.path for u in [*train, *test]][: args.limit])
    if args.fsdd.exists():
        train, test = FSDD(root=str(args.fsdd)).find_utterances()
        measure("FSDD", [u.path for u in [*train, *test]][: args.limit])


if __name__ == "__main__":
    main()
