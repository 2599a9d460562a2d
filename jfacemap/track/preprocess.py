"""Frames -> network input, and keypoints between frame and network space.

Pure, jittable functions (the geometry is static: frame shape and bounding
box are Python values fixed at trace time).

Pipeline (the original's `transforms.preprocess_img`, per frame):
  1. normalise: 0 = the frame's 1st percentile, 1 = its 99th (whole frame,
     before cropping). Per frame, not per batch (the original pools the
     batch, so its result depends on batch size; with batch 1 they agree).
  2. crop to the bounding box.
  3. zero-pad to a square, centred: floor(d/2) before, the rest after. The
     original's quirk is kept: when the two sides differ by an odd number,
     the square side is max + 1, so the long side also gets 1 pixel of
     padding, after (right/bottom).
  4. bilinear resize to 256 x 256, half-pixel centres (torch
     `F.interpolate(mode="bilinear")`, align_corners=False, no antialias):
     source = (i + 0.5) * side / 256 - 0.5, clamped at the edges.

Coordinates: x = column, y = row, in pixels, pixel centres on integers.
Keypoints map between frame and 256-space by the pure scale 256 / side
(no half-pixel shift), plus the pad and crop offsets: that is what the
original does both when it makes training labels and when it maps
predictions back, so networks trained either way agree with it:

    x_256 = (x_frame - x0 + pad_left) * 256 / side
    x_frame = x_256 * side / 256 + x0 - pad_left          (same for y)
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jfacemap.errors import JfacemapError

NET_SIZE = 256  # network input side, pixels


class CropGeometry(NamedTuple):
    """Where the network input sits in the frame (all ints, pixels).

    x0, y0: crop origin (left column, top row) in the frame.
    width, height: crop size. pad_left, pad_top: zero padding before the
    crop in the square; side: the square's side; size: network input side.
    """

    x0: int
    y0: int
    width: int
    height: int
    pad_left: int
    pad_top: int
    side: int
    size: int = NET_SIZE

    @property
    def scale(self) -> float:
        """Network pixels per frame pixel (size / side)."""
        return self.size / self.side


def crop_geometry(
    frame_shape: Sequence[int], bbox: Sequence[float] | None = None, size: int = NET_SIZE, context: float = 1.0
) -> CropGeometry:
    """Validate `bbox` and work out crop, padding and scale.

    Args:
      frame_shape: (H, W) or (B, H, W) of the frames.
      bbox: (x0, x1, y0, y1) in frame pixels, x = column, half-open
        [x0, x1) x [y0, y1); None = the whole frame. Values are rounded to
        integers. (The original program's own bbox lists the row range
        first: its (x1, x2, y1, y2) is our (y0, y1, x0, x1).)
      size: network input side.
      context: the square's side is this many times the crop's (rounded),
        the crop centred in it on zeros: the network sees the face smaller,
        with room around it (a model's `context`; 1 = the original's).
    Raises:
      JfacemapError (one line) for an empty, inverted or out-of-frame bbox.
    """
    height, width = (int(n) for n in tuple(frame_shape)[-2:])
    if bbox is None:
        bbox = (0, width, 0, height)
    if len(bbox) != 4:
        raise JfacemapError(f"bbox must be (x0, x1, y0, y1), got {tuple(bbox)}")
    try:
        x0, x1, y0, y1 = (int(round(float(v))) for v in bbox)
    except (TypeError, ValueError, OverflowError) as err:
        raise JfacemapError(f"bbox must be 4 finite numbers (x0, x1, y0, y1), got {tuple(bbox)}") from err
    if x0 >= x1 or y0 >= y1:
        raise JfacemapError(f"bbox (x0, x1, y0, y1) = {(x0, x1, y0, y1)} is empty: need x0 < x1 and y0 < y1")
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise JfacemapError(f"bbox (x0, x1, y0, y1) = {(x0, x1, y0, y1)} lies outside the {width}x{height} frame")
    w, h = x1 - x0, y1 - y0
    side = max(w, h)
    if w != h and (side - min(w, h)) % 2:
        side += 1  # the original's rule: keep the short side's padding even
    side = context_side(side, context)
    return CropGeometry(x0, y0, w, h, (side - w) // 2, (side - h) // 2, side, int(size))


def context_side(side, context: float = 1.0):
    """Square side with `context` (>= 1) times the room: round(side * context); int or traced int array."""
    if not (math.isfinite(context) and context >= 1.0):
        raise JfacemapError(f"context must be a finite number >= 1, got {context}")
    if context == 1.0:
        return side
    if isinstance(side, int):
        return int(round(side * context))
    return jnp.round(side * context).astype(side.dtype)


# ------------------------------------------------------------ normalisation ---


def _percentile_ranks(n: int, q: float) -> tuple[int, int, float]:
    """numpy 'linear' percentile: value at fractional rank q/100 * (n - 1)."""
    pos = q / 100.0 * (n - 1)
    lo = int(math.floor(pos))
    return lo, min(lo + 1, n - 1), pos - lo


def frame_percentiles(frames: jax.Array, qs: Sequence[float]) -> list[jax.Array]:
    """Per-frame percentiles (numpy 'linear' method) of (B, H, W) frames.

    uint8 frames use an exact 256-bin histogram (O(pixels), no sort); other
    dtypes sort. Returns one (B,) float32 array per q.
    """
    b = frames.shape[0]
    n = math.prod(frames.shape[1:])
    flat = frames.reshape(b, n)
    if frames.dtype == jnp.uint8:
        counts = jax.vmap(lambda f: jnp.bincount(f, length=256))(flat.astype(jnp.int32))
        cum = jnp.cumsum(counts, axis=1)  # (B, 256): pixels <= value

        def value_at(rank: int) -> jax.Array:  # the rank-th smallest pixel
            return jnp.sum(cum <= rank, axis=1).astype(jnp.float32)
    else:
        ordered = jnp.sort(flat.astype(jnp.float32), axis=1)

        def value_at(rank: int) -> jax.Array:
            return ordered[:, rank]

    out = []
    for q in qs:
        lo, hi, frac = _percentile_ranks(n, float(q))
        a, c = value_at(lo), value_at(hi)
        out.append(a + (c - a) * jnp.float32(frac))
    return out


def normalize_percentile(frames: jax.Array, low: float = 1.0, high: float = 99.0) -> jax.Array:
    """(B, H, W) frames -> float32 with each frame's `low` percentile at 0
    and `high` percentile at 1 (not clipped). A constant frame (no spread)
    maps to 0 instead of NaN."""
    p_lo, p_hi = frame_percentiles(frames, (low, high))
    spread = p_hi - p_lo
    spread = jnp.where(spread > 0, spread, 1.0)
    return (frames.astype(jnp.float32) - p_lo[:, None, None]) / spread[:, None, None]


# ---------------------------------------------------------- crop/pad/resize ---


def _axis_taps(length: int, pad: int, side: int, size: int, align_corners: bool):
    """Bilinear taps along one axis, padding folded in: for each output
    index, two source indices into the CROP and their weights (weight 0 on
    padded pixels, which are zeros). Numpy, computed at trace time."""
    i = np.arange(size, dtype=np.float64)
    if align_corners:
        src = i * ((side - 1) / (size - 1) if size > 1 else 0.0)
    else:  # torch: scale * (i + 0.5) - 0.5, clamped below at 0
        src = np.maximum((i + 0.5) * (side / size) - 0.5, 0.0)
    p0 = np.floor(src).astype(np.int64)
    p1 = np.minimum(p0 + 1, side - 1)
    w1 = src - p0
    w0 = 1.0 - w1
    taps = []
    for p, w in ((p0, w0), (p1, w1)):
        c = p - pad  # index into the crop
        inside = (c >= 0) & (c < length)
        taps.append((np.clip(c, 0, length - 1), np.where(inside, w, 0.0).astype(np.float32)))
    return taps


def apply_geometry(frames: jax.Array, geom: CropGeometry, align_corners: bool = False) -> jax.Array:
    """Crop, zero-pad and bilinearly resize (B, H, W) float frames to
    (B, size, size) float32, as described by `geom` (separable: rows, then
    columns, two taps each)."""
    crop = frames[:, geom.y0 : geom.y0 + geom.height, geom.x0 : geom.x0 + geom.width].astype(jnp.float32)
    (r0, wr0), (r1, wr1) = _axis_taps(geom.height, geom.pad_top, geom.side, geom.size, align_corners)
    rows = crop[:, r0, :] * wr0[None, :, None] + crop[:, r1, :] * wr1[None, :, None]
    (c0, wc0), (c1, wc1) = _axis_taps(geom.width, geom.pad_left, geom.side, geom.size, align_corners)
    return rows[:, :, c0] * wc0 + rows[:, :, c1] * wc1


def crop_pad_resize(
    frames: jax.Array, bbox: Sequence[float] | None = None, size: int = NET_SIZE, align_corners: bool = False
) -> jax.Array:
    """(B, H, W) frames -> (B, size, size) float32: crop to `bbox` (x0, x1,
    y0, y1; None = whole frame), zero-pad to a centred square, bilinear
    resize. `align_corners=True` is the resize the original uses when it
    makes training images; inference uses False (the default)."""
    return apply_geometry(frames, crop_geometry(frames.shape, bbox, size), align_corners)


def preprocess(
    frames: jax.Array, bbox: Sequence[float] | None = None, size: int = NET_SIZE, low: float = 1.0, high: float = 99.0,
    context: float = 1.0,
) -> jax.Array:
    """(B, H, W) frames (uint8 or float) -> (B, size, size, 1) float32
    network input: per-frame percentile normalisation, crop, pad, resize
    (`context`: see `crop_geometry`)."""
    geom = crop_geometry(frames.shape, bbox, size, context)
    return apply_geometry(normalize_percentile(frames, low, high), geom)[..., None]


# ---------------------------------------------------------------- keypoints ---


def keypoints_to_frame(points: jax.Array, geom: CropGeometry) -> jax.Array:
    """(..., 2) x, y in network (size) pixels -> frame pixels."""
    factor = geom.side / geom.size
    # Same operation order as the original (scale, un-pad, un-crop).
    x = points[..., 0] * factor - geom.pad_left + geom.x0
    y = points[..., 1] * factor - geom.pad_top + geom.y0
    return jnp.stack([x, y], axis=-1)


def keypoints_to_network(points: jax.Array, geom: CropGeometry) -> jax.Array:
    """(..., 2) x, y in frame pixels -> network (size) pixels (NaN stays NaN)."""
    x = (points[..., 0] - (geom.x0 - geom.pad_left)) * geom.scale
    y = (points[..., 1] - (geom.y0 - geom.pad_top)) * geom.scale
    return jnp.stack([x, y], axis=-1)
