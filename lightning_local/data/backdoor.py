"""Backdoor poisoning of any event DataModule (paper Table V).

:class:`Backdoor` wraps another :class:`EventDataModule` (``base``). A trigger
- a few input pixels switched on at *every* time step - is stamped on exactly
``round(poison_rate * n_pool)`` (rounded half up) training samples drawn with
``seed`` from the pool (``poison_from``: the SOURCE class's samples by default, or
every class but the target's), and those samples are relabelled as the TARGET
class (``relabel``; without it the attack is clean-label). The choices the paper
leaves open and our defaults are in docs/protocols.md, "Table V". The (source, target) pair is number ``pair`` of ``num_pairs``
*distinct* ordered pairs drawn from ``seed`` (:func:`distinct_pairs`), so the
paper's "5 random pairs" are ``pair=0..4`` with one seed - the same five pairs at
every poison rate - or given directly. Validation and test splits are the
base's, untouched. The attack is measured on
:attr:`Backdoor.triggered_test_dataset`: every test sample of the source class
with the trigger stamped on (labels kept); the
attack success rate (ASR) is the share of them predicted as the target, and the
*accuracy under attack* is the accuracy on :attr:`Backdoor.attacked_test_dataset`,
the whole test split with the trigger stamped on the source class's samples, see
:class:`lightning_local.analysis.BackdoorEvaluation`, which evaluates this set
at the end of ``trainer.test`` (the model's own test step keeps measuring
clean accuracy on the clean test split).

Command line::

    lightning-local fit --data lightning_local.data.backdoor.Backdoor \\
        --data.base lightning_local.data.nmnist.NMNIST --data.base.root DIR \\
        --data.poison_rate 0.5 --data.pair 3 \\
        --trainer.callbacks+=lightning_local.analysis.BackdoorEvaluation
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Optional, Union

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from lightning_local.data.base import EventDataModule
from lightning_local.data.choices import ModelFacts
from lightning_local.data.errors import DataArgumentError

TriggerPixel = Union[int, tuple[int, int, int]]
"""A trigger location: a flat frame index, or ``(polarity, y, x)``."""
PoisonPool = Literal["source", "all"]


def dataset_labels(dataset: Dataset) -> list[int]:
    """Labels of every sample, in index order, reading files only when the dataset has no ``labels``."""
    if isinstance(dataset, Subset):
        inner = dataset_labels(dataset.dataset)
        return [inner[i] for i in dataset.indices]
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        return [int(label) for label in labels]
    return [int(dataset[i][1]) for i in range(len(dataset))]  # type: ignore[arg-type]


def distinct_pairs(num_classes: int, count: int, seed: int = 0) -> list[tuple[int, int]]:
    """``count`` distinct ordered ``(source, target)`` pairs with ``source != target``, drawn from ``seed``.

    A draw without replacement from all ``num_classes * (num_classes - 1)`` ordered pairs
    (so ``2 -> 9`` and ``9 -> 2`` are different pairs); the same arguments give the same list.
    """
    available = [(s, t) for s in range(num_classes) for t in range(num_classes) if s != t]
    if not 1 <= count <= len(available):
        raise ValueError(f"Cannot draw {count} distinct (source, target) pairs from {num_classes} classes "
                         f"(between 1 and {len(available)}).")
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    return [available[i] for i in rng.choice(len(available), size=count, replace=False)]


def default_trigger(frame_shape: Optional[tuple[int, int, int]], num_inputs: int,
                    polarity: Union[int, Literal["both"]] = 0) -> list[int]:
    """A 2x2 block of pixels one pixel in from the bottom-right corner, in ``polarity`` (0, 1 or "both").

    Without a sensor layout: the last 4 inputs.
    """
    if frame_shape is None:
        return list(range(num_inputs - 4, num_inputs))
    polarities, height, width = frame_shape
    chosen = range(polarities) if polarity == "both" else [int(polarity)]
    return [flat_index((p, y, x), frame_shape) for p in chosen for y in (height - 3, height - 2) for x in (width - 3, width - 2)]


def flat_index(pixel: TriggerPixel, frame_shape: Optional[tuple[int, int, int]]) -> int:
    """Flat frame index of ``pixel``: ``p * H * W + y * W + x`` (the layout of :mod:`lightning_local.data.frames`)."""
    if isinstance(pixel, int):
        return pixel
    if frame_shape is None:
        raise ValueError("This data module has no (polarity, height, width) layout: give the trigger as flat indices.")
    p, y, x = (int(v) for v in pixel)
    polarities, height, width = frame_shape
    if not (0 <= p < polarities and 0 <= y < height and 0 <= x < width):
        raise ValueError(f"Trigger pixel {tuple(pixel)} lies outside the frame (polarity, y, x) < {frame_shape}.")
    return (p * height + y) * width + x


class Trigger:
    """Input locations set to ``value`` at every time step.

    Args:
        indices: flat indices into a frame ``[num_inputs]``.
        value: the value written there (1 = an event in every time bin).
        frame_dims: dimensions of one frame: 1 for flat frames, 3 for image frames ``[P, H, W]``.
    """

    def __init__(self, indices: Sequence[int], value: float = 1.0, frame_dims: int = 1) -> None:
        self.indices = torch.as_tensor(list(indices), dtype=torch.long)
        self.value = value
        self.frame_dims = frame_dims

    def apply(self, frames: torch.Tensor) -> torch.Tensor:
        """A copy of ``frames`` ``[..., T, *frame]`` with the trigger stamped on."""
        stamped = frames.clone()
        stamped.view(*frames.shape[: frames.dim() - self.frame_dims], -1)[..., self.indices] = self.value
        return stamped


class PoisonedDataset(Dataset):
    """``dataset`` with the samples in ``poisoned`` triggered and relabelled ``target`` (``None``: labels kept)."""

    def __init__(self, dataset: Dataset, poisoned: Sequence[int], trigger: Trigger, target: Optional[int]) -> None:
        self.dataset = dataset
        self.poisoned = frozenset(int(i) for i in poisoned)
        self.trigger = trigger
        self.target = target

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        frames, label = self.dataset[index]
        if index in self.poisoned:
            return self.trigger.apply(frames), label if self.target is None else self.target
        return frames, label

    @property
    def labels(self) -> list[int]:
        """Labels after poisoning (no file is read when the wrapped dataset knows its labels)."""
        relabelled = self.poisoned if self.target is not None else frozenset()
        return [self.target if i in relabelled else label for i, label in enumerate(dataset_labels(self.dataset))]


class TriggeredDataset(Dataset):
    """The samples ``indices`` of ``dataset`` with the trigger stamped on; labels are kept."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], trigger: Trigger) -> None:
        self.dataset = dataset
        self.indices = list(indices)
        self.trigger = trigger

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        frames, label = self.dataset[self.indices[index]]
        return self.trigger.apply(frames), label


