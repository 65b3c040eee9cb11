"""LIF neuron: pure step/scan functions and the surrogate spike derivative."""

from .backends import BACKENDS
from .lif import LIFParameters, LIFState, heaviside, lif_sequence, lif_sequence_from, lif_step, lif_update, surrogate_spike
from .surrogate import SURROGATES, get_surrogate, spike

__all__ = ["BACKENDS", "LIFParameters", "LIFState", "heaviside", "lif_sequence", "lif_sequence_from", "lif_step", "lif_update", "surrogate_spike", "SURROGATES", "get_surrogate", "spike"]
