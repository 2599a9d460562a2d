"""Bring behaviour onto the neural clock, and split the neural frames (SPEC section 3).

The two clocks are aligned by their timestamps only, never by assuming a ratio
of frame rates:
  - `gaussian_smooth` low-passes the behaviour (SPEC: 100 ms s.d.) so that
    sampling it at ~3 Hz does not alias the 10 Hz whisking;
  - `resample` then reads it at the neural frame times by linear
    interpolation, refusing to extrapolate;
  - `segment_split` cuts the neural frames into 10 segments, each the first
    75 % train, 3 s skipped, the rest test, so that test frames are never
    within the autocorrelation time of a train frame of the same segment.
Times are seconds, 1-D float64, strictly increasing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from jfacemap.errors import JfacemapError
from jfacemap.io.timestamps import check_timestamps  # re-exported: the stages' clocks are checked here
from jfacemap.series import N_SEGMENTS, split_segments

__all__ = ["Split", "check_timestamps", "gaussian_smooth", "hold_out_ends", "resample", "segment_split"]

# Below this fraction of the kernel's mass on valid samples a smoothed value is
# an extrapolation across a gap, reported as NaN (reached ~3.3 s.d. from data).
_MIN_VALID_WEIGHT = 1e-3


def _frame_interval(times_or_fps: float | np.ndarray, n: int | None = None) -> float:
    """Seconds per frame from a frame rate (Hz) or from timestamps (median step; n of them, if given)."""
    if np.ndim(times_or_fps) == 0:
        fps = float(times_or_fps)
        if not np.isfinite(fps) or fps <= 0:
            raise ValueError(f"frame rate must be a positive number, got {times_or_fps}")
        return 1.0 / fps
    t = check_timestamps(times_or_fps, "times", n=n)
    if t.size < 2:
        raise ValueError("need at least 2 timestamps to know the frame interval")
    return float(np.median(np.diff(t)))


def gaussian_smooth(
    x: np.ndarray, sigma_s: float = 0.1, times_or_fps: float | np.ndarray | None = None
) -> np.ndarray:
    """Smooth along time with a Gaussian of s.d. `sigma_s` seconds.

    x: (T,) or (T, D); times_or_fps (required): frame rate in Hz, or the (T,) timestamps
    (then the kernel width in frames uses the median frame interval: the
    camera clock is treated as uniform up to jitter). Returns float64, same
    shape. NaN-aware by normalised convolution: smooth(x * valid) /
    smooth(valid), so NaN samples get no weight, gaps shorter than the kernel
    are filled from both sides and the ends are not pulled toward zero; where
    less than 1e-3 of the kernel lies on valid samples the result is NaN.
    sigma_s = 0 returns a float64 copy.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise ValueError(f"x must be (T,) or (T, D), got shape {arr.shape}")
    if not np.isfinite(sigma_s) or sigma_s < 0:
        raise ValueError(f"sigma_s must be >= 0 seconds, got {sigma_s}")
    if times_or_fps is None:
        raise ValueError("gaussian_smooth needs the frame rate (Hz) or the timestamps (s) of x")
    dt = _frame_interval(times_or_fps, arr.shape[0])
    if sigma_s == 0:
        return arr.copy()
    sigma_frames = sigma_s / dt
    valid = np.isfinite(arr)
    filled = np.where(valid, arr, 0.0)
    num = gaussian_filter1d(filled, sigma_frames, axis=0, mode="constant", cval=0.0)
    den = gaussian_filter1d(valid.astype(np.float64), sigma_frames, axis=0, mode="constant", cval=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[den < _MIN_VALID_WEIGHT] = np.nan
    return out


def resample(
    x: np.ndarray,
    src_times: np.ndarray,
    dst_times: np.ndarray,
    src_name: str = "behaviour",
    dst_name: str = "neural",
    tolerance_s: float = 0.0,
) -> np.ndarray:
    """Values of x at dst_times by linear interpolation between src samples.

    x: (T_src,) or (T_src, D); src_times (T_src,) s; dst_times (T_dst,) s.
    Returns (T_dst,) or (T_dst, D) float64. Every dst time must lie within
    [src_times[0] - tolerance_s, src_times[-1] + tolerance_s]; those within
    the tolerance outside the source take the edge value. NaN in x spreads
    to the dst times where either bracketing sample is NaN.
    """
    arr = np.asarray(x, dtype=np.float64)
    ts = check_timestamps(src_times, f"{src_name} times")
    td = check_timestamps(dst_times, f"{dst_name} times")
    if arr.ndim not in (1, 2) or arr.shape[0] != ts.size:
        raise ValueError(f"{src_name} values of shape {arr.shape} do not match {ts.size} timestamps")
    if td[0] < ts[0] - tolerance_s or td[-1] > ts[-1] + tolerance_s:
        raise ValueError(
            f"{src_name} does not cover the {dst_name} recording: {dst_name} times "
            f"{td[0]:.1f}-{td[-1]:.1f} s, {src_name} {ts[0]:.1f}-{ts[-1]:.1f} s"
        )
    if ts.size == 1:
        return np.repeat(arr[:1], td.size, axis=0)
    tq = np.clip(td, ts[0], ts[-1])
    right = np.clip(np.searchsorted(ts, tq, side="right"), 1, ts.size - 1)
    left = right - 1
    w = (tq - ts[left]) / (ts[right] - ts[left])
    if arr.ndim == 2:
        w = w[:, None]
    return (1.0 - w) * arr[left] + w * arr[right]


@dataclass(frozen=True, eq=False)
class Split:
    """Train and test neural frames, per segment.

    train, test: one int64 array of contiguous, ascending frame indices per
    segment (n_segments each); n_time: number of neural frames split.
    """

    train: tuple[np.ndarray, ...]
    test: tuple[np.ndarray, ...]
    n_time: int

    @property
    def train_idx(self) -> np.ndarray:
        """All train frames (n_train,) int64, ascending."""
        return np.sort(np.concatenate(self.train))

    @property
    def test_idx(self) -> np.ndarray:
        """All test frames (n_test,) int64, ascending."""
        return np.sort(np.concatenate(self.test))


def segment_split(
    n_time_or_times: int | np.ndarray,
    n_segments: int = N_SEGMENTS,
    train_fraction: float = 0.75,
    gap_s: float = 3.0,
    fps: float | None = None,
) -> Split:
    """Cut the neural frames into `n_segments` equal runs of frames; in each,
    the first `train_fraction` (floor) is train, then frames are skipped
    until `gap_s` seconds after the first skipped frame, and the rest is test
    (`jfacemap.series.split_segments` on the neural clock, as index arrays).

    n_time_or_times: the number of neural frames (then `fps`, the neural frame
    rate in Hz, is required to turn the gap into frames) or the (T,) neural
    timestamps in s (the gap is measured on them). Each segment must keep at
    least one train and one test frame, else ValueError.
    """
    if np.ndim(n_time_or_times) == 0:
        n_time = int(n_time_or_times)
        if n_time != n_time_or_times or n_time < 1:
            raise ValueError(f"number of frames must be a positive integer, got {n_time_or_times}")
        if fps is None or not np.isfinite(fps) or fps <= 0:
            raise ValueError("segment_split needs fps (> 0) when given a frame count instead of timestamps")
        times = np.arange(n_time) / float(fps)
    else:
        times = check_timestamps(n_time_or_times, "neural times")
        n_time = times.size
    if not 0 < train_fraction < 1:  # the split must leave test frames
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    if n_time < 2 * n_segments:
        raise JfacemapError(f"recording too short: {n_time} frames for {n_segments} segments")
    spans = split_segments(n_time, n_segments, train_fraction, gap_s, times)
    train, test = [], []
    for (a, mid), (first_test, b) in zip(*spans):
        if mid <= a or first_test >= b:
            seg_s = times[b - 1] - times[a]
            raise JfacemapError(
                f"recording too short: a segment of {b - a} frames ({seg_s:.1f} s) leaves no "
                f"{'train' if mid <= a else 'test'} frames with train_fraction={train_fraction} "
                f"and a {gap_s} s gap"
            )
        train.append(np.arange(a, mid, dtype=np.int64))
        test.append(np.arange(first_test, b, dtype=np.int64))
    return Split(train=tuple(train), test=tuple(test), n_time=n_time)


def hold_out_ends(segments: tuple[np.ndarray, ...], times: np.ndarray, fraction: float = 0.1,
                  gap_s: float = 3.0) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Carve a validation set out of training segments, as `segment_split` carves the test set:
    in each segment the last `fraction` of its frames is validation, and the `gap_s` seconds
    before it are dropped. Returns (fit segments, validation segments); a segment too short
    to keep fit frames after the gap stays whole for fitting and gives no validation frames.

    segments: ascending neural-frame index arrays; times: (T,) s of all neural frames.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    times = np.asarray(times, np.float64)
    fit, val = [], []
    for seg in segments:
        n_val = int(np.ceil(fraction * len(seg)))
        first_val = len(seg) - n_val
        last_fit = int(np.searchsorted(times[seg], times[seg[first_val]] - gap_s + 1e-6))  # 1 us slack
        if n_val < 1 or last_fit < 1:
            fit.append(seg)
            continue
        fit.append(seg[:last_fit])
        val.append(seg[first_val:])
    return tuple(fit), tuple(val)
