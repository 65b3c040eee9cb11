"""Writing files atomically: results, caches and data files are never seen half-written.

A file is written to a temporary file in its destination folder and then moved over the
final name with :func:`os.replace` (atomic on one filesystem), so a reader, a concurrent
run or a crash sees either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable, Union


def atomic_write(path: Union[str, Path], write: Callable[[IO], object], binary: bool = False) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then move it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make results unreadable to others
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: Union[str, Path], text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return atomic_write(path, lambda handle: handle.write(text))


def replace_marked_block(text: str, start: str, end: str, body: str) -> str:
    """``text`` with ``body`` between its one ``start`` marker and the ``end`` marker after it (all else unchanged).

    For the README's generated blocks; raises ``ValueError`` when the markers are missing, repeated or out of order.
    """
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"README needs one '{start}' followed by one '{end}'")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{body}\n{end}{tail}"
