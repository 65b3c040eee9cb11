"""The ``lightning-local`` command: a LightningCLI with short names for learners and data.

Examples::

    lightning-local fit --learner bptt                       # built-in saccade digits
    lightning-local fit --learner bptt --data nmnist --data.root DIR --model.architecture rec
    lightning-local fit --config configs/nmnist/bptt_ff.yaml
    lightning-local fit --ckpt_path last                     # resume the newest run in its folder
    lightning-local test --config configs/nmnist/bptt_ff.yaml --ckpt_path runs/.../last.ckpt

Every user error ends in one line ``lightning-local: error: ...`` and exit status 2.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn, Optional, Sequence

import torch
from jsonargparse import Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lightning_local.data.base import EventDataModule
from lightning_local.data.choices import ModelFacts, resolve_data_choices, runs_on_cpu
from lightning_local.data.errors import DataArgumentError, DatasetNotFoundError, EventDataError
from lightning_local.data.interface import SpikingDataModule
from lightning_local.learners import Learner, LearnerOptionError
from lightning_local.learners.registry import LEARNER_GROUP, UnknownNameError, available
from lightning_local.module import InvalidInputError, SpikingClassifier
from lightning_local.runs import (
    LAST_CHECKPOINT,
    Checkpoint,
    DivergenceStop,
    RunFolderError,
    TrainingDivergedError,
    discard_if_empty,
    latest_resumable,
    reserve_version,
    run_folder_of,
    trim_metrics,
    version_of,
)

from .arguments import DEFAULT_LEARNER, CommandLineError, OneLineArgumentParser, expand_short_names, prepare_argv
from .checkpoints import CheckpointError, check_fits, conflicts_with, load_checkpoint
from .console import LineSafeProgressBar, quiet_library_messages
from .subcommand import PROG, summary
from .trainer import LocalTrainer

__all__ = ["USER_ERRORS", "LightningLocalCLI", "build_cli", "expand_short_names", "main"]

DESCRIPTION = (
    "lightning-local: train and compare spiking neural networks (LIF neurons, feed-forward or recurrent) "
    "under learning rules of different locality (installed: " + ", ".join(sorted(available(LEARNER_GROUP))) + ") "
    "on event-camera data, with PyTorch Lightning. Start with `lightning-local fit --help`; "
    "`lightning-local tune --help` searches a rule's hyper-parameters, `lightning-local benchmark --help` runs a grid."
)


class TrainerArgumentError(ValueError):
    """A Trainer argument is out of range (e.g. ``--trainer.max_epochs -3``)."""


# Errors caused by the user's input: shown as one line, not a traceback.
USER_ERRORS = (
    UnknownNameError,
    DatasetNotFoundError,
    EventDataError,
    DataArgumentError,
    InvalidInputError,
    LearnerOptionError,
    CommandLineError,
    CheckpointError,
    TrainerArgumentError,
    RunFolderError,
    TrainingDivergedError,
)

RUN_VERSION_ENV = "LIGHTNING_LOCAL_RUN_VERSION"
"""Rank 0 tells the DDP processes it launches which run folder it reserved."""

OWN_COMMANDS = ("tune", "benchmark")
"""Subcommands that are not LightningCLI's: each is a module of this package (``cli/tune.py``, ...) with its own
argparse parser and a ``main(args)``. :func:`main` hands their command lines over before LightningCLI parses; the
LightningCLI parser only lists them (``lightning-local --help``)."""


def own_command(name: str) -> ModuleType:
    """The module of one of :data:`OWN_COMMANDS` (cheap to import: the heavy imports are inside its functions)."""
    return importlib.import_module(f"{__package__}.{name}")


class ListedCommandParser(OneLineArgumentParser):
    """The entry of an own command (``tune``, ``benchmark``) in the LightningCLI parser: listed, never parsed.

    :func:`main` dispatches a command line that starts with the command's name; one that reaches this parser
    has the name elsewhere (``lightning-local --config x.yaml tune``), and gets one line saying where it goes.
    """

    def parse_args(self, *args: Any, **kwargs: Any) -> NoReturn:
        name = self.subcommand
        raise CommandLineError(f"`{name}` must be the first word of the command line: {PROG} {name} [options] "
                               f"(see {PROG} {name} --help).")


def _is_ddp_child() -> bool:
    return os.environ.get("LOCAL_RANK", "0") != "0" and RUN_VERSION_ENV in os.environ


def _names(group: str) -> str:
    return ", ".join(sorted(available(group)))


class LightningLocalCLI(LightningCLI):
    """LightningCLI with a top-level ``--learner``, linked data sizes, checkpoints, run folders and divergence stop.

    On top of LightningCLI: ``fit`` reserves a fresh ``version_N`` folder atomically
    (:func:`~lightning_local.runs.reserve_version`); ``--ckpt_path last`` resumes the
    newest run in its own folder; a checkpoint is checked against explicit model flags
    and the data before use; ``validate``/``test``/``predict`` require ``--ckpt_path``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._argv = kwargs.get("args")
        self.run_dir: Optional[Path] = None
        self._reserved = False
        self._checkpoint: Optional[dict] = None
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            if self._reserved and self.run_dir is not None:
                discard_if_empty(self.run_dir)
            raise

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        kwargs.setdefault("description", DESCRIPTION)
        return super().init_parser(**kwargs)

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        """LightningCLI's subcommands, then :data:`OWN_COMMANDS` with their docstring's first line as help."""
        super()._add_subcommands(parser, **kwargs)
        # LightningCLI keeps the subcommands action to itself; jsonargparse records it on the parser
        subcommands = parser._subcommands_action
        for name in OWN_COMMANDS:
            help_line = summary(own_command(name).__doc__)
            subcommands.add_subcommand(name, ListedCommandParser(description=help_line), help=help_line)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_subclass_arguments(
            Learner, "learner", required=False, default={"class_path": DEFAULT_LEARNER},
            help=f"Learning rule: a short name ({_names(LEARNER_GROUP)}) or a class path; its options follow as "
                 "--learner.OPTION VALUE.",
        )
        parser.link_arguments("learner", "model.learner", apply_on="instantiate")
        parser.link_arguments("data.num_inputs", "model.num_inputs", apply_on="instantiate")
        parser.link_arguments("data.input_shape", "model.input_shape", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.add_lightning_class_args(Checkpoint, "checkpoint")
        parser.add_lightning_class_args(DivergenceStop, "divergence")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val_acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch}-{val_acc:.4f}",
                "data": None,  # set by prepare_argv, see there
            }
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After `fit`, evaluate the best checkpoint on the test split and print the metrics.",
        )

    # ------------------------------------------------------------------ checkpoints
    def _logger_args(self) -> Optional[Namespace]:
        """init_args of a logger that writes into ``save_dir/name/version_N`` (CSV, TensorBoard), else None."""
        logger = self.config[self.config.subcommand]["trainer"].get("logger")
        init = logger.get("init_args") if isinstance(logger, Namespace) else None
        if init is None or "save_dir" not in init or "version" not in init:
            return None
        return init

    def _versions_root(self) -> Optional[Path]:
        init = self._logger_args()
        return None if init is None else Path(init.save_dir) / (init.get("name") or "")

    def _explicit(self) -> Namespace:
        """What the user set (command line and config files), without defaults."""
        argv = self._argv if self._argv is not None else sys.argv[1:]
        explicit = self.parser.parse_args(argv, defaults=False)
        return explicit.get(self.config.subcommand) or Namespace()

    def _parse_ckpt_path(self) -> None:
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        path = config.get("ckpt_path")
        if path is None:
            if subcommand != "fit":
                raise CheckpointError(
                    f"`{subcommand}` needs a trained model: pass --ckpt_path PATH (a .ckpt file, e.g. "
                    "runs/lightning_logs/version_0/checkpoints/last.ckpt, or `last` for the newest run's last.ckpt)."
                )
            return
        if path == "last":
            root = self._versions_root()
            folder = latest_resumable(root) if root is not None else None
            if folder is None:
                raise RunFolderError(
                    f"--ckpt_path last: no run under {root} has {LAST_CHECKPOINT}: start a new run without "
                    "--ckpt_path, or pass the path of a .ckpt file."
                )
            path = config["ckpt_path"] = str(folder / LAST_CHECKPOINT)
        self._checkpoint = load_checkpoint(path)
        if subcommand != "fit":  # evaluation does not continue the checkpoint's callbacks; their folder is irrelevant
            warnings.filterwarnings("ignore", message=r"The dirpath has changed from")
        self._check_explicit_flags(path, self._checkpoint.get("hyper_parameters") or {})
        super()._parse_ckpt_path()

    def _check_explicit_flags(self, path: str, hparams: dict) -> None:
        """Explicit ``--model.*``/``--learner`` values must agree with the checkpoint (which would override them)."""
        explicit = self._explicit()
        saved_learner = hparams.get("learner")
        learner = explicit.get("learner")
        conflicts = conflicts_with(hparams, explicit.get("model") or {}, learner)
        if conflicts:
            raise CheckpointError(
                f"the command line contradicts checkpoint {path}: {'; '.join(conflicts)}: drop those flags or pass a "
                "checkpoint trained with them."
            )
        if isinstance(saved_learner, dict) and learner is None:
            # the top-level --learner (default bptt) would otherwise replace the checkpoint's rule
            self.config[self.config.subcommand]["learner"] = Namespace(
                class_path=saved_learner["class_path"], init_args=Namespace(**saved_learner.get("init_args", {}))
            )

    def _check_checkpoint_fits(self) -> None:
        """Stop with one line if the checkpoint's weights do not fit the model built for this data."""
        if self._checkpoint is None:
            return
        check_fits(self._checkpoint, self.config[self.subcommand]["ckpt_path"], self.datamodule, self.model)

    # ------------------------------------------------------------------ run folders
    @staticmethod
    def _choose_data_for_model(config: Namespace) -> None:
        """Make the data choices that follow from the model (:mod:`lightning_local.data.choices`) in the config.

        In the parsed config, before anything is built, so the run's config.yaml records them; every module of
        a wrapper chain (``data``, its ``base``, ...) gets its own.
        """
        facts = _model_facts(config)
        data, wrapped = config.get("data"), False
        while isinstance(data, Namespace) and isinstance(data.get("init_args"), Namespace):
            for key, value in resolve_data_choices(data.init_args, facts, wrapped).items():
                data.init_args[key] = value
            data, wrapped = data.init_args.get("base"), True

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        self._choose_data_for_model(config)
        init = self._logger_args()
        if init is None or config["trainer"].get("fast_dev_run"):
            return
        root = Path(init.save_dir) / (init.get("name") or "")
        if _is_ddp_child():
            init.version = init.version if init.version is not None else int(os.environ[RUN_VERSION_ENV])
            return
        resumed = run_folder_of(config["ckpt_path"], root) if self.subcommand == "fit" and config.get("ckpt_path") else None
        if init.version is None and resumed is not None:
            init.version = version_of(resumed)  # resume in place: same folder, same logger version
        if init.version is None:
            init.version, self.run_dir = reserve_version(root)
            self._reserved = True
        else:
            self.run_dir = root / (init.version if isinstance(init.version, str) else f"version_{init.version}")
        checkpoint = config.get("ckpt_path") if self.subcommand == "fit" else None
        if checkpoint and Path(checkpoint).resolve().parent == (self.run_dir / "checkpoints").resolve():
            trim_metrics(self.run_dir, int(self._checkpoint.get("epoch", -1)))
            # resuming in place writes into the run's own, non-empty checkpoints/ folder on purpose
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        if isinstance(init.version, int):
            os.environ[RUN_VERSION_ENV] = str(init.version)

    def _check_data(self) -> None:
        """Find, generate and check the data now, so a bad file stops the run before anything else starts.

        DDP processes launched by rank 0 skip this (rank 0 did it; their own ``setup``
        finds the verdicts cached).
        """
        if isinstance(self.datamodule, EventDataModule) and not _is_ddp_child():
            self.datamodule.prepare_data()
            self.datamodule.setup(self.subcommand)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        # Checked before the Trainer exists, so a user error is the only thing printed.
        self._check_checkpoint_fits()
        self._check_data()
        trainer_config = self._get(self.config_init, "trainer", default={})
        callbacks = trainer_config.get("callbacks") or []
        if trainer_config.get("enable_progress_bar", True) is not False and not any(
            isinstance(c, ProgressBar) for c in callbacks
        ):
            kwargs.setdefault("callbacks", [*callbacks, LineSafeProgressBar()])
        try:
            return super().instantiate_trainer(**kwargs)
        except MisconfigurationException as err:
            raise TrainerArgumentError(f"invalid trainer arguments: {str(err).splitlines()[0]}") from None

    def after_fit(self) -> None:
        if not self.config[self.subcommand].get("test_after_fit", False) or self.trainer.fast_dev_run:
            return
        best = self.trainer.checkpoint_callback.best_model_path if self.trainer.checkpoint_callback else ""
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)


