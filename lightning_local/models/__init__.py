"""Spiking networks built from the LIF neuron."""

from .network import Architecture, LIFLayer, NetworkOutput, SpikingNetwork, per_step_cross_entropy

__all__ = ["Architecture", "LIFLayer", "NetworkOutput", "SpikingNetwork", "per_step_cross_entropy"]
