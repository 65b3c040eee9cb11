"""The one thing every data module of the command line has in common: the sizes it hands the model."""

from __future__ import annotations

from typing import Optional

import lightning.pytorch as pl


class SpikingDataModule(pl.LightningDataModule):
    """Base of every data module ``lightning-local --data`` accepts.

    Subclasses yield batches ``(frames, labels)`` with ``frames`` float32 ``[B, T, num_inputs]``
    and either ``labels`` int64 ``[B]`` (one class per sequence) or ``[B, T]`` (one class
    per time step, ``-100`` where a step has no target). The CLI links ``num_inputs`` and
    ``num_classes`` into the model.
    """

    @property
    def num_inputs(self) -> int:
        """Features per time step."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        raise NotImplementedError

    @property
    def num_steps(self) -> Optional[int]:
        """Time steps per sample, or ``None`` when every sample keeps its own length (batches are padded)."""
        raise NotImplementedError
