"""Learner plugin interface and discovery."""

from .base import NEURON_SPACE, Learner, LearnerOptionError, LearnerStep, update_objective
from .registry import LEARNER_GROUP, UnknownNameError, available, build_learner, learner_class_path

__all__ = [
    "NEURON_SPACE",
    "Learner",
    "LearnerOptionError",
    "LearnerStep",
    "update_objective",
    "LEARNER_GROUP",
    "UnknownNameError",
    "available",
    "build_learner",
    "learner_class_path",
]
