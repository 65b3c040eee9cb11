"""Time the generation of the built-in saccade-digits dataset (all 1,797 samples).

    python benchmarks/saccade_generation.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from lightning_local.data.saccade_digits import generate_saccade_digits


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        info = generate_saccade_digits(Path(folder))
        seconds = time.perf_counter() - start
        events = np.array([f.stat().st_size // 5 for f in Path(folder).glob("*/*/*.bin")])
    print(f"{info['n_train']} train + {info['n_test']} test recordings in {seconds:.1f} s; "
          f"events per recording: mean {events.mean():.0f}, min {events.min()}, max {events.max()}")


if __name__ == "__main__":
    main()
