"""The Trainer the command builds: Lightning's, with ``--trainer.limit_*_batches 1`` meaning one batch."""

from __future__ import annotations

from typing import Any, Optional, Union

from lightning.pytorch import Trainer

Limit = Optional[Union[int, float]]


class LocalTrainer(Trainer):
    """Lightning's ``Trainer`` whose ``limit_*_batches`` are typed ``int | float`` instead of ``float | int``.

    Lightning reads an int as a number of batches and a float as a fraction of the epoch, but
    annotates these arguments float-first, so a command-line parser turns ``1`` into ``1.0``:
    the whole epoch instead of one batch (a known Lightning footgun). With the int first,
    ``1`` is one batch and ``1.0`` the whole epoch, as Lightning documents. Everything else
    is Lightning's.
    """

    def __init__(
        self,
        *,
        limit_train_batches: Limit = None,
        limit_val_batches: Limit = None,
        limit_test_batches: Limit = None,
        limit_predict_batches: Limit = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            limit_train_batches=limit_train_batches,
            limit_val_batches=limit_val_batches,
            limit_test_batches=limit_test_batches,
            limit_predict_batches=limit_predict_batches,
            **kwargs,
        )
