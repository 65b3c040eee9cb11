"""The DataModules as the CLI and the Trainer see them."""

from __future__ import annotations

import inspect

import docstring_parser
import lightning.pytorch as pl
import pytest
import torch
from jsonargparse import ArgumentParser

from lightning_local.data import DVSGesture, EventDataModule, NMNIST, SaccadeDigits
from lightning_local.data.fsdd import FSDD
from lightning_local.data.speech import SpeechDataModule
from lightning_local.data.timit import TIMIT


@pytest.mark.parametrize("cls", [NMNIST, SaccadeDigits, DVSGesture, EventDataModule, FSDD, TIMIT, SpeechDataModule])
def test_every_init_arg_is_documented(cls):
    # The module's own arguments in its docstring (``**kwargs`` forwards to the base, documented there) ...
    documented = {param.arg_name.lstrip("*") for param in docstring_parser.parse(cls.__doc__).params}
    signature = inspect.signature(cls.__init__)
    own = [p for name, p in signature.parameters.items() if name != "self"]
    assert {p.name for p in own} <= documented
    assert all(p.annotation is not inspect.Parameter.empty for p in own if p.kind is not p.VAR_KEYWORD)
    # ... and every argument the command line offers (forwarded ones included) with a help text and a type.
    parser = ArgumentParser()
    parser.add_class_arguments(cls, "data")
    offered = {action.dest[len("data."):]: action for action in parser._actions if action.dest.startswith("data.")}
    assert {"root", "batch_size", "num_workers", "val_fraction", "seed"} <= set(offered)
    for name, action in offered.items():
        assert action.help, f"--data.{name} has no help text: document it in the docstring that defines it"


def test_jsonargparse_builds_a_module_with_properties(tmp_path):
    parser = ArgumentParser()
    parser.add_subclass_arguments(EventDataModule, "data")
    config = parser.parse_args(
        ["--data=lightning_local.data.SaccadeDigits", f"--data.root={tmp_path}", "--data.n_time_bins=7",
         "--data.downsample=2", "--data.max_samples_per_class=2"]
    )
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in 4.49
    data = instantiate(config).data
    assert isinstance(data, SaccadeDigits)
    assert (data.num_inputs, data.num_classes, data.num_steps) == (578, 10, 7)
    assert not any(tmp_path.iterdir())  # nothing is generated before prepare_data/setup


class _TinyClassifier(pl.LightningModule):
    def __init__(self, num_inputs: int, num_classes: int) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(num_inputs, num_classes)

    def _loss(self, batch):
        frames, labels = batch
        return torch.nn.functional.cross_entropy(self.layer(frames.mean(1)), labels)

    def training_step(self, batch, batch_idx):
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch))

    def test_step(self, batch, batch_idx):
        self.log("test_loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_fit_then_test_on_real_nmnist(nmnist_small, tmp_path):
    data = NMNIST(root=str(nmnist_small), n_time_bins=10, batch_size=16, download=False)
    model = _TinyClassifier(data.num_inputs, data.num_classes)
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=3, limit_val_batches=2, limit_test_batches=2, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, accelerator="cpu",
    )
    trainer.fit(model, datamodule=data)
    results = trainer.test(model, datamodule=data, verbose=False)
    assert torch.isfinite(torch.tensor(results[0]["test_loss"]))
