"""Prediction targets from neural activity (SPEC section 3, "Targets").

Each neuron is z-scored; the z-scored activity (neurons x time) is reduced by
SVD to 128 components U (neurons x k), S (k,), V (time x k); the encoders
predict Y = V S and the predicted activity is Yhat @ U^T. With fewer than 200
neurons the neurons themselves are the targets.

The SVD never forms the neurons x neurons matrix when neurons outnumber
frames: small problems (min(neurons, frames) <= 4096) use the eigen-
decomposition of the smaller Gram matrix (X X^T or X^T X, float64, exact:
`jfacemap.encode.svd.top_components`, shared with the movie PCs);
big ones (the paper's 50,000 neurons x 21,600 frames) a randomized SVD
(Halko et al. 2011: Gaussian sketch, power iterations with re-orthonormal-
isation, exact SVD of the small projected matrix), float32 for the big
products. Signs are fixed so that each column of U has its largest-magnitude
entry positive (`jfacemap.encode.svd.fix_signs`).
"""

from __future__ import annotations

import numpy as np

from jfacemap.encode.svd import fix_signs, top_components
from jfacemap.series import zscore as zscore_series

__all__ = ["zscore", "neural_svd", "prediction_targets", "predicted_activity"]

_EXACT_MAX_SIDE = 4096
_CHUNK_ELEMENTS = 1 << 24  # ~128 MB of float64 work per chunk of neurons


def _time_last(spks: np.ndarray, axis: int) -> np.ndarray:
    arr = np.asarray(spks)
    if arr.ndim != 2:
        raise ValueError(f"neural activity must be 2-D (neurons, time), got shape {arr.shape}")
    if axis not in (0, 1, -1, -2):
        raise ValueError(f"axis must be 0 or 1 for 2-D activity, got {axis}")
    return arr if axis in (1, -1) else arr.T


