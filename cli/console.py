"""What the command prints besides results: progress bars and library messages kept out of the way."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from tqdm.auto import tqdm


class LineSafeProgressBar(TQDMProgressBar):
    """TQDM progress bar that ends its line when a run stops with an error (so the error has its own line)."""

    def on_exception(self, trainer: Trainer, pl_module: Any, exception: BaseException) -> None:
        for bar in (self._train_progress_bar, self._val_progress_bar, self._test_progress_bar, self._predict_progress_bar):
            if bar is not None and not bar.disable:
                bar.close()



class _AboveProgressBars(logging.StreamHandler):
    """Log handler that writes through ``tqdm.write``, so messages never land on a progress bar's line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging must never raise
            self.handleError(record)


_QUIET_LOGS = False


def quiet_library_messages() -> None:
    """Silence library lines that say nothing about this run, and keep the others off progress-bar lines."""
    # Warning filters are set on every call: pytest and warnings.catch_warnings() reset them.
    # Lightning's own pytree helper trips torch's LeafSpec deprecation; nothing for users to change.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
    # The CSV gets epoch means only, so the step-logging interval does not matter for short epochs.
    warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller than the logging interval")
    # main(args) is called from Python on purpose (tests, scripts) while sys.argv holds the caller's own arguments.
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended to run from within Python")
    global _QUIET_LOGS
    if _QUIET_LOGS:
        return
    _QUIET_LOGS = True
    lightning_log = logging.getLogger("lightning.pytorch")
    for handler in list(lightning_log.handlers):
        if type(handler) is logging.StreamHandler:
            replacement = _AboveProgressBars(handler.stream)
            replacement.setLevel(handler.level)
            replacement.setFormatter(handler.formatter)
            lightning_log.removeHandler(handler)
            lightning_log.addHandler(replacement)
    # Lightning advertises its cloud logger on every run; the seed is in the run's config.yaml.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )
    logging.getLogger("lightning.fabric.utilities.seed").addFilter(lambda record: "Seed set to" not in record.getMessage())
