"""Fixtures of the speech tests: the shared TIMIT sample and FSDD recordings, and small corpora built from them.

Built corpora are folders of symbolic links (or converted files) in pytest's temporary
directory: the licensed recordings are never copied into the repository.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def timit_sample() -> Path:
    """The shared NLTK TIMIT sample in the LDC layout (skip if absent)."""
    root = SHARED_DATA / "timit_sample"
    if not (root / "TIMIT" / "TRAIN").is_dir():
        pytest.skip(f"the TIMIT sample is not at {root}: this test needs the workplace's ../shared/data folder")
    return root


@pytest.fixture(scope="session")
def fsdd_root() -> Path:
    """The shared FSDD recordings (skip if absent)."""
    root = SHARED_DATA / "fsdd"
    if not (root / "recordings").is_dir():
        pytest.skip(f"FSDD is not at {root}: this test needs the workplace's ../shared/data folder")
    return root


def link_fsdd(source: Path, target: Path, speakers=("george", "jackson"), takes=range(5, 15), shift: int = 0) -> Path:
    """``target/recordings`` with links to ``source``'s recordings of ``speakers`` and ``takes`` (renumbered by ``shift``)."""
    folder = target / "recordings"
    folder.mkdir(parents=True)
    for path in (source / "recordings").iterdir():
        match = re.fullmatch(r"(\d)_(\w+)_(\d+)\.wav", path.name)
        if match and match.group(2) in speakers and int(match.group(3)) in takes:
            os.symlink(path, folder / f"{match.group(1)}_{match.group(2)}_{int(match.group(3)) + shift}.wav")
    return target


@pytest.fixture(name="link_fsdd", scope="session")
def link_fsdd_fixture():
    """:func:`link_fsdd`, for tests that build their own FSDD folder."""
    return link_fsdd


@pytest.fixture(scope="session")
def fsdd_small(fsdd_root, tmp_path_factory) -> Path:
    """200 real FSDD recordings: speakers george and jackson, takes 5-14 (no official test takes)."""
    return link_fsdd(fsdd_root, tmp_path_factory.mktemp("fsdd_small"))
