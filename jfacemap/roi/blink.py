"""Blinks: a per-frame trace of the eye's darkness, and blink events (onset, offset).

Trace (the original's measure): the summed darkness of the eye ROI below
`eye_level`, per pixel, i.e. mean(max(level - frame, 0)), divided by its
median over the session so an open eye reads ~1. The level defaults to 20 %
of the way from the ROI's darkest pixels to its bright ones, so the trace is
carried by the pupil and the darkest eyeball: a closed lid (fur) leaves almost
nothing below it, while an open eye with a small pupil still leaves a good
part (on the synthetic sessions: blinks < 0.05, open eye > 0.25).

Events: runs of frames whose normalised trace is below `threshold` (default
0.15), runs closer than `min_gap` frames merged, runs shorter than
`min_frames` dropped. Each event is (onset, offset): the first and last frame
below threshold, inclusive. A higher threshold catches shallower blinks and,
with a small pupil, may take the open eye for one.
"""

from __future__ import annotations

import numpy as np

from jfacemap.roi.box import Box, crop

__all__ = ["eye_level", "blink_trace", "normalise_blink", "blink_events", "BLINK_THRESHOLD"]

BLINK_THRESHOLD = 0.15  # normalised trace below which a frame is in a blink


def eye_level(frames: np.ndarray, box: Box, fraction: float = 0.2, offset: float = 0.0) -> float:
    """Grey level the trace sums darkness below: `fraction` of the way from the ROI's darkest
    pixels (1st percentile) to its bright ones (95th), plus `offset`, over a sample of
    frames (T, H, W) uint8 spread over the video."""
    x = crop(np.asarray(frames), box)
    dark, bright = np.percentile(x, [1.0, 95.0])
    return float(dark + fraction * (bright - dark) + offset)


def blink_trace(frames: np.ndarray, box: Box, level: float) -> np.ndarray:
    """Mean darkness below `level` per frame: (T, H, W) uint8 -> (T,) float64 grey levels."""
    x = crop(np.asarray(frames), box).astype(np.float32)
    return np.maximum(level - x, 0.0).mean(axis=(1, 2), dtype=np.float64)


def normalise_blink(trace: np.ndarray) -> np.ndarray:
    """The trace divided by its median (open eye ~1); unchanged when the median is 0."""
    trace = np.asarray(trace, np.float64)
    median = np.nanmedian(trace) if len(trace) else 0.0
    return trace / median if median > 0 else trace.copy()


def blink_events(trace: np.ndarray, threshold: float = BLINK_THRESHOLD, min_gap: int = 3,
                 min_frames: int = 1) -> np.ndarray:
    """(E, 2) int64 (onset, offset) frames, inclusive, where `trace` (normalised) < threshold."""
    below = np.asarray(trace) < threshold
    edges = np.diff(np.r_[0, below.astype(np.int8), 0])
    onsets, offsets = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    if len(onsets) == 0:
        return np.zeros((0, 2), np.int64)
    merged = [[onsets[0], offsets[0]]]
    for on, off in zip(onsets[1:], offsets[1:]):
        if on - merged[-1][1] - 1 < min_gap:
            merged[-1][1] = off
        else:
            merged.append([on, off])
    events = np.array(merged, np.int64)
    return events[events[:, 1] - events[:, 0] + 1 >= min_frames]
