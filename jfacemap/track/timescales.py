"""Keypoint timescales from an autoregressive model (SPEC section 2).

How far into the future can each keypoint coordinate be predicted linearly
from the recent past of all of them?
  - split the traces into 10 segments; first 75 % of each = train, skip
    2.6 s, the rest = test;
  - features: every trace through causal exponential-decay filters with
    timescales log-spaced 40 ms..5 s, plus an intercept;
  - one ridge regression (tiny lambda) per future lag: 20 ms..10 s every
    20 ms, then 10.5 s..40 s every 500 ms (rounded to whole frames);
  - test variance explained per coordinate and lag; the timescale is the lag
    where it falls to half its value at the first lag.
A (feature, target) pair is used only when both times lie in the same train
(or test) block, so each lag has its own rows. Everything is built from
sufficient statistics, exact for every lag:
  X^T X   the full Gram matrix per block minus its last-k-rows tail, the
          tails accumulated once as the lags grow;
  X^T Y_k all lags at once per block, by FFT cross-correlation;
and the solves for a chunk of lags are one batched call; the test error
follows from the same statistics on the test blocks (no prediction arrays).
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np
from scipy import fft, signal

from jfacemap.series import N_SEGMENTS, split_segments, zscore

__all__ = [
    "TimescaleResult", "lag_grid", "split_train_test", "exp_basis_features",
    "half_decay_lag", "keypoint_timescales",
]

Blocks = list[tuple[int, int]]  # [start, stop) frame ranges


class TimescaleResult(NamedTuple):
    """lags_s (L,) s; variance_explained (L, D) on test data (NaN where a lag
    has no test pairs); timescale_s (D,) s, NaN where VE never halves."""

    lags_s: np.ndarray
    variance_explained: np.ndarray
    timescale_s: np.ndarray


def lag_grid(
    fps: float,
    fine_step_s: float = 0.02,
    fine_stop_s: float = 10.0,
    coarse_step_s: float = 0.5,
    coarse_stop_s: float = 40.0,
) -> np.ndarray:
    """Future lags in frames (L,), ascending and unique: fine_step..fine_stop
    in fine steps, then on to coarse_stop in coarse steps (>= 1 frame each)."""
    fine = np.arange(1, int(round(fine_stop_s / fine_step_s)) + 1) * fine_step_s
    n_coarse = int(round((coarse_stop_s - fine_stop_s) / coarse_step_s))
    coarse = fine_stop_s + np.arange(1, n_coarse + 1) * coarse_step_s
    frames = np.round(np.concatenate([fine, coarse]) * fps).astype(np.int64)
    return np.unique(np.maximum(frames, 1))


def split_train_test(
    n_frames: int, fps: float, n_segments: int = N_SEGMENTS, train_frac: float = 0.75, skip_s: float = 2.6
) -> tuple[Blocks, Blocks]:
    """Train and test blocks: per segment, the first train_frac, skip_s (rounded to whole
    frames), the rest (`jfacemap.series.split_segments`); empty blocks are left out."""
    train, test = split_segments(n_frames, n_segments, train_frac, gap=round(skip_s * fps))
    return [b for b in train if b[1] > b[0]], [b for b in test if b[1] > b[0]]


def exp_basis_features(traces: np.ndarray, fps: float, timescales_s: np.ndarray) -> np.ndarray:
    """Causal exponential filters: (T, D) -> (T, D * n) float64, column d * n + j
    = trace d through f_t = a f_{t-1} + (1 - a) x_t, a = exp(-1 / (fps tau_j)),
    started at f_0 = x_0 (no ramp from zero)."""
    x = np.ascontiguousarray(np.asarray(traces, np.float64).T)  # (D, T): filter along contiguous time
    out = np.empty((x.shape[1], x.shape[0], len(timescales_s)))
    for j, tau in enumerate(timescales_s):
        a = np.exp(-1.0 / (fps * tau))
        out[:, :, j] = signal.lfilter([1 - a], [1, -a], x, axis=1, zi=a * x[:, :1])[0].T
    return out.reshape(x.shape[1], -1)


def _lagged_cross(
    y: np.ndarray, feats: np.ndarray, decays: np.ndarray, blocks: Blocks, lags: np.ndarray
) -> np.ndarray:
    """(L, F - 1, D): sum over t, t + k in one block of feats[t] y[t + k]^T, k in lags.

    feats = exp_basis_features(y) (T, D * n), decays = a_j (n,). With
    C_k = sum_{t=a}^{b-1-k} f[t] y[t+k] and f[t] = a_j f[t-1] + (1 - a_j) y[t]:
        C_k = a_j (C_{k+1} + f[a-1] y[a+k]) + (1 - a_j) R_k,
    R_k the raw D x D cross-correlation, so one FFT per *trace* pair (not per
    feature pair) and a backward first-order filter over k give every lag.
    """
    D, n_b = y.shape[1], len(decays)
    out = np.zeros((len(lags), D, n_b, D))
    for a, b in blocks:
        n = b - a
        K = int(min(lags.max(), n - 1))  # C_k for k >= n is 0
        ya = y[a:b]
        N = fft.next_fast_len(n + K, real=True)  # no wrap-around up to lag K
        fy = fft.rfft(ya, N, axis=0)
        R = fft.irfft(np.conj(fy)[:, :, None] * fy[:, None, :], N, axis=0)[:K + 1]  # (K+1, D, D)
        f_prev = feats[a - 1] if a > 0 else np.repeat(y[0], n_b)  # f[-1] = y[0], see exp_basis_features
        f_prev = f_prev.reshape(D, n_b)
        use = lags <= K
        for j, dec in enumerate(decays):
            # C_K directly, then the recursion down to k = 0 (stable: |a_j| < 1).
            c_top = feats[a:b - K, j::n_b].T @ ya[K:]
            c = c_top[None]
            if K > 0:
                u = dec * f_prev[None, :, j, None] * ya[:K, None, :] + (1 - dec) * R[:K]
                c, _ = signal.lfilter([1.0], [1.0, -dec], u[::-1], axis=0, zi=(dec * c_top)[None])
                c = np.concatenate([c[::-1], c_top[None]])  # (K+1, D, D), index = lag
            out[use, :, j] += c[lags[use]]
    return out.reshape(len(lags), D * n_b, D)


def _grams(X: np.ndarray, blocks: Blocks, lags: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
    """Yield (chunk, F, F) Gram matrices of the rows t with t + k in the same block,
    for ascending lags k: the full Gram minus tails that grow with k."""
    full = sum((X[a:b].T @ X[a:b] for a, b in blocks), np.zeros((X.shape[1],) * 2))
    tail = np.zeros_like(full)
    done = [b for _, b in blocks]  # tail rows are [done[i], b)
    for c0 in range(0, len(lags), chunk):
        out = np.empty((len(lags[c0:c0 + chunk]),) + full.shape)
        for i, k in enumerate(lags[c0:c0 + chunk]):
            for j, (a, b) in enumerate(blocks):
                start = max(a, b - int(k))
                if start < done[j]:
                    rows = X[start:done[j]]
                    tail += rows.T @ rows
                    done[j] = start
            out[i] = full - tail
        yield out


def _target_sums(Y: np.ndarray, blocks: Blocks, lags: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per lag: number of pairs n (L,), sum of targets (L, D), sum of squares (L, D)."""
    n, s1, s2 = np.zeros(len(lags)), np.zeros((len(lags), Y.shape[1])), np.zeros((len(lags), Y.shape[1]))
    for a, b in blocks:
        c1 = np.concatenate([np.zeros((1, Y.shape[1])), np.cumsum(Y[a:b], axis=0)])
        c2 = np.concatenate([np.zeros((1, Y.shape[1])), np.cumsum(Y[a:b] ** 2, axis=0)])
        k = np.minimum(lags, b - a)  # targets are Y[a + k : b]
        n += b - a - k
        s1 += c1[-1] - c1[k]
        s2 += c2[-1] - c2[k]
    return n, s1, s2


