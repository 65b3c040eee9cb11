"""Download a dataset through tonic's own dataset classes, with a clear failure message."""

from __future__ import annotations

import logging
import socket
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lightning_local.data.errors import DatasetNotFoundError, not_found_message

log = logging.getLogger(__name__)

DOWNLOAD_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes urllib.error.URLError, ConnectionError, socket.timeout
    RuntimeError,  # tonic: "File not found or corrupted." after an md5 mismatch
    EOFError,
    zipfile.BadZipFile,
    tarfile.TarError,
)
"""Exceptions that mean "the download did not work" (offline, blocked, corrupt archive)."""

SOCKET_TIMEOUT_S = 60.0


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Temporarily give sockets a default timeout, so a blocked network fails instead of hanging."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def download_with_tonic(
    tonic_cls: type, root: str | Path, *, name: str, layout: str, url: str
) -> None:
    """Let a tonic dataset class download and extract its train and test archives.

    Constructing ``tonic_cls(save_to=root, train=...)`` downloads into
    ``<root>/<tonic_cls.__name__>/`` when its files are absent.

    Args:
        tonic_cls: e.g. ``tonic.datasets.NMNIST``.
        root: Folder passed to tonic as ``save_to``.
        name: Dataset name for the error message.
        layout: Expected layout for the error message.
        url: Manual download page for the error message.

    Raises:
        DatasetNotFoundError: The download failed (offline, blocked, corrupt archive).
    """
    log.info("Downloading %s into %s with tonic", name, root)
    try:
        with _socket_timeout(SOCKET_TIMEOUT_S):
            for train in (True, False):
                tonic_cls(save_to=str(root), train=train)
    except DOWNLOAD_ERRORS as err:
        reason = f"the download failed ({type(err).__name__}: {err})"
        raise DatasetNotFoundError(not_found_message(name, root, layout, reason, url)) from err
