"""lightning-local: compare spiking-network learning rules of different locality."""
