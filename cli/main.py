"""The ``lightning-local`` command: a LightningCLI with short names for learners and data.

Examples::

    lightning-local fit --learner bptt                       # built-in saccade digits
    lightning-local fit --learner bptt --data nmnist --data.root DIR --model.architecture rec
    lightning-local fit --config configs/nmnist/bptt_ff.yaml
    lightning-local test --config configs/nmnist/bptt_ff.yaml --ckpt_path runs/.../last.ckpt
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lightning_local.data.base import EventDataModule
from lightning_local.data.errors import DatasetNotFoundError, EventDataError
from lightning_local.learners import Learner
from lightning_local.learners.registry import DATASET_GROUP, LEARNER_GROUP, UnknownNameError, class_path
from lightning_local.module import InvalidInputError, SpikingClassifier

# Errors caused by the user's input: shown as one line, not a traceback.
USER_ERRORS = (UnknownNameError, DatasetNotFoundError, EventDataError, InvalidInputError)

DEFAULT_LEARNER = "lightning_local.plugins.bptt.BPTT"
DEFAULT_DATA = "lightning_local.data.saccade_digits.SaccadeDigits"

# flag -> (entry-point group, what to call it in errors)
SHORT_NAME_FLAGS = {
    "--learner": (LEARNER_GROUP, "learner"),
    "--data": (DATASET_GROUP, "dataset"),
    # the data module wrapped by a wrapper such as the backdoor DataModule
    "--data.base": (DATASET_GROUP, "dataset"),
    "--data.init_args.base": (DATASET_GROUP, "dataset"),
}


def _expand(flag: str, value: str) -> str:
    """Map a registered short name (case-insensitive) to its class path; leave paths alone."""
    if "." in value or value.startswith(("{", "[")) or value.endswith((".yaml", ".yml", ".json")):
        return value
    group, kind = SHORT_NAME_FLAGS[flag]
    return class_path(group, value.lower(), kind)


def expand_short_names(argv: Sequence[str]) -> list[str]:
    """Rewrite ``--learner eprop`` / ``--data=nmnist`` into jsonargparse class paths."""
    out: list[str] = []
    expect: Optional[str] = None
    for token in argv:
        if expect is not None:
            out.append(_expand(expect, token))
            expect = None
            continue
        flag, eq, value = token.partition("=")
        if flag in SHORT_NAME_FLAGS:
            if eq:
                out.append(f"{flag}={_expand(flag, value)}")
            else:
                out.append(token)
                expect = flag
            continue
        out.append(token)
    return out


class LightningLocalCLI(LightningCLI):
    """LightningCLI with a top-level ``--learner``, linked data sizes and a checkpoint group."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_subclass_arguments(Learner, "learner", required=False, default={"class_path": DEFAULT_LEARNER})
        parser.link_arguments("learner", "model.learner", apply_on="instantiate")
        parser.link_arguments("data.num_inputs", "model.num_inputs", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val_acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch}-{val_acc:.4f}",
                "data": {"class_path": DEFAULT_DATA},
            }
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After `fit`, evaluate the best checkpoint on the test split and print the metrics.",
        )

    def after_fit(self) -> None:
        if not self.config[self.subcommand].get("test_after_fit", False) or self.trainer.fast_dev_run:
            return
        best = self.trainer.checkpoint_callback.best_model_path if self.trainer.checkpoint_callback else ""
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)


def build_cli(args: Optional[Sequence[str]] = None) -> LightningLocalCLI:
    """Parse ``args`` (default: ``sys.argv[1:]``) and run the subcommand; returns the CLI object."""
    if args is None:
        # Rewrite sys.argv itself: DDP re-launches workers from it, and LightningCLI
        # warns when given both ``args`` and command-line arguments.
        sys.argv[1:] = expand_short_names(sys.argv[1:])
        argv = None
    else:
        argv = expand_short_names(list(args))
    return LightningLocalCLI(
        SpikingClassifier,
        EventDataModule,
        subclass_mode_data=True,
        seed_everything_default=0,
        args=argv,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={
            "max_epochs": 5,
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "runs"}},
        },
    )


def main(args: Optional[Sequence[str]] = None) -> None:
    """Entry point of the ``lightning-local`` console script (exit 2 with one line on bad input)."""
    try:
        build_cli(args)
    except USER_ERRORS as error:
        print(f"lightning-local: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    main()
