"""Contact sheets: a grid of frames with coloured ground-truth keypoints, drawn in numpy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from jfacemap.io.images import write_png
from jfacemap.synth._font import GLYPH_H, GLYPH_W, draw_text


def bodypart_colours(n: int) -> np.ndarray:
    """(n, 3) uint8: a jet colour map sampled at n evenly spaced points (one colour per bodypart)."""
    t = np.linspace(0.0, 1.0, max(n, 1))[:n]
    rgb = np.stack([np.clip(1.5 - np.abs(4 * t - k), 0.0, 1.0) for k in (3, 2, 1)], axis=1)
    return np.round(255 * rgb).astype(np.uint8)


def _disk(image: np.ndarray, x: float, y: float, radius: float, colour) -> None:
    h, w = image.shape[:2]
    r = radius + 1.0
    x0, x1 = max(int(np.floor(x - r)), 0), min(int(np.ceil(x + r)) + 1, w)
    y0, y1 = max(int(np.floor(y - r)), 0), min(int(np.ceil(y + r)) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d = np.hypot(xx - x, yy - y)
    region = image[y0:y1, x0:x1]
    region[d <= radius + 1.0] = (255, 255, 255)  # white outline, like Facemap's figures
    region[d <= radius] = colour


def contact_sheet(
    frames: np.ndarray,
    keypoints: np.ndarray | None,
    bodyparts: Sequence[str],
    ncols: int = 4,
    labels: bool = True,
    titles: Sequence[str] | None = None,
    marker_radius: float | None = None,
    gap: int = 2,
) -> np.ndarray:
    """A grid of `frames` (N, H, W) uint8 with `keypoints` (N, K, 2 or 3) drawn; (H', W', 3) uint8.

    Keypoints use the pixel convention of the renderer (x right, y down, pixel
    centres at integers); NaN keypoints are skipped. With `labels`, each tile
    gets its title (default: its index) and a legend of colour swatches and
    bodypart names, in the order of `bodyparts`, is added below the grid.
    """
    frames = np.asarray(frames)
    if frames.ndim == 4 and frames.shape[-1] == 1:
        frames = frames[..., 0]
    if frames.ndim != 3:
        raise ValueError(f"frames must be (N, H, W), got shape {frames.shape}")
    if frames.dtype != np.uint8:
        frames = np.clip(frames, 0, 255).astype(np.uint8)
    n, h, w = frames.shape
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    colours = bodypart_colours(len(bodyparts))
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
                    _disk(tile, float(x), float(y), radius, colours[k])
        if labels:
            title = str(titles[i]) if titles is not None else str(i)
            draw_text(tile, title, 3, 3, (255, 255, 0))
        sheet[y0 : y0 + h, x0 : x0 + w] = tile
    if labels and len(bodyparts):
        sheet = np.concatenate([sheet, _legend(bodyparts, colours, sheet.shape[1])], axis=0)
    return sheet


def _legend(bodyparts: Sequence[str], colours: np.ndarray, width: int) -> np.ndarray:
    entry_w = max(len(name) for name in bodyparts) * (GLYPH_W + 1) + 16
    per_row = max(1, (width - 4) // entry_w)
    rows = int(np.ceil(len(bodyparts) / per_row))
    line_h = GLYPH_H + 6
    legend = np.full((rows * line_h + 6, width, 3), 255, np.uint8)
    for k, name in enumerate(bodyparts):
        r, c = divmod(k, per_row)
        x, y = 4 + c * entry_w, 4 + r * line_h
        legend[y : y + GLYPH_H, x : x + 8] = colours[k]
        draw_text(legend, name, x + 11, y, (0, 0, 0), shadow=None)
    return legend


def save_contact_sheet(
    path: str | os.PathLike,
    frames: np.ndarray,
    keypoints: np.ndarray | None,
    bodyparts: Sequence[str],
    ncols: int = 4,
    labels: bool = True,
    **kwargs,
) -> Path:
    """Write `contact_sheet(...)` as a PNG at `path`."""
    return write_png(path, contact_sheet(frames, keypoints, bodyparts, ncols=ncols, labels=labels, **kwargs))
