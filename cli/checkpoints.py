"""Checkpoints given to the command: read safely, and checked against the model and data asked for."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace

from lightning_local.models.network import upgrade_layer_keys


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit the model and data asked for."""


def _plain(value: Any) -> Any:
    """Namespaces, tuples and dicts as plain lists/dicts, for comparing config values with saved ones."""
    if isinstance(value, Namespace):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_checkpoint(path: str) -> dict:
    """Read a Lightning checkpoint safely (tensors and plain types only), or raise :class:`CheckpointError`."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: pass the path of a .ckpt file written by `lightning-local fit`.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, empty, random or unsafe files raise many different types
        reason = re.split(r"(?<=\.) ", str(err).strip().splitlines()[0])[0][:120] if str(err).strip() else ""
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({': '.join(filter(None, (type(err).__name__, reason)))}): it is "
            "truncated, empty or not a checkpoint written by `lightning-local fit`."
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} holds no model weights (no state_dict): pass a checkpoint written by `lightning-local fit`.")
    return checkpoint


def conflicts_with(hparams: dict, model_flags: Any, learner: Any) -> list[str]:
    """Explicit ``--model.*`` values and ``--learner`` that disagree with a checkpoint's hyper-parameters, in words."""
    given = _plain(model_flags)
    conflicts = [
        f"--model.{key} {_plain(value)!r} but it was trained with {_plain(hparams[key])!r}"
        for key, value in given.items()
        if key in hparams and _plain(value) != _plain(hparams[key])
    ]
    saved_learner = hparams.get("learner")
    if isinstance(saved_learner, dict) and learner is not None:
        wanted = learner.get("class_path") if isinstance(learner, Namespace) else learner
        if wanted and wanted != saved_learner.get("class_path"):
            conflicts.append(f"--learner {wanted} but it was trained with {saved_learner.get('class_path')}")
    return conflicts


def check_fits(checkpoint: dict, path: str, datamodule: Any, model: torch.nn.Module) -> None:
    """Raise :class:`CheckpointError` (one line) if ``checkpoint``'s weights do not fit ``model`` built for ``datamodule``."""
    hparams = checkpoint.get("hyper_parameters") or {}
    for key, flag in (("num_inputs", "inputs per time step"), ("num_classes", "classes")):
        saved, here = hparams.get(key), getattr(datamodule, key, None)
        if saved is not None and here is not None and saved != here:
            raise CheckpointError(
                f"checkpoint {path} was trained with {saved} {flag}, but this data gives {here}: use the data "
                "settings it was trained with (dataset, --data.downsample)."
            )
    saved_state, own = upgrade_layer_keys(checkpoint["state_dict"]), model.state_dict()
    for key, value in saved_state.items():
        if key in own and tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"checkpoint {path} does not fit this model: {key} is {list(value.shape)} there and "
                f"{list(own[key].shape)} here: use the model and data settings it was trained with."
            )
    missing = sorted(set(own) - set(saved_state))
    unexpected = sorted(set(saved_state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}): "
            "use the model settings and learner it was trained with."
        )