def _model_facts(config: Namespace) -> ModelFacts:
    """The model's :class:`~lightning_local.data.choices.ModelFacts` as a parsed config states them."""
    learner = config.get("learner")
    path = learner.get("class_path") if isinstance(learner, Namespace) else learner
    module, _, name = str(path or DEFAULT_LEARNER).rpartition(".")
    rule = getattr(importlib.import_module(module), name, None)
    return ModelFacts(
        convolutional=(config.get("model") or Namespace()).get("synapse") == "conv",
        sparse_rule=bool(getattr(rule, "sparse_input", False)),
        on_cpu=runs_on_cpu(str(config["trainer"].get("accelerator") or "auto")),
    )


def build_cli(args: Optional[Sequence[str]] = None) -> LightningLocalCLI:
    """Parse ``args`` (default: ``sys.argv[1:]``) and run the subcommand; returns the CLI object."""
    quiet_library_messages()
    if args is None:
        # Rewrite sys.argv itself: DDP re-launches workers from it, and LightningCLI
        # warns when given both ``args`` and command-line arguments.
        sys.argv[1:] = prepare_argv(sys.argv[1:])
        argv = None
    else:
        argv = prepare_argv(list(args))
    return LightningLocalCLI(
        SpikingClassifier,
        SpikingDataModule,
        subclass_mode_data=True,
        seed_everything_default=0,
        args=argv,
        parser_class=OneLineArgumentParser,
        trainer_class=LocalTrainer,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={
            "max_epochs": 5,
            "logger": {"class_path": "lightning_local.runs.RunLogger", "init_args": {"save_dir": "runs"}},
        },
    )


def main(args: Optional[Sequence[str]] = None) -> None:
    """Entry point of the ``lightning-local`` console script (exit 2 with one line on bad input)."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in OWN_COMMANDS:  # a grid of runs or a search of fit runs: its own parser
        own_command(argv[0]).main(argv[1:])  # exits with the command's status
        return
    try:
        build_cli(args)
    except Exception as error:
        user_error = _user_error(error)
        if user_error is None:
            raise
        print(f"lightning-local: error: {user_error}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        _close_process_group()


def _close_process_group() -> None:
    """Destroy a DDP process group before the interpreter exits.

    Lightning destroys only NCCL groups at exit; a gloo group (DDP on CPUs) left to the
    interpreter's teardown can abort the process ("terminate called without an active
    exception", exit -6) after the run has finished and written its results.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _user_error(error: BaseException) -> Optional[BaseException]:
    """The outermost user error in ``error``'s chain (jsonargparse wraps errors raised while instantiating)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, USER_ERRORS):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


if __name__ == "__main__":  # pragma: no cover
    main()
