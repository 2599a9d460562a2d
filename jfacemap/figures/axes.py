"""Small helpers the figures share so that every axis reads honestly: the time window a
figure shows, whole-number ticks on counts, and no non-positive values on log axes."""

from __future__ import annotations

import numpy as np


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 100 else f"{value:.3g} s"


def window_label(n_shown: int, n_total: int, dt: float) -> str:
    """'first 10 s of 120 s' when a figure shows only the start of a series, 'all 20 s' otherwise.

    n_shown, n_total: samples; dt: seconds per sample."""
    if n_shown >= n_total:
        return f"all {_seconds(n_total * dt)}"
    return f"first {_seconds(n_shown * dt)} of {_seconds(n_total * dt)}"


def integer_ticks(axis) -> None:
    """Whole-number major ticks on a matplotlib axis (counts, states): no tick at 2.5 states."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def positive_only(values) -> tuple[np.ndarray, int]:
    """`values` as float with zeros and negatives set to NaN, and how many were set.

    A log axis cannot show them: matplotlib would clip them to the axis floor and draw
    a line plunging to "zero"; NaN leaves a gap instead and the caller says so."""
    values = np.array(values, np.float64)
    bad = ~(values > 0) & np.isfinite(values)
    values[bad] = np.nan
    return values, int(bad.sum())
