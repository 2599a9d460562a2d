"""Reduced-rank regression, the linear baseline (SPEC section 3).

Closed form, in two steps (Izenman 1975, with a ridge penalty):
  1. ridge:   W = (Xc^T Xc + lam I)^-1 Xc^T Yc, Xc and Yc the training data
     centred on their training means (the intercept is not penalised); lam
     is added to the sum-of-squares matrix, as the original program does;
  2. rank r:  W_r = W P_r, P_r = V_r V_r^T, V_r the top-r right singular
     vectors of the fitted values Xc W (from the eigenvectors of
     W^T Xc^T Xc W, D_out x D_out).
On the training data Xc W_r is therefore the best rank-r approximation
(Frobenius) of the ridge fit; r = min(D_in, D_out) gives ridge itself.
The factors are A = W V_r (D_in, r) and B = V_r^T (r, D_out); predictions are
(X - x_mean) @ A @ B + y_mean. SPEC: rank 21 from keypoints, 128 from movie
PCs, lam 1e-6. Float64 throughout (the matrices are at most a few hundred
wide).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve

__all__ = ["RRRFit", "reduced_rank_regression", "rrr_predict"]


@dataclass(frozen=True, eq=False)
class RRRFit:
    """A (D_in, r), B (r, D_out), x_mean (D_in,), y_mean (D_out,), float64."""

    A: np.ndarray
    B: np.ndarray
    x_mean: np.ndarray
    y_mean: np.ndarray

    @property
    def W(self) -> np.ndarray:
        """The rank-r weight matrix A @ B, (D_in, D_out)."""
        return self.A @ self.B

    @property
    def rank(self) -> int:
        return int(self.A.shape[1])


def _as_2d(name: str, a: np.ndarray) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (T, D), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite values")
    return arr


def reduced_rank_regression(
    X: np.ndarray, Y: np.ndarray, rank: int, lam: float = 1e-6
) -> RRRFit:
    """Fit Y ~ X @ A @ B + intercept on training frames.

    X: (T_train, D_in) inputs; Y: (T_train, D_out) targets; rank: 1 ..
    min(D_in, D_out); lam >= 0 ridge penalty on the centred sum of squares.
    """
    Xf, Yf = _as_2d("X", X), _as_2d("Y", Y)
    if Xf.shape[0] != Yf.shape[0]:
        raise ValueError(f"X has {Xf.shape[0]} frames but Y has {Yf.shape[0]}")
    if Xf.shape[0] < 2:
        raise ValueError("need at least 2 training frames")
    d_in, d_out = Xf.shape[1], Yf.shape[1]
    if int(rank) != rank or not 1 <= rank <= min(d_in, d_out):
        raise ValueError(
            f"rank must be an integer in 1..{min(d_in, d_out)} (min of input and output dims), got {rank}"
        )
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    x_mean, y_mean = Xf.mean(axis=0), Yf.mean(axis=0)
    Xc, Yc = Xf - x_mean, Yf - y_mean
    gram = Xc.T @ Xc
    W = _solve_psd(gram + lam * np.eye(d_in), Xc.T @ Yc)
    fit_gram = W.T @ gram @ W  # (Xc W)^T (Xc W)
    evals, evecs = np.linalg.eigh((fit_gram + fit_gram.T) / 2)
    V_r = evecs[:, np.argsort(evals)[::-1][: int(rank)]]
    return RRRFit(A=W @ V_r, B=V_r.T, x_mean=x_mean, y_mean=y_mean)


def _solve_psd(M: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """M^-1 rhs for symmetric PSD M; least squares when M is singular (lam = 0)."""
    try:
        factor = cho_factor(M)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(M, rhs, rcond=None)[0]
    return cho_solve(factor, rhs)


def rrr_predict(fit: RRRFit, X: np.ndarray) -> np.ndarray:
    """Predictions (T, D_out) float64 for inputs X (T, D_in)."""
    Xf = _as_2d("X", X)
    if Xf.shape[1] != fit.A.shape[0]:
        raise ValueError(f"X has {Xf.shape[1]} features, the fit expects {fit.A.shape[0]}")
    return ((Xf - fit.x_mean) @ fit.A) @ fit.B + fit.y_mean
