"""The up-front check of every recording, and the cache that lets later runs skip it.

A DataModule reads every file once at ``setup`` (see
:meth:`~lightning_local.data.base.EventDataModule.setup`), so a corrupt file stops
the run before training instead of an hour into an epoch. The verdict for each file
(good, or the one-line reason it is bad) is stored per check settings in
``<cache>/validated/<settings-hash>.json`` together with the file's size and
modification time; a later run re-reads only files that changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from lightning_local.files import write_text_atomic

CACHE_ENV = "LIGHTNING_LOCAL_CACHE"
CHECK_VERSION = 1
"""Bump when the checks change, so cached verdicts of older checks are not trusted."""


def cache_root() -> Path:
    """``$LIGHTNING_LOCAL_CACHE``, or ``~/.cache/lightning_local`` without that variable."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/lightning_local").expanduser()


class CheckCache:
    """Verdicts of the file check for one set of check settings, keyed by path, size and mtime.

    Args:
        settings: Everything the verdict depends on besides the file itself (reader,
            sensor, number of time bins, size cap, ...); JSON-serialisable.

    Attributes:
        path: The JSON file holding the verdicts.
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        blob = json.dumps({"check_version": CHECK_VERSION, **settings}, sort_keys=True, default=str)
        self.path = cache_root() / "validated" / f"{hashlib.sha256(blob.encode()).hexdigest()[:20]}.json"
        self._entries: dict[str, list] = {}
        self._dirty = False
        try:
            self._entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self._entries = {}

    @staticmethod
    def _stamp(path: str) -> list[int]:
        stat = os.stat(path)
        return [stat.st_size, stat.st_mtime_ns]

    def lookup(self, path: str) -> tuple[bool, str | None]:
        """``(known, error)``: whether ``path`` was checked in its present state, and its error (None = good)."""
        entry = self._entries.get(path)
        try:
            if entry is not None and entry[:2] == self._stamp(path):
                return True, entry[2]
        except OSError:
            pass
        return False, None

    def store(self, path: str, error: str | None) -> None:
        """Remember the verdict for ``path`` as it is now (missing files are not remembered)."""
        try:
            self._entries[path] = [*self._stamp(path), error]
        except OSError:
            return
        self._dirty = True

    def save(self) -> None:
        """Write the verdicts atomically (if anything changed); an unwritable cache is not an error."""
        if not self._dirty:
            return
        try:
            write_text_atomic(self.path, json.dumps(self._entries))
        except OSError:
            return
        self._dirty = False
