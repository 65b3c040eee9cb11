"""Train a few steps with each learner on 1 or N CPU processes and save each rank's weights.

Run as a script (never inside pytest: `strategy="ddp"` re-launches the command
it was started with). With N processes and per-rank batch b, the global batch is
the same N*b samples a single process sees with batch N*b (a non-shuffling
DistributedSampler interleaves the sequential indices; Lightning's own would
shuffle the training set), so the final weights must agree to float tolerance.

    python tests/support/ddp_train.py --learners bptt,eprop --architectures ff,rec --devices 2 --batch 4 --out DIR

writes DIR/<learner>_<architecture>/rank<k>.pt. All runs share one process
launch, because starting DDP workers dominates the cost of these tiny runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.callbacks import SaveRankWeights  # noqa: E402

from lightning_local.module import SpikingClassifier  # noqa: E402

STEPS, INPUTS, CLASSES, SAMPLES = 12, 40, 4, 48


class SequentialShards(pl.LightningDataModule):
    """The dataset in order; under DDP rank k gets samples k, k+N, k+2N, ..."""

    def __init__(self, dataset: TensorDataset, batch_size: int) -> None:
        super().__init__()
        self.dataset, self.batch_size = dataset, batch_size

    def train_dataloader(self) -> DataLoader:
        world = self.trainer.world_size
        sampler = DistributedSampler(self.dataset, world, self.trainer.global_rank, shuffle=False) if world > 1 else None
        return DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", default="bptt", help="comma-separated learner names")
    parser.add_argument("--architectures", default="ff", help="comma-separated: ff,rec")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--batch", type=int, required=True, help="per-process batch size")
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    frames = (torch.rand(SAMPLES, STEPS, INPUTS, generator=generator) < 0.3).float()
    labels = torch.randint(0, CLASSES, (SAMPLES,), generator=generator)
    dataset = TensorDataset(frames, labels)

    for learner in args.learners.split(","):
        for architecture in args.architectures.split(","):
            pl.seed_everything(0)
            model = SpikingClassifier(INPUTS, CLASSES, learner=learner, architecture=architecture, hidden_sizes=[16, 12])
            # Plain SGD: Adam's first steps are ~lr*sign(g) and would blow float rounding
            # in near-zero gradients up to differences of order lr.
            model.configure_optimizers = lambda model=model: torch.optim.SGD(model.parameters(), lr=0.1)
            trainer = pl.Trainer(
                accelerator="cpu",
                devices=args.devices,
                strategy="ddp" if args.devices > 1 else "auto",
                max_steps=args.train_steps,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                use_distributed_sampler=False,
                callbacks=[SaveRankWeights(str(args.out / f"{learner}_{architecture}"))],
            )
            trainer.fit(model, datamodule=SequentialShards(dataset, args.batch))


if __name__ == "__main__":
    main()
