"""Data choices that follow from the model, made in one place for the command line and the Python API.

Two init args of an event data module (:class:`~lightning_local.data.base.EventDataModule`) depend on the
model it feeds rather than on the data:

* ``layout``: a convolutional network takes image frames ``[T, P, H, W]``, so ``flat`` becomes ``image``
  (also for the base of a wrapper such as :class:`~lightning_local.data.backdoor.Backdoor`).
* ``sparse_input`` left at ``None`` (the default: "choose for me"): sparse training batches
  (:class:`~lightning_local.sparse_frames.SparseFrames`) are on for a CPU run of a fully connected network
  whose learning rule takes them (``Learner.sparse_input``: ``bptt``, ``fa``), with the frame cache on,
  ``unpack_on_device`` off and the ``flat`` layout; else off. Both train the same up to float rounding;
  sparse batches make a CPU step several times faster, and a GPU's dense projection is fast already. The
  base of a wrapper stays dense (the wrapper stamps its trigger on dense frames). An explicit value stands.

:func:`resolve_data_choices` decides, from the model's :class:`ModelFacts` and the module's init args. The
command line applies it to the parsed config before anything is built, so the run's ``config.yaml`` records
the choice; a data module that a Python script hands to ``Trainer.fit`` applies it at ``setup`` from the
trainer's model and accelerator (:meth:`~lightning_local.data.base.EventDataModule.follow_model`). Both
paths make the same choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

import lightning.pytorch as pl
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator, MPSAccelerator


@dataclass(frozen=True)
class ModelFacts:
    """What the data choices depend on.

    Attributes:
        convolutional: the network takes image frames (``--model.synapse conv``).
        sparse_rule: the learning rule takes sparse batches (``Learner.sparse_input``).
        on_cpu: the run trains on the CPU.
    """

    convolutional: bool
    sparse_rule: bool
    on_cpu: bool

    @classmethod
    def of(cls, model: pl.LightningModule, trainer: pl.Trainer) -> ModelFacts:
        """The facts of a built model (a :class:`~lightning_local.module.SpikingClassifier`) run by ``trainer``.

        A module without a ``network`` (whose ``input_shape`` tells) or a ``learner`` (whose ``sparse_input``
        tells) counts as fully connected with a rule that takes dense batches.
        """
        network, learner = getattr(model, "network", None), getattr(model, "learner", None)
        return cls(
            convolutional=len(getattr(network, "input_shape", ())) == 3,  # [C, H, W] frames
            sparse_rule=bool(getattr(learner, "sparse_input", False)),
            on_cpu=isinstance(trainer.accelerator, CPUAccelerator),
        )


def attached_facts(trainer: Optional[pl.Trainer]) -> Optional[ModelFacts]:
    """The facts of the model ``trainer`` runs; None without a trainer or a model (a module set up by hand)."""
    model = None if trainer is None else trainer.lightning_module
    return None if model is None else ModelFacts.of(model, trainer)


def runs_on_cpu(accelerator: str) -> bool:
    """Whether a Trainer given ``accelerator`` (its name) trains on the CPU: ``cpu``, or ``auto`` without a GPU.

    ``auto`` is Lightning's choice: CUDA, else Apple's MPS, else the CPU.
    """
    return accelerator == "cpu" or (
        accelerator == "auto" and not (CUDAAccelerator.is_available() or MPSAccelerator.is_available())
    )


def resolve_data_choices(init_args: Mapping[str, Any], facts: ModelFacts, wrapped: bool = False) -> dict[str, Any]:
    """The model-dependent init args of one event data module that are still to choose, with their values.

    Args:
        init_args: the module's init args (a parsed config's ``init_args``, or the module's own values);
            a module without ``layout`` or ``sparse_input`` (not an event module) keeps what it has.
        facts: the model's facts.
        wrapped: the module is a wrapper's base (it then stays dense).

    Returns:
        The init args to change, e.g. ``{"layout": "image", "sparse_input": False}``; empty if none.
    """
    choices: dict[str, Any] = {}
    layout = init_args.get("layout")
    if facts.convolutional and layout == "flat":
        choices["layout"] = layout = "image"
    if "sparse_input" in init_args and init_args.get("sparse_input") is None:
        choices["sparse_input"] = bool(
            facts.sparse_rule and facts.on_cpu and not facts.convolutional and not wrapped and layout in ("flat", None)
            and init_args.get("frame_cache", True) and not init_args.get("unpack_on_device", False)
        )
    return choices
