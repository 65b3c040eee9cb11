"""The learner plugin interface: how a learning rule hooks into training.

A learning rule is a :class:`Learner` (an ``nn.Module``, so feedback matrices
and other state it registers as buffers are checkpointed, moved to the right
device and broadcast by DDP). :class:`~lightning_local.module.SpikingClassifier`
hands it every training batch through :meth:`Learner.training_step`.

Two ways to produce an update, both compatible with Lightning's optimizers,
gradient clipping/accumulation and DDP's gradient all-reduce:

* **autograd rules** (BPTT, feedback alignment) return a differentiable loss;
  Lightning calls ``backward`` on it.
* **rules that compute their own updates** (e-prop's forward-in-time traces,
  DECOLLE's per-layer per-step updates) accumulate ``delta`` tensors while they
  simulate the batch step by step with :meth:`SpikingNetwork.step` (nothing of
  length T needs to be kept), then return :func:`update_objective` - a scalar
  whose gradient *is* those updates. Lightning's backward then routes them
  through the same machinery, so DDP averages them across ranks.

Rules that must step the optimizer inside a sequence (e.g. per-time-step
DECOLLE) set :attr:`Learner.manual_optimization` and drive
``module.optimizers()`` themselves.

Learners are discovered through the ``lightning_local.learners`` entry-point
group (see :mod:`lightning_local.learners.registry`).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, NamedTuple, Optional

import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # pragma: no cover
    from ..models import NetworkOutput, SpikingNetwork
    from ..module import SpikingClassifier


#: The search space every built-in rule shares (``Learner.search_space``): each range holds our
#: settings and Table VII's (``../shared/PAPER.md``) for N-MNIST, DVS Gesture and TIMIT. The decays
#: are searched as time constants in steps on a log scale (``a = exp(-1/tau_syn)``: Table VII's
#: a = 0.05 ... 0.99 is tau_syn = 0.33 ... 99.5; b = 0.2 ... 0.95 is tau_mem = 0.62 ... 19.5), and
#: a config's ``alpha``/``beta`` is cleared when its time constant is tuned.
NEURON_SPACE: dict[str, dict] = {
    "model.lr": {"low": 1e-5, "high": 1e-2, "log": True},
    "model.tau_syn": {"low": 0.3, "high": 100.0, "log": True, "clears": ["model.alpha"]},
    "model.tau_mem": {"low": 0.6, "high": 100.0, "log": True, "clears": ["model.beta"]},
    "model.v_th": {"low": 0.1, "high": 2.0},
    "model.surrogate_scale": {"low": 2.0, "high": 100.0, "log": True},
    "model.output_init_gain": {"low": 0.5, "high": 20.0, "log": True},
    "data.init_args.batch_size": {"low": 4, "high": 256, "log": True},
}


@dataclass
class LearnerStep:
    """What a learner returns for one training batch.

    Attributes:
        loss: the task loss on this batch (logged as ``train_loss``).
        logits: class scores ``[B, classes]`` (for the training accuracy).
        objective: the tensor Lightning back-propagates; ``None`` when the
            learner already stepped the optimizer itself (manual optimization).
    """

    loss: Tensor
    logits: Tensor
    objective: Optional[Tensor]


class BatchUpdates(NamedTuple):
    """A rule's update of one batch with the weights held fixed (what one optimizer step descends).

    Attributes:
        loss: the task loss on the batch (detached).
        logits: class scores (or, for ``[B, T]`` labels, per-step predictions), detached.
        updates: ``(parameter, update)`` pairs; an optimizer step moves each parameter against its update,
            as against a gradient (for BPTT the update *is* the gradient).
    """

    loss: Tensor
    logits: Tensor
    updates: list[tuple[nn.Parameter, Tensor]]


class LearnerOptionError(ValueError):
    """A learning rule's option is out of range: the ``ValueError`` its ``__init__`` raised (one line on the CLI)."""


