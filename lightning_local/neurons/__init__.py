"""LIF neuron: pure step/scan functions and the surrogate spike derivative."""

from .lif import LIFParameters, LIFState, lif_sequence, lif_step
from .surrogate import SURROGATES, get_surrogate, spike

__all__ = ["LIFParameters", "LIFState", "lif_sequence", "lif_step", "SURROGATES", "get_surrogate", "spike"]
