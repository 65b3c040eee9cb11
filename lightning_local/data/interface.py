"""What every data module of the command line has in common: the sizes it hands the model and its loaders."""

from __future__ import annotations

from typing import Callable, Optional

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, RandomSampler


class EpochShuffleSampler(RandomSampler):
    """A random order that depends only on ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every training epoch (also after resuming
    from a checkpoint, with the restored epoch), so epoch ``k`` sees the same order
    whether or not the run was interrupted before it. Being a ``RandomSampler``, it is
    replaced under DDP by Lightning's shuffling ``DistributedSampler``, which is
    seeded by ``seed_everything`` and the epoch in the same way.

    Args:
        data_source: The dataset.
        seed: Seed of the order.
    """

    def __init__(self, data_source: Dataset, seed: int) -> None:
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of epoch ``epoch``."""
        self.epoch = epoch

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.data_source))
        return iter(order.tolist())



class SpikingDataModule(pl.LightningDataModule):
    """Base of every data module ``lightning-local --data`` accepts.

    Subclasses yield batches ``(frames, labels)`` with ``frames`` float32 ``[B, T, *input_shape]``
    (``input_shape`` is ``(num_inputs,)`` for fully connected networks; event modules give
    ``(P, H, W)`` for convolutional ones with ``layout="image"``)
    and either ``labels`` int64 ``[B]`` (one class per sequence) or ``[B, T]`` (one class
    per time step, ``-100`` where a step has no target). The CLI links ``num_inputs``,
    ``input_shape`` and ``num_classes`` into the model.

    Subclasses set ``batch_size``, ``num_workers``, ``seed`` and, in ``setup``,
    ``train_dataset``/``val_dataset``/``test_dataset``; the loaders below are shared.
    """

    @property
    def num_inputs(self) -> int:
        """Features per time step."""
        raise NotImplementedError

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one frame: ``(num_inputs,)`` unless the module yields image frames ``(C, H, W)``."""
        return (self.num_inputs,)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        raise NotImplementedError

    @property
    def num_steps(self) -> Optional[int]:
        """Time steps per sample, or ``None`` when every sample keeps its own length (batches are padded)."""
        raise NotImplementedError

    def collate_fn(self) -> Optional[Callable]:
        """How samples become a batch (``None``: PyTorch's default stacking)."""
        return None

    def _loader(self, dataset: Optional[Dataset], shuffle: bool, collate_fn: Optional[Callable] = None) -> DataLoader:
        """A DataLoader over ``dataset`` with this module's batch size and workers (``collate_fn``: instead of :meth:`collate_fn`'s).

        The training order comes from :class:`EpochShuffleSampler`. Evaluation loaders
        under DDP shard the samples without padding (Lightning's own sampler would
        repeat samples to even out the shards, counting them twice in the metrics).
        """
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before requesting a dataloader.")
        sampler = None
        if shuffle:
            sampler = EpochShuffleSampler(dataset, self.seed)
        else:
            trainer = self.trainer
            if trainer is not None and trainer.world_size > 1:
                sampler = UnrepeatedDistributedSampler(
                    dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
                )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            # Page-locked batches copy to a GPU asynchronously; only worth it for the packed
            # frames a module unpacks on the device (float frames on CPU gain nothing).
            pin_memory=bool(getattr(self, "unpack_on_device", False)) and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_fn or self.collate_fn(),
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled (seeded) loader over ``train_dataset``."""
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Loader over ``val_dataset`` in file order."""
        return self._loader(self.val_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Loader over ``test_dataset`` in file order."""
        return self._loader(self.test_dataset, shuffle=False)
