"""Tiny in-memory data, models and trainers shared by the analysis tests."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_local.module import SpikingClassifier

class FramesDataset(Dataset):
    """Frames ``[N, T, inputs]`` and labels, with a ``labels`` list like the real datasets."""

    def __init__(self, frames: torch.Tensor, labels: torch.Tensor) -> None:
        self.frames, self.labels = frames, [int(label) for label in labels]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.frames[index], self.labels[index]


class TinyEvents(pl.LightningDataModule):
    """Three separable classes of random binary frames (class c fires mostly in its own input block)."""

    num_inputs, num_classes, num_steps = 30, 3, 12

    def __init__(self, per_class: int = 24, batch_size: int = 8, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.per_class, self.batch_size, self.num_workers, self.seed = per_class, batch_size, num_workers, seed
        self.train_dataset = self.val_dataset = self.test_dataset = None

    def _split(self, seed: int) -> FramesDataset:
        generator = torch.Generator().manual_seed(seed)
        labels = torch.arange(self.num_classes).repeat_interleave(self.per_class)
        rate = torch.full((len(labels), self.num_steps, self.num_inputs), 0.05)
        for c in range(self.num_classes):
            rate[labels == c, :, c * 10 : (c + 1) * 10] = 0.5
        return FramesDataset((torch.rand(rate.shape, generator=generator) < rate).float(), labels)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            self.train_dataset, self.val_dataset, self.test_dataset = (self._split(self.seed + k) for k in range(3))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_dataset, batch_size=self.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_dataset, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_dataset, batch_size=self.batch_size)


def tiny_model(architecture: str = "rec", seed: int = 0) -> SpikingClassifier:
    """A small classifier whose layers fire from the start (weights scaled up)."""
    torch.manual_seed(seed)
    model = SpikingClassifier(TinyEvents.num_inputs, TinyEvents.num_classes, architecture=architecture,
                              hidden_sizes=(16, 8), lr=1e-2)
    with torch.no_grad():
        for layer in model.network.layers:
            layer.weight.mul_(3.0)
    return model


def tiny_trainer(tmp_path: Path, callbacks: list, max_epochs: int = 1, **kwargs) -> pl.Trainer:
    """A quiet CPU trainer logging to ``tmp_path`` (CSV logger, no checkpoints)."""
    return pl.Trainer(
        default_root_dir=tmp_path, max_epochs=max_epochs, callbacks=callbacks, accelerator="cpu",
        logger=pl.loggers.CSVLogger(tmp_path), enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, log_every_n_steps=1, **kwargs,
    )
