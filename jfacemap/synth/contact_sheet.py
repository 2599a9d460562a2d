"""Contact sheets: a grid of frames with coloured ground-truth keypoints, drawn in numpy."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jfacemap.io.images import write_png
from jfacemap.synth._font import GLYPH_H, GLYPH_W, draw_text

# Saturated colours picked greedily, each the farthest (CIELAB) from those before it, from
# hues that stand out on grey frames and against the white outline: any first 15 are at
# least 43 Delta-E apart (a jet map gave four eye blues and three whisker reds).
PALETTE = np.array([
    (255, 0, 85), (0, 255, 0), (0, 43, 255), (0, 234, 255), (255, 191, 0), (121, 63, 140), (28, 140, 56),
    (255, 0, 234), (140, 75, 28), (208, 255, 115), (115, 173, 255), (255, 106, 0), (0, 255, 191), (0, 106, 255),
    (255, 115, 185), (140, 140, 0), (255, 173, 115), (140, 38, 191), (255, 255, 0), (80, 191, 0),
], np.uint8)


def bodypart_colours(n: int) -> np.ndarray:
    """(n, 3) uint8, one distinct colour per bodypart: PALETTE, then jet colours (which may be close)."""
    extra = max(n - len(PALETTE), 0)
    t = np.linspace(0.0, 1.0, max(extra, 1))[:extra]
    jet = np.stack([np.clip(1.5 - np.abs(4 * t - k), 0.0, 1.0) for k in (3, 2, 1)], axis=1)
    return np.concatenate([PALETTE[:n], np.round(255 * jet).astype(np.uint8)])


def frame_label(index: int, fps: float | None = None) -> str:
    """A tile's title: '#120', or '#120 0:02.40' (minutes:seconds) when fps is known.

    Minutes:seconds needs no unit letter: the font's S looks like a 5 ('2.40S')."""
    if not fps:
        return f"#{index}"
    minutes, seconds = divmod(round(index / fps, 2), 60.0)  # rounded first: never '0:60.00'
    return f"#{index} {int(minutes)}:{seconds:05.2f}"


def _disk(image: np.ndarray, x: float, y: float, radius: float, colour) -> bool:
    """Draw a filled disk with a white outline; False when it falls wholly outside the image."""
    h, w = image.shape[:2]
    r = radius + 1.0
    x0, x1 = max(int(np.floor(x - r)), 0), min(int(np.ceil(x + r)) + 1, w)
    y0, y1 = max(int(np.floor(y - r)), 0), min(int(np.ceil(y + r)) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return False
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d = np.hypot(xx - x, yy - y)
    region = image[y0:y1, x0:x1]
    region[d <= radius + 1.0] = (255, 255, 255)  # white outline, like Facemap's figures
    region[d <= radius] = colour
    return bool((d <= radius).any())


def contact_sheet(
    frames: np.ndarray,
    keypoints: np.ndarray | None,
    bodyparts: Sequence[str],
    ncols: int = 4,
    labels: bool = True,
    titles: Sequence[str] | None = None,
    marker_radius: float | None = None,
    gap: int = 2,
    frame_indices: Sequence[int] | None = None,
    fps: float | None = None,
) -> np.ndarray:
    """A grid of `frames` (N, H, W) uint8 with `keypoints` (N, K, 2 or 3) drawn; (H', W', 3) uint8.

    Keypoints use the pixel convention of the renderer (x right, y down, pixel
    centres at integers); NaN keypoints are skipped. With `labels`, each tile
    gets its title (default: `frame_label` of its frame index from `frame_indices`,
    with the time when `fps` is given; frames 0, 1, ... when only fps is; with neither,
    just the tile's position) and a legend of the bodyparts drawn in at least one
    tile is added below the grid, with a line naming those drawn in none.
    """
    frames = np.asarray(frames)
    if frames.ndim == 4 and frames.shape[-1] == 1:
        frames = frames[..., 0]
    if frames.ndim != 3:
        raise ValueError(f"frames must be (N, H, W), got shape {frames.shape}")
    if frames.dtype != np.uint8:
        frames = np.clip(frames, 0, 255).astype(np.uint8)
    n, h, w = frames.shape
    if frame_indices is not None and len(frame_indices) != n:
        raise ValueError(f"{len(frame_indices)} frame indices for {n} frames")
    indices = np.arange(n) if frame_indices is None else np.asarray(frame_indices)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    colours = bodypart_colours(len(bodyparts))
    drawn = np.zeros(len(bodyparts), bool)
    radius = marker_radius if marker_radius is not None else max(1.5, min(h, w) / 110.0)
    sheet = np.full((nrows * (h + gap) + gap, ncols * (w + gap) + gap, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, ncols)
        y0, x0 = gap + r * (h + gap), gap + c * (w + gap)
        tile = np.repeat(frames[i][:, :, None], 3, axis=2)
        if keypoints is not None:
            for k in range(min(len(bodyparts), keypoints.shape[1])):
                x, y = keypoints[i, k, 0], keypoints[i, k, 1]
                if np.isfinite(x) and np.isfinite(y):
                    drawn[k] |= _disk(tile, float(x), float(y), radius, colours[k])
        if labels:
            if titles is not None:
                title = str(titles[i])
            elif frame_indices is None and fps is None:
                title = str(i)  # only the tile's position is known: no '#', which would claim a frame index
            else:
                title = frame_label(int(indices[i]), fps)
            draw_text(tile, title, 3, 3, (255, 255, 0))
        sheet[y0 : y0 + h, x0 : x0 + w] = tile
    if labels and keypoints is not None and len(bodyparts):
        sheet = np.concatenate([sheet, _legend(bodyparts, colours, drawn, sheet.shape[1])], axis=0)
    return sheet


def _legend(bodyparts: Sequence[str], colours: np.ndarray, drawn: np.ndarray, width: int) -> np.ndarray:
    """Swatch and name of each drawn bodypart, then one line naming those in none of the tiles."""
    shown = [k for k in range(len(bodyparts)) if drawn[k]]
    missing = [bodyparts[k] for k in range(len(bodyparts)) if not drawn[k]]
    entry_w = max((len(bodyparts[k]) for k in shown), default=1) * (GLYPH_W + 1) + 16
    per_row = max(1, (width - 4) // entry_w)
    rows = int(np.ceil(len(shown) / per_row)) + bool(missing)
    line_h = GLYPH_H + 6
    legend = np.full((rows * line_h + 6, width, 3), 255, np.uint8)
    for j, k in enumerate(shown):
        r, c = divmod(j, per_row)
        x, y = 4 + c * entry_w, 4 + r * line_h
        legend[y : y + GLYPH_H, x : x + 8] = colours[k]
        draw_text(legend, bodyparts[k], x + 11, y, (0, 0, 0), shadow=None)
    if missing:
        draw_text(legend, "not in these frames: " + ", ".join(missing), 4, 4 + (rows - 1) * line_h,
                  (96, 96, 96), shadow=None)
    return legend


def save_contact_sheet(
    path: str | os.PathLike,
    frames: np.ndarray,
    keypoints: np.ndarray | None,
    bodyparts: Sequence[str],
    ncols: int = 4,
    labels: bool = True,
    frame_indices: Sequence[int] | None = None,
    fps: float | None = None,
    **kwargs,
) -> Path:
    """Write `contact_sheet(...)` as a PNG at `path` (frame_indices, fps: the tiles' titles)."""
    sheet = contact_sheet(frames, keypoints, bodyparts, ncols=ncols, labels=labels, frame_indices=frame_indices,
                          fps=fps, **kwargs)
    return write_png(path, sheet)