def attacked_dataset(dataset: Dataset, source: int, trigger: Trigger) -> PoisonedDataset:
    """All of ``dataset`` with the trigger stamped on the ``source`` class's samples, labels kept (accuracy under attack)."""
    sources = [i for i, label in enumerate(dataset_labels(dataset)) if label == source]
    return PoisonedDataset(dataset, sources, trigger, None)


class Backdoor(EventDataModule):
    """Poisons the SOURCE class of a wrapped data module's training split with a trigger relabelled as TARGET.

    Args:
        base: the data module to poison (its ``num_inputs``, ``num_classes``, ``num_steps``,
            batch size and workers are used).
        poison_rate: share of the pool's training samples poisoned (0 ... 1).
        poison_from: the pool: ``"source"`` (default: the source class's training samples) or
            ``"all"`` (every training sample whose label is not the target).
        relabel: relabel the poisoned samples as the target (default; False: a clean-label attack).
        pair: which of the ``num_pairs`` distinct pairs drawn from ``seed`` to use, in
            ``0 .. num_pairs - 1`` (None: 0, unless ``source`` and ``target`` are given).
        num_pairs: how many distinct pairs the draw makes (the paper averages 5).
        source: class whose samples are poisoned (give it with ``target``, instead of ``pair``).
        target: label the poisoned samples get (give it with ``source``).
        trigger: pixels switched on at every step, as ``(polarity, y, x)`` triples or flat
            indices (None: a 2x2 block one pixel in from the bottom-right corner in ``trigger_polarity``).
        trigger_polarity: the default trigger's polarity: 0, 1 or ``"both"`` (8 inputs).
        trigger_value: value written at the trigger pixels in every time bin (1: one event per bin,
            the binary frames' maximum).
        seed: seed of the pair draw and of the choice of poisoned samples (splits and
            shuffling follow the base's own ``seed``). The paper averages 5 random pairs: run
            ``pair`` 0-4 with one seed.

    ``setup`` sets up the base and installs the poisoned training split as the base's
    ``train_dataset`` (the wrapper owns its base), so the base's loaders - batch size,
    workers, seeded shuffling - serve every split; ``val_dataset`` and ``test_dataset``
    are the base's own objects, untouched.

    Attributes:
        source, target: the classes in use.
        trigger: the :class:`Trigger`.
        poisoned_indices: indices into ``train_dataset`` that were poisoned (after ``setup``).
        triggered_test_dataset: triggered source-class test samples (after ``setup``).
        source_test_dataset: the same samples without trigger (the ASR's baseline; after ``setup``).
        attacked_test_dataset: the test split with the source class triggered (after ``setup``).
    """

    def __init__(
        self,
        base: EventDataModule,
        poison_rate: float = 0.1,
        poison_from: PoisonPool = "source",
        relabel: bool = True,
        pair: Optional[int] = None,
        num_pairs: int = 5,
        source: Optional[int] = None,
        target: Optional[int] = None,
        trigger: Optional[list[TriggerPixel]] = None,
        trigger_polarity: Union[int, Literal["both"]] = 0,
        trigger_value: float = 1.0,
        seed: int = 0,
    ) -> None:
        # Files, splits and loaders belong to ``base``; EventDataModule.__init__ (which
        # wants a dataset root) is skipped on purpose, only Lightning's is run.
        pl.LightningDataModule.__init__(self)
        if getattr(base, "sparse_input", False):  # the trigger is stamped on dense frames only
            raise DataArgumentError(
                "invalid data arguments: --data.base.sparse_input must be false with the Backdoor wrapper "
                "(poisoned samples are dense frames), got True."
            )
        self.seed = seed
        if not 0.0 <= poison_rate <= 1.0:
            raise ValueError(f"poison_rate must be in [0, 1] (got {poison_rate}).")
        if poison_from not in ("source", "all"):
            raise ValueError(f"poison_from must be 'source' (the source class's samples) or 'all' (got {poison_from!r}).")
        self.base = base
        self.poison_rate = poison_rate
        self.poison_from = poison_from
        self.relabel = relabel
        self.train_dataset: Optional[Dataset] = None
        self.val_dataset: Optional[Dataset] = None
        self.test_dataset: Optional[Dataset] = None
        self.pair, self.num_pairs = pair, num_pairs
        self.source, self.target = self._classes(pair, source, target)
        shape = self.frame_shape
        if trigger_polarity != "both" and not (isinstance(trigger_polarity, int) and 0 <= trigger_polarity < (shape[0] if shape else 2)):
            raise ValueError(f"trigger_polarity must be a polarity index or 'both' (got {trigger_polarity!r}).")
        indices = ([flat_index(pixel, shape) for pixel in trigger] if trigger is not None
                   else default_trigger(shape, self.num_inputs, trigger_polarity))
        if any(not 0 <= i < self.num_inputs for i in indices):
            raise ValueError(f"Trigger indices {indices} must lie in [0, {self.num_inputs}).")
        self.trigger = Trigger(indices, trigger_value, frame_dims=len(self.input_shape))
        self.poisoned_indices: list[int] = []
        self.triggered_test_dataset: Optional[Dataset] = None
        self.source_test_dataset: Optional[Dataset] = None
        self.attacked_test_dataset: Optional[Dataset] = None

    # ------------------------------------------------------------ delegation
    @property
    def num_inputs(self) -> int:
        return self.base.num_inputs

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(getattr(self.base, "input_shape", (self.num_inputs,)))

    @property
    def num_classes(self) -> int:
        return self.base.num_classes

    @property
    def num_steps(self) -> int:
        return self.base.num_steps

    @property
    def batch_size(self) -> int:
        return self.base.batch_size

    @property
    def num_workers(self) -> int:
        return self.base.num_workers

    @property
    def frame_shape(self) -> Optional[tuple[int, int, int]]:
        """``(polarities, height, width)`` of a frame, or None when the base has no sensor layout."""
        to_frames = getattr(self.base, "to_frames", None)
        if to_frames is None or getattr(to_frames, "num_inputs", None) != self.num_inputs:
            return None
        width, height, polarities = to_frames.frame_size
        return polarities, height, width

    # --------------------------------------------------------------- setup
    def _classes(self, pair: Optional[int], source: Optional[int], target: Optional[int]) -> tuple[int, int]:
        classes = self.num_classes
        if source is None and target is None:
            if not 0 <= (pair or 0) < self.num_pairs:
                raise ValueError(f"pair must be in [0, {self.num_pairs}) (got {pair}); num_pairs sets how many are drawn.")
            source, target = distinct_pairs(classes, self.num_pairs, self.seed)[pair or 0]
        elif source is None or target is None or pair is not None:
            raise ValueError(f"Give both source and target, or neither and a pair index (got pair={pair}, "
                             f"source={source}, target={target}).")
        if not (0 <= source < classes and 0 <= target < classes) or source == target:
            raise ValueError(f"source and target must be two different classes in [0, {classes}) (got {source}, {target}).")
        return source, target

    def prepare_data(self) -> None:
        """Let the base download or generate its data."""
        self.base.prepare_data()

    def follow_model(self, facts: ModelFacts, wrapped: bool = False) -> None:
        """The base takes the data choices that follow from the model, as a wrapper's base (it stays dense); a
        base that makes no such choices (no ``follow_model``, e.g. a plain data module of the user's) is left as it is."""
        follow = getattr(self.base, "follow_model", None)
        if follow is not None:
            follow(facts, wrapped=True)
        self.trigger.frame_dims = len(self.input_shape)  # image frames when the base switched to them

    def setup(self, stage: Optional[str] = None) -> None:
        """Set up the base, then poison its training split (once)."""
        if self.train_dataset is not None:
            return
        self._follow_attached_model()  # the base is not attached to the Trainer: it learns the model from here
        self.base.setup(stage)
        train, test = self.base.train_dataset, self.base.test_dataset
        if train is None or test is None:
            raise RuntimeError(f"{type(self.base).__name__}.setup() did not build train_dataset and test_dataset.")
        in_pool = (lambda label: label == self.source) if self.poison_from == "source" else (lambda label: label != self.target)
        pool = [i for i, label in enumerate(dataset_labels(train)) if in_pool(label)]
        count = int(np.floor(self.poison_rate * len(pool) + 0.5))
        rng = np.random.default_rng(np.random.SeedSequence(self.seed).spawn(2)[1])
        self.poisoned_indices = sorted(int(i) for i in rng.choice(pool, size=count, replace=False)) if count else []
        self.train_dataset = PoisonedDataset(train, self.poisoned_indices, self.trigger, self.target if self.relabel else None)
        self.base.train_dataset = self.train_dataset  # the base's loader (batching, seeded shuffle) serves it
        self.val_dataset = self.base.val_dataset
        self.test_dataset = test
        test_sources = [i for i, label in enumerate(dataset_labels(test)) if label == self.source]
        self.triggered_test_dataset = TriggeredDataset(test, test_sources, self.trigger)
        self.source_test_dataset = Subset(test, test_sources)
        self.attacked_test_dataset = attacked_dataset(test, self.source, self.trigger)

    def train_dataloader(self) -> DataLoader:
        """The base's training loader, over the poisoned training split."""
        return self.base.train_dataloader()

    def val_dataloader(self) -> DataLoader:
        """The base's (clean) validation loader."""
        return self.base.val_dataloader()

    def test_dataloader(self) -> DataLoader:
        """The base's (clean) test loader."""
        return self.base.test_dataloader()

    def triggered_test_dataloader(self) -> DataLoader:
        """Loader over :attr:`triggered_test_dataset` in order, with the base's batch size and workers."""
        if self.triggered_test_dataset is None:
            raise RuntimeError("Backdoor.setup() must run before requesting the triggered test loader.")
        return DataLoader(self.triggered_test_dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)