def zscore(
    spks: np.ndarray, axis: int = 1, train_idx: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-score each neuron along time (`jfacemap.series.zscore`, a chunk of neurons at a time:
    the paper's 50,000 x 21,600 recording is 4 GB in float32, twice that as float64).

    spks: (n_neurons, T) when axis=1 (time along `axis`); train_idx: optional
    frame indices whose mean and s.d. (ddof=0) are used, else all frames.
    Returns (spks_z float32 in the input's layout, mean (n_neurons,) float64,
    std (n_neurons,) float64). A constant neuron (s.d. 0) keeps std = 1 in the
    output, so its z-scored trace is all zeros (it carries no signal and
    contributes nothing to the PCs). Non-finite activity raises ValueError.
    """
    x = _time_last(spks, axis)
    n_neurons, n_time = x.shape
    if n_neurons == 0 or n_time == 0:
        raise ValueError(f"neural activity is empty: shape {x.shape}")
    cols = None if train_idx is None else np.asarray(train_idx, dtype=np.int64)
    if cols is not None and (cols.size == 0 or cols.min() < 0 or cols.max() >= n_time):
        raise ValueError(f"train_idx must be non-empty frame indices in [0, {n_time})")
    out = np.empty((n_neurons, n_time), dtype=np.float32)
    mean = np.empty(n_neurons)
    std = np.empty(n_neurons)
    step = max(1, _CHUNK_ELEMENTS // n_time)
    for a in range(0, n_neurons, step):
        rows = np.asarray(x[a : a + step], dtype=np.float64)
        if not np.all(np.isfinite(rows)):
            bad = a + int(np.argmax(~np.all(np.isfinite(rows), axis=1)))
            raise ValueError(f"neural activity has non-finite values (first in neuron {bad})")
        out[a : a + step], mean[a : a + step], std[a : a + step] = zscore_series(rows, axis=1, idx=cols)
    return (out if axis in (1, -1) else out.T), mean, std


def _randomized_svd(
    X: np.ndarray, k: int, n_oversample: int, n_power_iter: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (U, S) of X (N, T) by a randomized range finder."""
    X32 = np.asarray(X, dtype=np.float32)
    n_sketch = min(k + n_oversample, *X32.shape)
    rng = np.random.default_rng(seed)
    omega = rng.standard_normal((X32.shape[1], n_sketch)).astype(np.float32)
    Q, _ = np.linalg.qr(X32 @ omega)
    for _ in range(n_power_iter):
        # Re-orthonormalise on both sides so small singular directions survive float32.
        Z, _ = np.linalg.qr(X32.T @ Q)
        Q, _ = np.linalg.qr(X32 @ Z)
    B = (Q.T @ X32).astype(np.float64)  # (n_sketch, T)
    Ub, S, _ = np.linalg.svd(B, full_matrices=False)
    return Q.astype(np.float64) @ Ub[:, :k], S[:k]


def neural_svd(
    spks_z: np.ndarray,
    n_components: int = 128,
    train_idx: np.ndarray | None = None,
    method: str = "auto",
    n_oversample: int = 64,
    n_power_iter: int = 4,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top components of z-scored activity.

    spks_z: (n_neurons, T). k = min(n_components, n_neurons, n_frames used).
    With train_idx the decomposition uses those frames only (U, S from train
    data) and V covers all T frames: V = spks_z^T U / S, orthonormal on the
    train rows only. method: "exact", "randomized" or "auto" (exact when
    min(n_neurons, n_frames) <= 4096). Returns U (n_neurons, k) float32,
    S (k,) float64, V (T, k) float32; targets are Y = V * S = spks_z^T U.
    """
    X_all = np.asarray(spks_z)
    if X_all.ndim != 2 or X_all.size == 0:
        raise ValueError(f"spks_z must be non-empty (n_neurons, T), got shape {X_all.shape}")
    if int(n_components) != n_components or n_components < 1:
        raise ValueError(f"n_components must be a positive integer, got {n_components}")
    X = X_all if train_idx is None else X_all[:, np.asarray(train_idx, dtype=np.int64)]
    if X.shape[1] == 0:
        raise ValueError("train_idx selects no frames")
    k = int(min(n_components, *X.shape))
    if method == "auto":
        method = "exact" if min(X.shape) <= _EXACT_MAX_SIDE else "randomized"
    if method == "exact":  # float64 throughout; a zero singular value keeps its (near-)zero column
        S, Ut = top_components(X.T, k, drop_null=False, dtype=np.float64)
        U = Ut.T
    elif method == "randomized":
        U, S = _randomized_svd(X, k, n_oversample, n_power_iter, seed)
    else:
        raise ValueError(f"method must be 'auto', 'exact' or 'randomized', got {method!r}")
    U = fix_signs(U.T).T  # before V: V's signs follow U's
    # Project every frame (not only train ones); float32 activity stays float32 in the big product.
    if X_all.dtype == np.float32:
        Y = (X_all.T @ U.astype(np.float32)).astype(np.float64)
    else:
        Y = np.asarray(X_all, dtype=np.float64).T @ U
    V = Y / np.where(S > 0, S, 1.0)
    return U.astype(np.float32), S, V.astype(np.float32)


def prediction_targets(
    spks_z: np.ndarray,
    n_components: int = 128,
    min_neurons_for_pcs: int = 200,
    train_idx: np.ndarray | None = None,
    **svd_kwargs,
) -> tuple[np.ndarray, np.ndarray | None]:
    """What the encoders predict.

    spks_z: (n_neurons, T) z-scored. With at least `min_neurons_for_pcs`
    neurons: (Y = V S (T, k) float32, U (n_neurons, k) float32) from
    `neural_svd`; with fewer: (Y = spks_z^T (T, n_neurons) float32, None).
    """
    X = np.asarray(spks_z)
    if X.ndim != 2:
        raise ValueError(f"spks_z must be (n_neurons, T), got shape {X.shape}")
    if X.shape[0] < min_neurons_for_pcs:
        return np.ascontiguousarray(X.T, dtype=np.float32), None
    U, S, V = neural_svd(X, n_components, train_idx=train_idx, **svd_kwargs)
    return (V * S).astype(np.float32), U


def predicted_activity(Yhat: np.ndarray, U: np.ndarray | None) -> np.ndarray:
    """Predicted activity (n_neurons, T') from predicted targets Yhat (T', k):
    Yhat @ U^T transposed, or Yhat^T when the targets were the neurons (U None)."""
    Yh = np.asarray(Yhat)
    if U is None:
        return Yh.T
    if Yh.ndim != 2 or Yh.shape[1] != U.shape[1]:
        raise ValueError(f"predictions of shape {Yh.shape} do not match U with {U.shape[1]} components")
    return U @ Yh.T
