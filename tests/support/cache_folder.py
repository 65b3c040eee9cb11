"""What a frame-cache folder holds, for the data tests."""

from __future__ import annotations

from pathlib import Path


def cache_folder_files(cache_dir: Path) -> list[str]:
    """Names of the cache folder's files, its build locks aside."""
    return sorted(p.name for p in cache_dir.iterdir() if p.suffix != ".lock")
