"""How well is neural activity predicted.

  - variance explained per neuron on test frames (the paper's Eq. 1);
  - explainable variance by peer prediction: each spatial half of the
    population predicted from the other half's PCs, the ceiling for any
    behavioural model;
  - normalised variance explained = VE / explainable VE;
  - cumulative variance explained across neural PCs (dimensionality of the
    prediction).
Pure functions over arrays; nothing here touches files.
"""

from __future__ import annotations

import numpy as np

from jfacemap.errors import JfacemapError

from .align import Split
from .linear import reduced_rank_regression, rrr_predict
from .neural_pcs import neural_svd, zscore

__all__ = [
    "variance_explained", "spatial_groups", "peer_explainable_variance",
    "normalized_ve", "explainable_ve_reliability", "cumulative_ve_across_pcs",
]

_DEFAULT_WIDTH_UM = {"strips": 200.0, "checkerboard": 400.0}


def variance_explained(y: np.ndarray, yhat: np.ndarray, axis: int = 0) -> np.ndarray:
    """1 - mean((y - yhat)^2) / var(y) along `axis` (time), float64.

    y, yhat: same shape, e.g. (T_test, n_neurons) with axis=0. var is about
    y's own mean over these frames (ddof=0), so a prediction that is only
    off by a constant loses that constant's square. NaN where var(y) = 0.
    """
    ya, yha = np.asarray(y, dtype=np.float64), np.asarray(yhat, dtype=np.float64)
    if ya.shape != yha.shape:
        raise ValueError(f"y {ya.shape} and yhat {yha.shape} differ in shape")
    mse = np.mean((ya - yha) ** 2, axis=axis)
    var = np.var(ya, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, 1.0 - mse / np.where(var > 0, var, 1.0), np.nan)


def spatial_groups(
    xpos: np.ndarray, ypos: np.ndarray, mode: str = "strips", width_um: float | None = None
) -> np.ndarray:
    """Peer-prediction halves (n_neurons,) bool: True = odd strip / odd square.

    strips: strips of `width_um` (default 200) along x, alternating
    (the paper); checkerboard: squares of `width_um` (default 400), in a
    checkerboard (the original program). Cells are counted from x = y = 0 um.
    """
    x, y = np.asarray(xpos, dtype=np.float64), np.asarray(ypos, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"xpos {x.shape} and ypos {y.shape} must be equal-length 1-D arrays")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise JfacemapError("neuron positions have non-finite values")
    if mode not in _DEFAULT_WIDTH_UM:
        raise ValueError(f"mode must be 'strips' or 'checkerboard', got {mode!r}")
    width = _DEFAULT_WIDTH_UM[mode] if width_um is None else float(width_um)
    if not width > 0:
        raise ValueError(f"width_um must be > 0, got {width_um}")
    cell = np.floor(x / width).astype(np.int64)
    if mode == "checkerboard":
        cell = cell + np.floor(y / width).astype(np.int64)
    return (cell % 2) == 1


def ve_per_neuron(Z_test: np.ndarray, Yhat: np.ndarray, U: np.ndarray | None, chunk: int = 4096) -> np.ndarray:
    """Per-neuron VE (n,) of Z_test (n, T_test) against Yhat (T_test, k) @ U^T
    (or Yhat (T_test, n) itself when U is None: neurons predicted directly),
    in chunks of neurons so the (T_test, n) prediction is never whole."""
    if U is None:
        return variance_explained(np.asarray(Z_test).T, Yhat, axis=0)
    out = np.empty(Z_test.shape[0])
    for a in range(0, Z_test.shape[0], chunk):
        pred = Yhat @ np.asarray(U[a : a + chunk], dtype=np.float64).T
        out[a : a + chunk] = variance_explained(Z_test[a : a + chunk].T, pred, axis=0)
    return out


def peer_explainable_variance(
    spks: np.ndarray,
    xpos: np.ndarray,
    ypos: np.ndarray,
    split: Split,
    mode: str = "strips",
    width_um: float | None = None,
    n_pcs: int = 128,
    lam: float = 0.1,
    rank: int = 127,
    **svd_kwargs,
) -> np.ndarray:
    """Explainable variance per neuron (n_neurons,) float64, by peer prediction.

    spks: (n_neurons, T) activity (z-scored here over all frames, as for the
    encoder targets); xpos, ypos: (n_neurons,) um; split: train/test frames.
    Neurons are split into two spatial halves (`spatial_groups`); each half's
    top `n_pcs` PCs come from its train frames; RRR (lam, rank capped at the
    PCs available) fit on train frames predicts one half's PCs from the
    other's, both ways; a neuron's predicted activity is predicted PCs @ U^T
    and its test variance explained is its explainable variance.
    svd_kwargs go to `neural_svd`.
    """
    Z, _, _ = zscore(spks)
    if split.n_time != Z.shape[1]:
        raise ValueError(f"split is for {split.n_time} frames but spks has {Z.shape[1]}")
    if np.asarray(xpos).shape != (Z.shape[0],):
        raise ValueError(f"{np.asarray(xpos).shape} positions for {Z.shape[0]} neurons")
    group = spatial_groups(xpos, ypos, mode, width_um)
    if group.all() or not group.any():
        raise JfacemapError(
            f"peer prediction needs neurons in both spatial groups ({mode}); "
            f"all {Z.shape[0]} neurons fell in one group"
        )
    train, test = split.train_idx, split.test_idx
    halves = [np.flatnonzero(~group), np.flatnonzero(group)]
    pcs, loadings, test_activity = [], [], []
    for idx in halves:
        Z_half = Z[idx]
        U, _, _ = neural_svd(Z_half, n_pcs, train_idx=train, **svd_kwargs)
        loadings.append(U)
        pcs.append(np.asarray(Z_half.T @ U, dtype=np.float64))  # (T, k)
        test_activity.append(Z_half[:, test])
        del Z_half
    explainable = np.empty(Z.shape[0])
    for src, dst in ((0, 1), (1, 0)):
        r = min(rank, pcs[src].shape[1], pcs[dst].shape[1])
        fit = reduced_rank_regression(pcs[src][train], pcs[dst][train], rank=r, lam=lam)
        Yhat = rrr_predict(fit, pcs[src][test])
        explainable[halves[dst]] = ve_per_neuron(test_activity[dst], Yhat, loadings[dst])
    return explainable


