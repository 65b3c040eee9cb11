"""Exceptions raised by the data package.

Every message is one sentence that names the offending file or folder and says
what is wrong, so that a CLI user can act on it without reading a traceback.
"""

from __future__ import annotations

from pathlib import Path


class EventDataError(ValueError):
    """An event recording is missing, corrupt, empty or inconsistent with its sensor."""


class DataArgumentError(ValueError):
    """A DataModule argument is out of range (e.g. ``batch_size 0``)."""


def check_data_arguments(rules: dict[str, tuple[object, bool, str]]) -> None:
    """Raise one :class:`DataArgumentError` naming every broken rule.

    ``rules`` maps a ``--data.NAME`` to ``(value, ok, what it must be)``, e.g.
    ``{"batch_size": (0, False, ">= 1")}``.
    """
    broken = [f"--data.{name} must be {rule}, got {value!r}" for name, (value, ok, rule) in rules.items() if not ok]
    if broken:
        raise DataArgumentError(f"invalid data arguments: {'; '.join(broken)}.")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's folder layout is absent and could not be downloaded."""


def not_found_message(name: str, root: str | Path, layout: str, reason: str, url: str) -> str:
    """Build the one-sentence "dataset not found" message.

    Args:
        name: Human-readable dataset name, e.g. ``"N-MNIST"``.
        root: The folder that was searched.
        layout: The expected layout below ``root``.
        reason: Why no download happened or why it failed.
        url: Where the user can download the dataset by hand.

    Returns:
        The message, e.g. ``"N-MNIST not found under /x (expected ...) and the
        download failed (...): download it from URL and pass --data.root"``.
    """
    return (
        f"{name} not found under {root} (expected {layout}) and {reason}: "
        f"download it from {url} and pass --data.root"
    )
