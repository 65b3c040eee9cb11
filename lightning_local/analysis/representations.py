"""Collecting layer representations (spikes) and batches for the analyses.

The representation of layer ``l`` for a batch is its spike train flattened over
time, ``[B, T * n_l]`` (time-major inside a row: step 0's neurons first), for
every layer of the network - hidden layers first, the output layer last -
exactly as :class:`~lightning_local.models.NetworkOutput` lists them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Optional

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from ..models import NetworkOutput, SpikingNetwork

if TYPE_CHECKING:  # pragma: no cover
    from ..module import SpikingClassifier


def layer_names(network: SpikingNetwork) -> list[str]:
    """``["hidden1", ..., "hiddenN", "output"]``, one name per layer."""
    hidden = len(network.layers) - 1
    return [f"hidden{i + 1}" for i in range(hidden)] + ["output"]


def flatten_spikes(output: NetworkOutput) -> list[Tensor]:
    """Per layer, the spikes ``[T, B, n]`` as rows ``[B, T * n]``."""
    return [s.transpose(0, 1).reshape(s.shape[1], -1) for s in output.spikes]


def evaluate(module: "SpikingClassifier", frames: Tensor) -> NetworkOutput:
    """The forward pass the module uses for validation/test (its learner's ``evaluate``)."""
    return module.learner.evaluate(module, frames)


def representations(module: "SpikingClassifier", frames: Tensor) -> list[Tensor]:
    """Layer representations ``[B, T * n_l]`` of ``module`` on ``frames`` ``[B, T, N]``."""
    return flatten_spikes(evaluate(module, frames))


def stage_dataloader(trainer: "pl.Trainer", stage: str) -> DataLoader:
    """The (first) dataloader the trainer is running for ``stage`` (``"validate"`` or ``"test"``)."""
    loaders: Any = trainer.test_dataloaders if stage == "test" else trainer.val_dataloaders
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0] if loaders else None
    if loaders is None:
        raise RuntimeError(f"The trainer has no {stage} dataloader to analyse.")
    return loaders


def batches(
    loader: Iterable[Any], device: torch.device, num_samples: Optional[int] = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(frames, labels)`` on ``device`` until ``num_samples`` examples were seen (all if None).

    Tensors are cloned, so batches read while inference mode is off are ordinary
    tensors that autograd accepts even if the loader itself was built elsewhere.
    """
    seen = 0
    for frames, labels in loader:
        if labels.dim() != 1:
            from ..module import InvalidInputError  # at run time: the module imports the analyses' callers

            raise InvalidInputError(
                f"The analyses grade one prediction per sample, but these labels have one class per time step "
                f"(shape {tuple(labels.shape)}: sequence labelling, e.g. TIMIT), which they do not support: "
                "run them on per-sample data such as --data fsdd."
            )
        if num_samples is not None:
            frames, labels = frames[: num_samples - seen], labels[: num_samples - seen]
        if frames.shape[0] == 0:
            break
        yield frames.to(device).clone(), labels.to(device).clone()
        seen += frames.shape[0]
        if num_samples is not None and seen >= num_samples:
            break


def rank_shard(dataset: Dataset, trainer: "pl.Trainer") -> Dataset:
    """This process's share of ``dataset`` (every ``world_size``-th sample) for loaders the callbacks build."""
    if trainer.world_size <= 1:
        return dataset
    return Subset(dataset, list(range(trainer.global_rank, len(dataset), trainer.world_size)))  # type: ignore[arg-type]


def all_reduce_sum(trainer: "pl.Trainer", tensors: Iterable[Tensor]) -> None:
    """Sum each tensor over processes, in place (no-op on one process)."""
    if trainer.world_size <= 1:
        return
    for tensor in tensors:
        reduced = trainer.strategy.reduce(tensor.to(trainer.strategy.root_device), reduce_op="sum")
        tensor.copy_(reduced.to(tensor.device))