def normalized_ve(
    ve: np.ndarray, explainable_ve: np.ndarray, threshold: float = 1e-3
) -> tuple[float, np.ndarray]:
    """(population, per_neuron (n_neurons,)).

    population = mean VE / mean explainable VE over all neurons where both
    are finite; per neuron = VE / explainable VE where explainable > threshold,
    NaN elsewhere.
    """
    v, e = np.asarray(ve, dtype=np.float64), np.asarray(explainable_ve, dtype=np.float64)
    if v.shape != e.shape or v.ndim != 1:
        raise ValueError(f"ve {v.shape} and explainable_ve {e.shape} must be equal-length 1-D arrays")
    ok = np.isfinite(v) & np.isfinite(e)
    if not ok.any():
        raise ValueError("no neuron has finite VE and explainable VE")
    denom = e[ok].mean()
    population = float(v[ok].mean() / denom) if denom != 0 else float("nan")
    keep = ok & (e > threshold)
    per_neuron = np.full(v.shape, np.nan)
    per_neuron[keep] = v[keep] / e[keep]
    return population, per_neuron


def explainable_ve_reliability(
    explainable_ve: np.ndarray, normalized: dict[str, float] | None = None, min_explainable: float = 0.01,
    threshold: float = 1e-3,
) -> tuple[bool, str]:
    """Can the peer-prediction estimate serve as the ceiling of normalised VE? (reliable, why not or "").

    Unreliable when the population's mean explainable variance is below
    `min_explainable` (a fraction: few neurons share variance with their peers,
    or too little data to estimate it, so dividing by it inflates) or when a
    normalised VE exceeds 1 (a model beat the supposed ceiling: the ceiling is
    underestimated). normalized: model name -> population normalised VE.
    """
    e = np.asarray(explainable_ve, dtype=np.float64)
    finite = e[np.isfinite(e)]
    mean = float(finite.mean()) if finite.size else float("nan")
    if not mean >= min_explainable:
        n_with = int((finite > threshold).sum())
        return False, (f"the population's explainable variance is {100 * mean:.2f}% (< {100 * min_explainable:g}%): "
                       f"{n_with} of {e.size} neurons have explainable variance > {100 * threshold:g}% "
                       "(few neurons share activity with their peers, or too little data)")
    over = {name: v for name, v in (normalized or {}).items() if np.isfinite(v) and v > 1}
    if over:
        worst = max(over, key=over.get)
        return False, (f"normalised VE of the {worst} model is {100 * over[worst]:.0f}% (> 100%): the explainable "
                       f"variance ({100 * mean:.2f}%) underestimates the ceiling (too little data or too few neurons)")
    return True, ""


def cumulative_ve_across_pcs(
    Y_test: np.ndarray, Yhat_test: np.ndarray, total_variance: float | None = None
) -> np.ndarray:
    """Cumulative variance explained using the first k predicted PCs, k = 1..K.

    Y_test, Yhat_test: (T_test, K) true and predicted PCs (Y = V S) on test
    frames. Each PC explains e_j = var(Y_j) - mean((Y_j - Yhat_j)^2) (its
    Eq.-1 VE times its variance); out[k-1] = sum_{j<k} e_j / total_variance.
    total_variance defaults to sum_j var(Y_j) (variance within the K PCs);
    pass the summed test variance of all neurons, spks_test.var(axis=1).sum(),
    to normalise by the whole activity: then, since U is orthonormal,
    out[K-1] is the pooled VE 1 - sum MSE / sum var of the predicted activity
    Yhat @ U^T (exactly, when the neurons' test means lie in the span of U,
    e.g. are zero). Returns (K,) float64.
    """
    y, yh = np.asarray(Y_test, dtype=np.float64), np.asarray(Yhat_test, dtype=np.float64)
    if y.ndim != 2 or y.shape != yh.shape:
        raise ValueError(f"Y_test {y.shape} and Yhat_test {yh.shape} must be the same (T_test, K)")
    var = y.var(axis=0)
    explained = var - np.mean((y - yh) ** 2, axis=0)
    total = var.sum() if total_variance is None else float(total_variance)
    if not total > 0:
        raise ValueError(f"total variance must be > 0, got {total}")
    return np.cumsum(explained) / total
