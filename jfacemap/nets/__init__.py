"""Flax NNX networks: the tracker U-Net and the neural encoder (later issues)."""
