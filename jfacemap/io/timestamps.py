"""The one check of a clock: timestamps of video frames, neural frames or behaviour samples.

A clock is (T,) float64 seconds: 1-D, non-empty, finite, strictly increasing,
and, where the caller knows how many samples it times, exactly that many.
Messages are one line and start with the clock's `name` (a parameter such as
"x_times", or a file path), so the caller says which array is at fault.
"""

from __future__ import annotations

import numpy as np

from jfacemap.errors import JfacemapError

__all__ = ["TimestampError", "check_timestamps"]


class TimestampError(JfacemapError):
    """Timestamps that are not a usable clock; the message names them."""


def check_timestamps(times, name: str = "times", n: int | None = None, what: str = "frame",
                     error: type[JfacemapError] = TimestampError) -> np.ndarray:
    """`times` as (T,) float64 s, checked: 1-D, non-empty, finite, strictly increasing.

    n: the number of samples they must time (one `what` each, e.g. "neural frame"); None: any.
    error: the JfacemapError subclass raised (a reader's own file error, say); default TimestampError.
    """
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1:
        raise error(f"{name} must be 1-D timestamps, got shape {t.shape}")
    if n is not None and t.size != n:
        raise error(f"{name}: {t.size} timestamps, need one per {what} ({n})")
    if t.size == 0:
        raise error(f"{name} is empty")
    bad = ~np.isfinite(t)
    if bad.any():
        raise error(f"{name} has {int(bad.sum())} non-finite (NaN/inf) timestamps, first at index "
                    f"{int(np.argmax(bad))}")
    steps = np.diff(t)
    if np.any(steps <= 0):
        i = int(np.argmax(steps <= 0))
        raise error(f"{name} is not strictly increasing: t[{i}]={t[i]:.6g} s, t[{i + 1}]={t[i + 1]:.6g} s")
    return t
