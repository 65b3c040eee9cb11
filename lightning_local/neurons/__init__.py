"""LIF neuron: pure step/scan functions and the surrogate spike derivative."""

from .backends import BACKENDS
from .lif import LIFParameters, LIFState, lif_sequence, lif_step
from .surrogate import SURROGATES, get_surrogate, spike

__all__ = ["BACKENDS", "LIFParameters", "LIFState", "lif_sequence", "lif_step", "SURROGATES", "get_surrogate", "spike"]
