"""Synthetic DVS Gesture recordings in tonic's on-disk layout (11 classes of moving blobs), for end-to-end runs.

No real DVS Gesture recordings are reachable here; this writes a stand-in with the same layout
and sensor so `lightning-local fit --data dvsgesture` runs end to end (accuracies on it say
nothing about the real dataset)::

    python benchmarks/synthetic_gestures.py /tmp/gestures
    lightning-local fit --config configs/dvsgesture/conv/bptt_ff.yaml --data.init_args.root /tmp/gestures --data.init_args.download false

Layout as tonic extracts it (and as tests/data/test_data_dvsgesture.py writes it):
ROOT/DVSGesture/ibmGestureTrain|ibmGestureTest/user<NN>_<lighting>/<label>.npy, each an
int64 [N, 4] array x, y, p, t (t in ms), sorted by t, on the 128x128 sensor.

A gesture is a bright Gaussian blob (radius ~8 px) moving for ~6 s; its edges fire events:
ON where the blob arrives (leading edge), OFF where it leaves (trailing edge), plus uniform
background noise. The class fixes the motion:
0 right, 1 left, 2 up, 3 down, 4 clockwise circle, 5 counter-clockwise circle,
6 diagonal up-right, 7 diagonal down-left, 8 horizontal wave (left-right oscillation),
9 vertical wave, 10 expanding-contracting ring at a fixed place.
Per sample: random start position, speed (+-25 %), radius, phase, event count and noise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SENSOR, DURATION_MS, SAMPLES_T = 128, 6000, 200


def path(label: int, rng: np.random.Generator, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blob centre (x, y) and radius at times ``s`` in [0, 1]."""
    speed = rng.uniform(0.75, 1.25)
    cx, cy = rng.uniform(40, 88, 2)
    radius = np.full_like(s, rng.uniform(6, 10))
    span = 70 * speed
    if label in (0, 1, 2, 3, 6, 7):
        direction = {0: (1, 0), 1: (-1, 0), 2: (0, -1), 3: (0, 1), 6: (0.7, -0.7), 7: (-0.7, 0.7)}[label]
        x = cx + direction[0] * span * (s - 0.5)
        y = cy + direction[1] * span * (s - 0.5)
    elif label in (4, 5):
        sign = 1 if label == 4 else -1
        phase = rng.uniform(0, 2 * np.pi)
        angle = phase + sign * 2 * np.pi * speed * 1.5 * s
        x, y = cx + 30 * np.cos(angle), cy + 30 * np.sin(angle)
    elif label in (8, 9):
        phase = rng.uniform(0, 2 * np.pi)
        wave = 30 * np.sin(phase + 2 * np.pi * 3 * speed * s)
        x, y = (cx + wave, cy + 0 * s) if label == 8 else (cx + 0 * s, cy + wave)
    else:
        x, y = cx + 0 * s, cy + 0 * s
        radius = 8 + 14 * (0.5 + 0.5 * np.sin(rng.uniform(0, 2 * np.pi) + 2 * np.pi * 2 * speed * s))
    return x, y, radius


def gesture(label: int, seed: int) -> np.ndarray:
    """Events ``[N, 4]`` (x, y, p, t in ms) of one recording of class ``label``."""
    rng = np.random.default_rng(seed)
    s = np.linspace(0, 1, SAMPLES_T)
    x, y, radius = path(label, rng, s)
    dx, dy, dr = np.gradient(x), np.gradient(y), np.gradient(radius)
    per_step = rng.integers(40, 70)
    events = []
    for k in range(SAMPLES_T):
        angle = rng.uniform(0, 2 * np.pi, per_step)
        ring = radius[k] * (1 + 0.15 * rng.standard_normal(per_step))
        ex, ey = x[k] + ring * np.cos(angle), y[k] + ring * np.sin(angle)
        # Leading edge (moving outward along the motion, or a growing ring) turns ON, trailing OFF.
        outward = np.cos(angle) * dx[k] + np.sin(angle) * dy[k] + dr[k]
        p = (outward > 0).astype(np.int64)
        t = np.full(per_step, k * DURATION_MS // SAMPLES_T) + rng.integers(0, DURATION_MS // SAMPLES_T, per_step)
        events.append(np.stack([np.round(ex), np.round(ey), p, t], 1).astype(np.int64))
    noise = rng.integers(200, 600)
    events.append(np.stack([rng.integers(0, SENSOR, noise), rng.integers(0, SENSOR, noise),
                            rng.integers(0, 2, noise), rng.integers(0, DURATION_MS, noise)], 1))
    events = np.concatenate(events)
    events = events[(events[:, 0] >= 0) & (events[:, 0] < SENSOR) & (events[:, 1] >= 0) & (events[:, 1] < SENSOR)]
    return events[np.argsort(events[:, 3], kind="stable")]


def write_split(folder: Path, users: range, seed: int) -> int:
    """One ``user<NN>_<lighting>/<label>.npy`` per user and class under ``folder``; returns the count."""
    count = 0
    for user in users:
        user_dir = folder / f"user{user:02d}_{'led' if user % 2 else 'fluorescent'}"
        user_dir.mkdir(parents=True, exist_ok=True)
        for label in range(11):
            np.save(user_dir / f"{label}.npy", gesture(label, seed * 100_000 + user * 100 + label))
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--train-users", type=int, default=24)
    parser.add_argument("--test-users", type=int, default=6)
    args = parser.parse_args()
    base = args.root / "DVSGesture"
    n_train = write_split(base / "ibmGestureTrain", range(1, args.train_users + 1), seed=1)
    n_test = write_split(base / "ibmGestureTest", range(args.train_users + 1, args.train_users + args.test_users + 1), seed=2)
    print(f"wrote {n_train} train and {n_test} test gestures under {base}")


if __name__ == "__main__":
    main()
