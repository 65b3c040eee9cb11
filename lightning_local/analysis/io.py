"""Where analysis results go and how they are written: atomically, as CSV, JSON and PNG.

Every file is first written to a temporary file in the destination folder and
then moved over the final name with :func:`os.replace`, so a reader (or a
crashed run) never sees a half-written result. Figures are drawn on a plain
:class:`matplotlib.figure.Figure` (Agg canvas), so no GUI backend is needed and
the global pyplot state is never touched.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import pandas as pd
from lightning.pytorch.utilities import rank_zero_info
from matplotlib.figure import Figure

from lightning_local.files import atomic_write, write_text_atomic

ANALYSIS_SUBDIR = "analysis"


def analysis_dir(trainer: "pl.Trainer", output_dir: Optional[str] = None) -> Path:
    """Folder for analysis results: ``output_dir`` if given, else ``<trainer.log_dir>/analysis``.

    Falls back to ``trainer.default_root_dir`` when the trainer has no logger.
    """
    if output_dir is not None:
        return Path(output_dir)
    root = trainer.log_dir or trainer.default_root_dir
    return Path(root) / ANALYSIS_SUBDIR


def write_text(path: Path, text: str) -> Path:
    """Atomically write ``text`` to ``path``."""
    return write_text_atomic(path, text)


def write_json(path: Path, data: Any) -> Path:
    """Atomically write ``data`` as indented JSON (NaN written as ``null``)."""
    return write_text(path, json.dumps(_json_safe(data), indent=2) + "\n")


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> Path:
    """Atomically write rows of dicts (or a DataFrame) as CSV with a header."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    return write_text(path, frame.to_csv(index=False))


def save_figure(figure: Figure, path: Path, dpi: int = 120) -> Path:
    """Atomically save ``figure`` as PNG."""
    return atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=dpi, bbox_inches="tight"), binary=True)


def report(message: str) -> None:
    """Print a one-line console summary (global rank zero only)."""
    rank_zero_info(message)


def _json_safe(value: Any) -> Any:
    """Replace NaN/inf floats by ``None`` so the JSON stays standard."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