class Learner(nn.Module):
    """Base class of a learning rule (a plugin).

    Subclasses store every ``__init__`` argument under an attribute of the same
    name, so :meth:`spec` can record how to rebuild them from a checkpoint. A
    ``ValueError`` raised by a subclass's ``__init__`` (a bad option) reaches the
    caller as :class:`LearnerOptionError`, which the CLI prints as one line: the
    CLI builds the learner from its ``class_path`` itself, so no other code could catch it.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)  # keeps the signature (spec, the CLI's arguments) via __wrapped__
        def checked_init(self, *args: Any, **init_kwargs: Any) -> None:
            try:
                init(self, *args, **init_kwargs)
            except LearnerOptionError:
                raise
            except ValueError as error:
                raise LearnerOptionError(str(error)) from None

        cls.__init__ = checked_init

    #: Short name under which the rule is registered (the entry-point name).
    name: ClassVar[str] = ""
    #: True when :meth:`training_step` steps the optimizer itself.
    manual_optimization: ClassVar[bool] = False
    #: True when the rule's *default* options step the optimizer at every time step (online
    #: DECOLLE): our configs then give it the learning rate divided by T (configs/make_configs.py).
    steps_per_time_step: ClassVar[bool] = False
    #: Non-empty when the rule trains fully connected networks only: the reason, in one sentence (the refusal
    #: adds the installed rules that do train convolutional networks).
    linear_only: ClassVar[str] = ""
    #: True when a training step's memory does not grow with the sequence length T (nothing of length T is
    #: kept: online rules); the cost analysis's tests hold every rule to what it declares.
    memory_constant_in_T: ClassVar[bool] = False
    #: For a rule the paper does not cover: the paper's rule whose Table VII row (``../shared/PAPER.md``) its
    #: paper-preset configs take (``configs/paper/``). Empty: no paper configs (or, for the paper's rules, its own row).
    paper_row: ClassVar[str] = ""
    #: True when :meth:`training_step` takes :class:`~lightning_local.sparse_frames.SparseFrames`
    #: batches (it passes the frames to the network's forward only); others get them densified.
    sparse_input: ClassVar[bool] = False
    #: Hyper-parameters ``lightning-local tune`` searches for this rule: dotted ``fit`` config keys
    #: -> a range (``{"low", "high", "log"}``, ints when both bounds are ints) or ``{"choices": [...]}``
    #: (see :mod:`lightning_local.tuning.space`). Empty: the rule declares none, and ``tune`` asks for
    #: ``--space FILE``. Built-in rules start from :data:`NEURON_SPACE`.
    search_space: ClassVar[dict[str, dict]] = {}

    def check_network(self, network: "SpikingNetwork") -> None:
        """Refuse a network this rule cannot train (called before :meth:`attach`)."""
        if self.linear_only and not network.is_dense:
            raise ValueError(f"{self.name or type(self).__name__} trains fully connected networks only: {self.linear_only} "
                             f"Rules that train convolutional networks: {', '.join(conv_rules())}.")

    def attach(self, network: "SpikingNetwork") -> None:
        """Called once the network exists: create feedback matrices, traces, ... here."""

    def updates(self, network: "SpikingNetwork", frames: Tensor, labels: Tensor) -> BatchUpdates:
        """The rule's update of every weight it trains for one batch ``frames [B, T, ...]``, ``labels [B]``
        (or ``[B, T]``), with the weights held fixed: the one way a rule computes its updates.

        Rules that step the optimizer within a sequence (online DECOLLE, OTTT_O) return what the
        batch would give with no step in between (their per-batch variant)."""
        raise NotImplementedError

    def training_step(self, module: "SpikingClassifier", frames: Tensor, labels: Tensor) -> LearnerStep:
        """Produce the update for one batch; default: :meth:`updates` as :func:`update_objective`."""
        loss, logits, updates = self.updates(module.network, frames, labels)
        return LearnerStep(loss=loss, logits=logits, objective=update_objective(updates))

    def carried_state_bytes(self, network: "SpikingNetwork", frames: Tensor) -> int:
        """Bytes a training step on ``frames`` keeps outside autograd: the state carried from one time step to
        the next (neuron state, traces, blocks) and the accumulated updates. 0 for rules whose state autograd
        saves (BPTT, FA); the cost analysis adds autograd's saved tensors to this."""
        return 0

    def evaluate(self, module: "SpikingClassifier", frames: Tensor) -> "NetworkOutput":
        """Forward pass used for validation/test; default: the SNN itself."""
        return module.network(frames)

    def on_evaluation_batch(
        self, module: "SpikingClassifier", frames: Tensor, labels: Tensor, output: "NetworkOutput", stage: str
    ) -> None:
        """Hook: after each validation (``stage="val"``) or test (``"test"``) batch; may ``module.log`` extra metrics."""

    # Optional lifecycle hooks the module forwards to its learner.
    def on_train_epoch_start(self, module: "SpikingClassifier") -> None:
        """Hook: start of each training epoch."""

    def on_train_epoch_end(self, module: "SpikingClassifier") -> None:
        """Hook: end of each training epoch."""

    def on_validation_epoch_start(self, module: "SpikingClassifier") -> None:
        """Hook: start of each validation run."""

    def on_test_epoch_start(self, module: "SpikingClassifier") -> None:
        """Hook: start of each test run."""

    def on_fit_end(self, module: "SpikingClassifier") -> None:
        """Hook: end of ``fit``."""

    def spec(self) -> dict[str, Any]:
        """``{"class_path", "init_args"}`` that rebuilds this learner (stored in checkpoints)."""
        cls = type(self)
        names = [
            p.name
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": {n: getattr(self, n) for n in names}}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.spec()["init_args"].items())


class AutogradLearner(Learner):
    """A rule whose update is the gradient of a differentiable objective (BPTT, feedback alignment, conversion's ANN).

    Subclasses implement :meth:`objective`; :meth:`training_step` hands it to Lightning's backward and
    :meth:`updates` takes its gradient with autograd.
    """

    def objective(self, network: "SpikingNetwork", frames: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(task loss, logits, the tensor whose gradient is the update)``, all attached to the graph."""
        raise NotImplementedError

    def training_step(self, module: "SpikingClassifier", frames: Tensor, labels: Tensor) -> LearnerStep:
        loss, logits, objective = self.objective(module.network, frames, labels)
        return LearnerStep(loss=loss.detach(), logits=logits.detach(), objective=objective)

    def updates(self, network: "SpikingNetwork", frames: Tensor, labels: Tensor) -> BatchUpdates:
        loss, logits, objective = self.objective(network, frames, labels)
        params = [p for p in network.parameters() if p.requires_grad]
        grads = torch.autograd.grad(objective, params, allow_unused=True)
        pairs = [(p, torch.zeros_like(p) if g is None else g) for p, g in zip(params, grads)]
        return BatchUpdates(loss.detach(), logits.detach(), pairs)


def conv_rules() -> list[str]:
    """Short names of the installed rules that train convolutional networks (``linear_only`` empty)."""
    from .registry import LEARNER_GROUP, available, learner_class

    return [name for name in sorted(available(LEARNER_GROUP)) if not learner_class(name).linear_only]


def update_objective(updates: Iterable[tuple[nn.Parameter, Tensor]]) -> Tensor:
    """A scalar whose gradient with respect to each parameter equals its update.

    ``sum_p <p, delta_p>`` with ``delta_p`` detached has ``d/dp = delta_p``.
    Returning it from :meth:`Learner.training_step` lets Lightning's usual
    backward apply a hand-computed update (and lets DDP all-reduce it).
    """
    terms = [(param * delta.detach()).sum() for param, delta in updates]
    if not terms:
        raise ValueError("update_objective needs at least one (parameter, update) pair.")
    return torch.stack(terms).sum()
