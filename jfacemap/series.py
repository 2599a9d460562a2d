"""Time-series helpers every stage shares: z-scoring, and the split that holds out the end of each segment.

A leaf module (numpy only), so that the state models (`jfacemap.hmm`, which
may import nothing else of the package) use the same code as the stages.
Frames are indices along the time axis; times are in the units of the clock
given (seconds for timestamps, frames when no clock is given).
"""

from __future__ import annotations

import numpy as np

from jfacemap.errors import JfacemapError

__all__ = ["N_SEGMENTS", "zscore", "split_segments"]

N_SEGMENTS = 10  # the paper's train/test split: 10 segments, the end of each held out


def zscore(x, axis: int = 0, idx=None, dtype=np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z, mean, sd): x standardised along `axis` (the time axis), z = (x - mean) / sd.

    x: any shape; mean and sd (x's shape without `axis`, float64) are over
    all of x along `axis`, or over the indices `idx` along it (training
    frames, say), with ddof 0. A constant series (sd 0) keeps sd 1, so its z
    is 0: it carries no signal. z has x's shape, as `dtype`.
    """
    x = np.asarray(x, np.float64)
    ref = x if idx is None else np.take(x, np.asarray(idx, np.int64), axis=axis)
    mean = ref.mean(axis=axis, keepdims=True)
    sd = ref.std(axis=axis, keepdims=True)
    sd = np.where(sd > 0, sd, 1.0)
    return ((x - mean) / sd).astype(dtype, copy=False), np.squeeze(mean, axis), np.squeeze(sd, axis)


def split_segments(n: int, n_segments: int = N_SEGMENTS, train_fraction: float = 0.75, gap: float = 0.0,
                   times=None) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Cut frames 0..n-1 into `n_segments` runs of near-equal length and hold out the end of each.

    In a run [a, b) (edges rounded from linspace(0, n, n_segments + 1)) the first
    floor(train_fraction * (b - a)) frames [a, mid) are train; frames are then
    skipped until `gap` after frame mid, on the clock `times` ((n,) increasing;
    default the frame index, so `gap` in frames), and the rest [first_test, b)
    is test. Returns (train, test): one (start, stop) pair per run each, in
    order; either may be empty (start == stop), for the caller to refuse or drop.
    """
    if int(n_segments) != n_segments or n_segments < 1:
        raise JfacemapError(f"n_segments must be a positive integer, got {n_segments}")
    if not 0 < train_fraction <= 1:
        raise JfacemapError(f"train_fraction must be in (0, 1], got {train_fraction}")
    if not (np.isfinite(gap) and gap >= 0):
        raise JfacemapError(f"gap must be >= 0, got {gap}")
    clock = np.arange(n, dtype=np.float64) if times is None else np.asarray(times, np.float64)
    edges = np.linspace(0, n, int(n_segments) + 1).round().astype(np.int64)
    train, test = [], []
    for a, b in zip(edges[:-1].tolist(), edges[1:].tolist()):
        # 1e-9: a fraction such as 1 - 0.3 must not lose a frame to its float rounding.
        mid = a + int(np.floor(train_fraction * (b - a) + 1e-9))
        # 1 us slack: times made from a frame rate are not exact multiples.
        first = int(np.searchsorted(clock, clock[min(mid, n - 1)] + gap - 1e-6)) if b > a else a
        first = min(max(first, mid), b)
        train.append((a, mid))
        test.append((first, b))
    return train, test
