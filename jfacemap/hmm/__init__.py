"""Gaussian HMMs fitted by gradient ascent on the exact log-likelihood (later issues)."""
