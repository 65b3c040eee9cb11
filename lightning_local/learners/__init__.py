"""Learner plugin interface and discovery."""

from .base import NEURON_SPACE, AutogradLearner, BatchUpdates, Learner, LearnerOptionError, LearnerStep, update_objective
from .registry import LEARNER_GROUP, UnknownNameError, available, build_learner, learner_class, learner_class_path

__all__ = [
    "NEURON_SPACE",
    "AutogradLearner",
    "BatchUpdates",
    "Learner",
    "LearnerOptionError",
    "LearnerStep",
    "update_objective",
    "LEARNER_GROUP",
    "UnknownNameError",
    "available",
    "build_learner",
    "learner_class",
    "learner_class_path",
]
