"""Outlier detection and filling for keypoint traces (SPEC section 2).

A keypoint array is (T, K, 3) = x, y, likelihood per frame and keypoint, in
pixels; NaN where a keypoint is absent. Everything here is numpy/scipy on the
CPU, vectorised over frames, and memory-bounded for hour-long traces
(180,000 frames x 15 keypoints): the only per-element Python loop is over
detected jumps, which are rare.

Rules (every paper default is a keyword argument):
  1. likelihood: likelihood minus its Gaussian baseline (s.d. 4 s) below
     -8 x the s.d. of that baselined trace.
  2. jump: more than 25 px from the previous frame's position. The reference
     is the last *accepted* position (not NaN, not a likelihood outlier, not
     itself a jump), so a single-frame spike flags one frame, not also the
     frame where the keypoint comes back. A run of jump outliers that never
     returns within `jump_hold_s` is taken as a real displacement: the frame
     at the end of the hold becomes the new reference (otherwise one
     permanent shift would flag the rest of the recording).
  3. median: more than 25 px from the median-filtered trace (window 1 s; the
     median ignores points already flagged by 1-2 and NaNs).
NaN positions are reported as `missing` and count as outliers for filling.
Filling replaces outliers only: a 300 ms median filter that ignores outliers,
then linear interpolation of it at the outlier times (nearest valid value at
the edges); a keypoint with no valid point stays NaN.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage, signal

from jfacemap.errors import JfacemapError

__all__ = [
    "OutlierReport", "outlier_report", "detect_outliers", "fill_outliers",
    "filter_keypoints", "filter_hook", "nan_median", "nan_median_filter", "window_frames",
    "gaussian_half_kernel", "point_distance",
]

_CHUNK_ELEMENTS = 1 << 22  # bounds the slow nan-median path to ~32 MB per chunk


class OutlierReport(NamedTuple):
    """Per-rule outlier masks, each bool (T, K); `mask` is their union."""

    mask: np.ndarray
    missing: np.ndarray  # x or y is NaN
    likelihood: np.ndarray
    jump: np.ndarray
    median: np.ndarray

    @property
    def fractions(self) -> dict[str, float]:
        """Fraction of all T x K timepoints flagged by each rule (rules overlap)."""
        n = max(self.mask.size, 1)
        return {name: float(getattr(self, name).sum()) / n for name in self._fields}


def window_frames(seconds: float, fps: float) -> int:
    """A centred window of `seconds` in frames, rounded and made odd (>= 1)."""
    n = max(1, int(round(seconds * fps)))
    return n if n % 2 else n + 1


def nan_median(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Median along `axis` ignoring NaNs (values finite or NaN); NaN where a slice has none.

    Unlike np.nanmedian: no warning for an all-NaN slice, and one sort. Used by
    the sliding median below and, one window per frame, by the causal filter.
    """
    rows = np.sort(values, axis=axis)  # NaNs sort last
    n = (~np.isnan(rows)).sum(axis=axis, keepdims=True)
    lo = np.take_along_axis(rows, np.maximum(n - 1, 0) // 2, axis)
    hi = np.take_along_axis(rows, np.minimum(n // 2, rows.shape[axis] - 1), axis)
    return np.squeeze(np.where(n > 0, 0.5 * (lo + hi), np.nan), axis)


def nan_median_filter(x: np.ndarray, window: int) -> np.ndarray:
    """Centred sliding median along axis 0 that ignores NaNs.

    x: (T, S) float. Windows are truncated at the edges (only real samples
    count); a window with no finite sample gives NaN. Returns float64 (T, S).
    Fast path: scipy's median filter where a window holds no NaN and does not
    touch an edge; the rest is sorted window by window, in bounded chunks.
    """
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        return nan_median_filter(x[:, None], window)[:, 0]
    T, S = x.shape
    half = window // 2
    out = np.full((T, S), np.nan)
    invalid = ~np.isfinite(x)
    pad = np.full((half, S), np.nan)
    for j in range(S):
        inv = invalid[:, j]
        if inv.all():
            continue
        col = np.where(inv, np.nan, x[:, j])
        # Windows that see a NaN or run past an edge need the slow path.
        slow = ndimage.maximum_filter1d(inv.view(np.uint8), window, mode="constant", cval=1) > 0
        if not slow.all():
            out[:, j] = ndimage.median_filter(np.where(inv, 0.0, col), size=window, mode="nearest")
        idx = np.flatnonzero(slow)
        windows = sliding_window_view(np.concatenate([pad[:, j], col, pad[:, j]]), window)
        step = max(1, _CHUNK_ELEMENTS // window)
        for s in range(0, idx.size, step):
            out[idx[s:s + step], j] = nan_median(windows[idx[s:s + step]], axis=1)
    return out


def point_distance(d: np.ndarray, metric: str) -> np.ndarray:
    """Length of displacement vectors d (..., 2): 'euclidean' or 'chebyshev' (max |dx|, |dy|)."""
    if metric == "euclidean":
        return np.hypot(d[..., 0], d[..., 1])
    if metric == "chebyshev":
        return np.abs(d).max(axis=-1)
    raise ValueError(f"metric must be 'euclidean' or 'chebyshev', not {metric!r}")


def gaussian_half_kernel(sigma: float) -> np.ndarray:
    """Unnormalised Gaussian weights at lags 0, 1, ..., radius samples (s.d. `sigma` samples,
    truncated at 4 s.d.): (radius + 1,) float64. One side of the likelihood baseline's kernel."""
    radius = int(4.0 * sigma + 0.5)
    u = np.arange(radius + 1) / sigma
    return np.exp(-0.5 * u * u)


def _gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter of a 1-D x (s.d. `sigma` samples, truncated at 4 s.d.,
    zeros beyond the ends). Overlap-add FFT: the direct kernel is 1,601 taps
    at 50 Hz, far too slow for hour-long traces."""
    half = gaussian_half_kernel(sigma)
    if half.size < 2:
        return x.copy()
    kernel = np.concatenate([half[:0:-1], half])
    return signal.oaconvolve(x, kernel / kernel.sum(), mode="same")


def _likelihood_outliers(lik: np.ndarray, fps: float, baseline_s: float, threshold_sd: float) -> np.ndarray:
    """Rule 1 on likelihoods (T, K): baselined value below threshold_sd x its s.d."""
    flagged = np.zeros(lik.shape, bool)
    for k in range(lik.shape[1]):  # one column at a time keeps temporaries small
        col = lik[:, k].astype(np.float64)
        valid = np.isfinite(col)
        if valid.sum() < 2:
            continue
        # Normalised convolution: NaNs and the edges don't drag the baseline down.
        num = _gaussian_smooth(np.where(valid, col, 0.0), baseline_s * fps)
        den = _gaussian_smooth(valid.astype(np.float64), baseline_s * fps)
        with np.errstate(invalid="ignore", divide="ignore"):
            resid = col - num / den
        sd = np.nanstd(resid)
        # A constant trace has sd ~ rounding noise: flag nothing rather than noise.
        if sd > 1e-9 * max(1.0, np.nanmax(np.abs(col))):
            flagged[:, k] = np.nan_to_num(resid, nan=np.inf) < threshold_sd * sd
    return flagged


def _jump_outliers_1(
    xy: np.ndarray, usable: np.ndarray, max_jump: float, hold: int, metric: str
) -> np.ndarray:
    """Rule 2 for one keypoint: xy (T, 2), usable (T,) -> bool (T,). See module doc."""
    flagged = np.zeros(usable.shape, bool)
    idx = np.flatnonzero(usable)
    if idx.size < 2:
        return flagged
    p = xy[idx].astype(np.float64)
    hit = np.zeros(idx.size, bool)
    cand = np.flatnonzero(point_distance(np.diff(p, axis=0), metric) > max_jump) + 1
    resume = -1  # first accepted point after the last run of jumps
    for c in cand:  # only runs of large steps are visited
        if c <= resume:
            continue
        ref = p[c - 1]  # accepted: no candidate between `resume` and c
        stop = np.searchsorted(idx, idx[c] + hold)
        far = point_distance(p[c:stop] - ref, metric) > max_jump
        n = far.size if far.all() else int(np.argmin(far))
        hit[c:c + n] = True
        resume = c + n  # the return point, or the new reference after the hold
    flagged[idx[hit]] = True
    return flagged


def outlier_report(
    keypoints: np.ndarray,
    fps: float,
    likelihood_baseline_s: float = 4.0,
    likelihood_threshold_sd: float = -8.0,
    max_jump_px: float = 25.0,
    max_median_dev_px: float = 25.0,
    median_window_s: float = 1.0,
    jump_hold_s: float = 1.0,
    metric: str = "euclidean",
) -> OutlierReport:
    """All outlier rules on keypoints (T, K, 3) at `fps` frames/s -> OutlierReport.

    `jump_hold_s` (not from the paper) is how long a run of jumps may last
    before it counts as a real displacement; `metric` measures pixel
    distances ('euclidean', or 'chebyshev' = either |dx| or |dy| too large).
    """
    kp = np.asarray(keypoints)
    if kp.ndim != 3 or kp.shape[-1] != 3:
        raise ValueError(f"keypoints must be (frames, keypoints, 3), got {kp.shape}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    xy = kp[..., :2]  # input precision; float64 per keypoint where it matters
    missing = ~np.isfinite(xy).all(axis=-1)
    lik = _likelihood_outliers(kp[..., 2], fps, likelihood_baseline_s, likelihood_threshold_sd) & ~missing

    hold = max(1, int(round(jump_hold_s * fps)))
    usable = ~(missing | lik)
    jump = np.stack(
        [_jump_outliers_1(xy[:, k], usable[:, k], max_jump_px, hold, metric) for k in range(kp.shape[1])],
        axis=1,
    ) if kp.shape[1] else np.zeros(missing.shape, bool)

    # The median reference ignores what rules 1-2 already flagged. One keypoint
    # at a time keeps the float64 temporaries to (T, 2).
    median = np.zeros_like(missing)
    window = window_frames(median_window_s, fps)
    for k in range(kp.shape[1]):
        xy_k = xy[:, k].astype(np.float64)
        med = nan_median_filter(np.where((usable[:, k] & ~jump[:, k])[:, None], xy_k, np.nan), window)
        with np.errstate(invalid="ignore"):
            median[:, k] = np.nan_to_num(point_distance(xy_k - med, metric), nan=0.0) > max_median_dev_px
    median &= ~missing
    return OutlierReport(missing | lik | jump | median, missing, lik, jump, median)


def detect_outliers(keypoints: np.ndarray, fps: float, **rules) -> np.ndarray:
    """Union of the three rules (and missing points): bool (T, K).

    `rules` are `outlier_report`'s keyword arguments (the paper's defaults live there only).
    """
    return outlier_report(keypoints, fps, **rules).mask


def fill_outliers(
    keypoints: np.ndarray, outliers: np.ndarray, fps: float, median_window_ms: float = 300.0
) -> np.ndarray:
    """Replace x, y at outliers (bool (T, K)) and NaNs; returns float32 (T, K, 3).

    Values at non-outlier times and the likelihood column are unchanged.
    """
    kp = np.asarray(keypoints)
    outliers = np.asarray(outliers, bool)
    if kp.ndim != 3 or kp.shape[-1] != 3 or outliers.shape != kp.shape[:2]:
        raise ValueError(f"need keypoints (T, K, 3) and outliers (T, K), got {kp.shape}, {outliers.shape}")
    out = kp.astype(np.float32, copy=True)
    bad = outliers | ~np.isfinite(kp[..., :2]).all(axis=-1)
    window = window_frames(median_window_ms / 1000.0, fps)
    t = np.arange(len(kp))
    for k in np.flatnonzero(bad.any(axis=0)):  # one keypoint at a time: (T, 2) temporaries
        med = nan_median_filter(np.where(bad[:, k, None], np.nan, kp[:, k, :2].astype(np.float64)), window)
        good = ~bad[:, k] & np.isfinite(med).all(axis=-1)
        fill = np.flatnonzero(bad[:, k])
        for c in range(2):
            # np.interp holds the nearest valid value beyond the ends.
            out[fill, k, c] = np.interp(fill, t[good], med[good, c]) if good.any() else np.nan
    return out


def filter_keypoints(
    keypoints: np.ndarray, fps: float, median_window_ms: float = 300.0, **kwargs
) -> tuple[np.ndarray, OutlierReport]:
    """Detect (keyword arguments of `outlier_report`) and fill -> (float32 (T, K, 3), report)."""
    report = outlier_report(keypoints, fps, **kwargs)
    return fill_outliers(keypoints, report.mask, fps, median_window_ms), report


def filter_hook(fractions: dict):
    """A `track_video` postprocess: fn(keypoints, fps) -> `filter_keypoints(keypoints, fps)`'s keypoints.

    It stores the fraction of frames flagged per outlier kind in `fractions`; a
    video without a frame rate is a JfacemapError (the windows are in seconds).
    """
    def run(keypoints: np.ndarray, fps: float) -> np.ndarray:
        if not (fps > 0 and math.isfinite(fps)):
            raise JfacemapError("the video has no frame rate, which --filter needs")
        filtered, report = filter_keypoints(keypoints, fps)
        fractions.update(report.fractions)
        return filtered

    return run
