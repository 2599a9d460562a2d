"""The map between the features an HMM is fitted to ("model units") and the data ("data units").

`run_hmm` z-scores each feature with its training mean and SD before fitting
(unless zscore=False), so the fitted means C (K, D) and the shared variance
sigma2 are in z-scored units: z = (x - mean) / sd. Mapped back, state k
emits x ~ N(mean + sd * C[k], sigma2 * diag(sd^2)): the variance in data
units differs per feature (sd_d^2 sigma2), unless the transform is the
identity. Log-likelihoods change by the Jacobian of the map,
log p(x) = log p(z) - sum_d log sd_d per timepoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jfacemap.hmm.fit import HMMParams, log_likelihood_per_timepoint

__all__ = ["FeatureTransform", "data_log_likelihood_per_timepoint"]


@dataclass(frozen=True)
class FeatureTransform:
    """z = (x - mean) / sd per feature; mean, sd: (D,) float64 in data units (sd > 0).

    The identity (mean 0, sd 1) stands for a model fitted to the raw features.
    """

    mean: np.ndarray
    sd: np.ndarray

    def __post_init__(self):
        mean = np.asarray(self.mean, np.float64)
        sd = np.asarray(self.sd, np.float64)
        if mean.ndim != 1 or mean.shape != sd.shape:
            raise ValueError(f"mean and sd must be (D,) arrays of one shape, got {mean.shape} and {sd.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(sd)) and np.all(sd > 0)):
            raise ValueError("transform mean must be finite and sd finite and > 0")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "sd", sd)

    @classmethod
    def identity(cls, n_features: int) -> "FeatureTransform":
        """No change: the model is in data units."""
        return cls(np.zeros(n_features), np.ones(n_features))

    @property
    def is_identity(self) -> bool:
        return bool(np.all(self.mean == 0) and np.all(self.sd == 1))

    def to_model(self, x) -> np.ndarray:
        """Data (T, D) -> model units (T, D) float32."""
        return ((np.asarray(x, np.float64) - self.mean) / self.sd).astype(np.float32)

    def means_to_data(self, means) -> np.ndarray:
        """State means (K, D) in model units -> data units, float64."""
        return self.mean + self.sd * np.asarray(means, np.float64)

    def variance_to_data(self, sigma2: float) -> np.ndarray:
        """Shared model variance () -> each feature's emission variance (D,) in data units squared."""
        return float(sigma2) * self.sd**2

    @property
    def log_jacobian(self) -> float:
        """-sum_d log sd_d: add to a log-likelihood per timepoint in model units to get it in data units."""
        return float(-np.sum(np.log(self.sd)))


def data_log_likelihood_per_timepoint(params: HMMParams, transform: FeatureTransform, sequences) -> float:
    """Log-likelihood of data-unit sequences (list of (T_i, D), or one array) under a model fitted
    in the transform's model units: nats per timepoint of the data, comparable across transforms."""
    seqs = [sequences] if isinstance(sequences, np.ndarray) else list(sequences)
    return log_likelihood_per_timepoint(params, [transform.to_model(s) for s in seqs]) + transform.log_jacobian