def half_decay_lag(lags_s: np.ndarray, ve: np.ndarray) -> np.ndarray:
    """Lag (D,) where ve (L, D) first drops below half its value at the first lag,
    linearly interpolated; NaN if it never does, or if the first value is not > 0."""
    out = np.full(ve.shape[1], np.nan)
    for d in range(ve.shape[1]):
        ok = np.isfinite(ve[:, d])
        lag, v = lags_s[ok], ve[ok, d]
        if v.size < 2 or not np.isfinite(ve[0, d]) or ve[0, d] <= 0:
            continue
        below = np.flatnonzero(v < 0.5 * v[0])
        if below.size:
            i = below[0]
            out[d] = lag[i - 1] + (0.5 * v[0] - v[i - 1]) * (lag[i] - lag[i - 1]) / (v[i] - v[i - 1])
    return out


def keypoint_timescales(
    traces: np.ndarray,
    fps: float,
    n_segments: int = N_SEGMENTS,
    train_frac: float = 0.75,
    skip_s: float = 2.6,
    n_basis: int = 8,
    basis_min_s: float = 0.04,
    basis_max_s: float = 5.0,
    lags: np.ndarray | None = None,
    ridge: float = 1e-6,
    lag_chunk: int = 64,
) -> TimescaleResult:
    """Autoregressive timescales of traces (T, D) sampled at `fps` Hz.

    traces: finite values (filter outliers first), e.g. the 22 analysis
    coordinates. lags: future lags in frames (default `lag_grid(fps)`).
    ridge: lambda relative to the mean diagonal of the train Gram matrix
    (the intercept is not penalised).
    """
    y = np.asarray(traces, np.float64)
    if y.ndim != 2 or not np.isfinite(y).all():
        raise ValueError("traces must be a finite (T, D) array; fill outliers first")
    lags = lag_grid(fps) if lags is None else np.unique(np.asarray(lags, np.int64))
    y = zscore(y, dtype=np.float64)[0]  # for conditioning only: the VE does not depend on it
    taus = np.geomspace(basis_min_s, basis_max_s, n_basis)
    feats = exp_basis_features(y, fps, taus)
    X = np.column_stack([feats, np.ones(len(y))])  # last column: intercept
    F = X.shape[1]
    train, test = split_train_test(len(y), fps, n_segments, train_frac, skip_s)

    decays = np.exp(-1.0 / (fps * taus))
    n_train, s1_train, _ = _target_sums(y, train, lags)
    n_test, s1, s2 = _target_sums(y, test, lags)
    # X^T Y_k; the intercept row is the sum of the targets.
    b_train = np.concatenate([_lagged_cross(y, feats, decays, train, lags), s1_train[:, None]], axis=1)
    b_test = np.concatenate([_lagged_cross(y, feats, decays, test, lags), s1[:, None]], axis=1)
    ve = np.full((len(lags), y.shape[1]), np.nan)
    penalty = np.ones(F)
    penalty[-1] = 0.0
    chunks = zip(_grams(X, train, lags, lag_chunk), _grams(X, test, lags, lag_chunk))
    for c0, (a_train, a_test) in zip(range(0, len(lags), lag_chunk), chunks):
        sl = slice(c0, c0 + len(a_train))
        lam = ridge * np.einsum("lii->l", a_train) / F
        ok = n_train[sl] > F  # enough pairs to fit; others stay NaN
        # Lags without enough pairs get an identity just to stay solvable.
        reg = a_train + lam[:, None, None] * np.diag(penalty) + (~ok)[:, None, None] * np.eye(F)
        w = np.linalg.solve(reg, b_train[sl])  # (Lc, F, D), one batched call
        # Test SSE = sum y^2 - 2 w.X^T y + w^T X^T X w, from the test statistics.
        sse = (s2[sl] - 2 * np.einsum("lfd,lfd->ld", w, b_test[sl])
               + np.einsum("lfd,lfg,lgd->ld", w, a_test, w))
        with np.errstate(invalid="ignore", divide="ignore"):
            sst = s2[sl] - s1[sl] ** 2 / n_test[sl, None]
            v = 1.0 - sse / sst
        ve[sl] = np.where((ok & (n_test[sl] > 1))[:, None] & (sst > 0), v, np.nan)
    lags_s = lags / fps
    return TimescaleResult(lags_s, ve, half_decay_lag(lags_s, ve))
