"""Pupil area, centre, axes and angle in a rectangular ROI, frame by frame.

Method (the original fits the moments of the pupil's dark pixels; here that
is the fallback and an ellipse fitted to the pupil's rim the answer):

1. Frames are smoothed by a small Gaussian (sensor noise); pixels darker than
   the threshold form connected components per frame; the largest is the
   pupil, its holes (reflections inside it) filled.
2. Levels: the pupil's own grey level (median of its dark core) and the
   surround's (median of a ring 3-5 px outside).
3. Moments: each pixel counts by how far it lies between the two levels (a
   partial-area estimate: blurred rim pixels count in part); pixels under
   corneal reflections (much brighter than the surround, near the pupil) are
   unknown and counted where they fall inside the moments' ellipse, refitted
   `_REFITS` times (the original's "reflector" filling, without drawing one).
4. Rim ellipse: rim pixels, moved along the intensity gradient to where the
   level is halfway between pupil and surround (sub-pixel), leaving out those
   under or on the flank of a reflection, get a direct least-squares ellipse
   (`ellipse.fit_ellipses`, all frames at once). It replaces the moments when
   its area is within `_RIM_AGREE` of theirs; a reflection eating into the rim
   biases the moments, not the rim fit.

A frame with no component of at least `min_area` px, or whose component is
barely darker than its surround (a closed eye), is NaN in every output. The
area is the fitted ellipse's, so a pupil partly behind a lid reads as the
whole pupil where the rim fit holds. Bright pupils (back-illuminated) are the
same with grey levels inverted.

The threshold is one number per video, relative to the ROI's intensity
distribution over sampled frames (see `pupil_threshold`): `fraction` of the
way from the darkest pixels (the pupil) to the median pixel, plus `offset`
grey levels, the counterpart of the original's "saturation" slider.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from jfacemap.roi.box import Box, crop
from jfacemap.roi.ellipse import fit_ellipses

__all__ = ["PupilSettings", "PupilTrace", "pupil_threshold", "measure_pupil", "empty_pupil"]

# Connectivity within a frame only: (3, 3, 3) with the neighbouring frames switched off.
_IN_PLANE = np.zeros((3, 3, 3), bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)
# Rim ellipse area / moments' area accepted: on synthetic eyes good fits give 1.0-1.7 (the moments
# miss some of what reflections hide), wild conics on a lid's edge 2-10.
_RIM_AGREE = (0.6, 2.0)
_MARGIN = 8  # px kept around the pupils of a chunk: the ring (5 px) and the flank look-ahead (5 px)
_REFITS = 2  # ellipse refits that fill the pixels under reflections


_CROSS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def _disk_offsets(radius: int) -> tuple[tuple[int, int], ...]:
    r = range(-radius, radius + 1)
    return tuple((dy, dx) for dy in r for dx in r if 0 < dy * dy + dx * dx <= radius * radius)


def _dilate(mask: np.ndarray, offsets=_CROSS) -> np.ndarray:
    """Per-frame binary dilation of (T, h, w) by the offsets (plus the centre), outside = False.
    Shifted ORs: several times faster than ndimage's generic 3-D dilation on these small frames."""
    out = mask.copy()
    h, w = mask.shape[1:]
    for dy, dx in offsets:
        out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] |= \
            mask[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def _erode(mask: np.ndarray, offsets=_CROSS) -> np.ndarray:
    """Per-frame binary erosion, outside = True (the ROI's edge erodes nothing)."""
    return ~_dilate(~mask, offsets)


@dataclass(frozen=True)
class PupilSettings:
    """How the pupil is found. Grey levels are of the (smoothed) 8-bit frames.

    bright: pupil brighter than its surround (back-illumination); default dark (IR).
    fraction: threshold at this fraction of the way from the pupil level (a low
      percentile of the ROI) to the ROI's median, for `pupil_threshold`.
    offset: grey levels added to that threshold (> 0 takes in more pixels).
    smooth: Gaussian sigma (px) against sensor noise before thresholding.
    close: radius (px) of the closing that fills reflections on the pupil's rim.
    min_area: px^2; a smaller dark component is not a pupil (NaN).
    min_contrast: grey levels the pupil must be darker than its surround (else NaN).
    """

    bright: bool = False
    fraction: float = 0.3
    offset: float = 0.0
    smooth: float = 1.0
    close: int = 2
    min_area: float = 12.0
    min_contrast: float = 8.0


@dataclass(frozen=True)
class PupilTrace:
    """Per frame (T frames); NaN where no pupil was found.

    area: (T,) px^2. center: (T, 2) x, y in frame pixels. axes: (T, 2) full
    lengths (px) of the major then minor axis of the ellipse with the same
    second moments. angle: (T,) radians, direction of the major axis from +x
    toward +y (image down), in (-pi/2, pi/2].
    """

    area: np.ndarray
    center: np.ndarray
    axes: np.ndarray
    angle: np.ndarray


def empty_pupil(n: int) -> PupilTrace:
    """A PupilTrace of n frames, all NaN (no pupil found)."""
    nan = lambda *s: np.full(s, np.nan, np.float64)  # noqa: E731
    return PupilTrace(nan(n), nan(n, 2), nan(n, 2), nan(n))


def _levels(frames: np.ndarray, box: Box, settings: PupilSettings) -> np.ndarray:
    """The ROI as float32, smoothed, with the pupil dark (inverted for a bright pupil)."""
    x = crop(np.asarray(frames), box).astype(np.float32)
    if settings.bright:
        x = 255.0 - x
    if settings.smooth > 0:
        x = ndimage.gaussian_filter(x, (0, settings.smooth, settings.smooth), mode="nearest")
    return x


def pupil_threshold(frames: np.ndarray, box: Box, settings: PupilSettings = PupilSettings()) -> float:
    """The grey level (of the smoothed ROI, inverted for a bright pupil) below which a pixel is pupil.

    frames: (T, H, W) uint8, a sample spread over the video (blinks in it do
    no harm: the levels are percentiles over all its pixels).
    """
    x = _levels(frames, box, settings)
    dark = float(np.percentile(x, 0.5))
    middle = float(np.median(x))
    return dark + settings.fraction * (middle - dark) + settings.offset


def _largest_components(mask: np.ndarray, min_area: float) -> np.ndarray:
    """(T, h, w) bool -> the largest in-frame connected component of each frame (if >= min_area)."""
    labels, n = ndimage.label(mask, structure=_IN_PLANE)
    keep = np.zeros_like(mask)
    if n == 0:
        return keep
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    frame_of = np.array([s[0].start for s in ndimage.find_objects(labels)])
    best = np.zeros(len(mask), np.int64)  # label per frame, 0 = none
    order = np.lexsort((sizes, frame_of))  # by frame, then size: the last of each frame is its largest
    last = np.r_[frame_of[order][1:] != frame_of[order][:-1], True]
    chosen = order[last]
    chosen = chosen[sizes[chosen] >= min_area]
    best[frame_of[chosen]] = chosen + 1
    keep = (labels == best[:, None, None]) & (labels > 0)
    return keep


def _moments(w: np.ndarray, rows: np.ndarray, cols: np.ndarray):
    """Per frame: total weight, centroid (x, y) and second central moments of w (T, h, w)."""
    area = w.sum(axis=(1, 2), dtype=np.float64)
    safe = np.where(area > 0, area, 1.0)
    cx = (w * cols).sum(axis=(1, 2)) / safe
    cy = (w * rows).sum(axis=(1, 2)) / safe
    dx, dy = cols[None] - cx[:, None, None], rows[None] - cy[:, None, None]
    sxx = (w * dx * dx).sum(axis=(1, 2)) / safe
    syy = (w * dy * dy).sum(axis=(1, 2)) / safe
    sxy = (w * dx * dy).sum(axis=(1, 2)) / safe
    return area, cx, cy, sxx, syy, sxy


def _rim_fits(x, filled, core, hidden, inner, outer, ok, contrast) -> np.ndarray:
    """(T, 5) ellipse fits (cx, cy, a, b, angle; NaN rows where none) of the pupil's rim at sub-pixel
    positions (each rim pixel moved along the intensity gradient to where the level is halfway
    between pupil and surround), leaving out rim pixels under reflections, on a reflection's flank
    (the level goes on rising past the surround's within a few px outward) or on the ROI's edge.
    The moments cannot recover a pupil a reflection eats into; a fit of the rest of its rim can."""
    gy, gx = np.gradient(x, axis=(1, 2))
    edge = filled & ~core & ~hidden & ok[:, None, None]
    edge[:, 0, :] = edge[:, -1, :] = edge[:, :, 0] = edge[:, :, -1] = False
    t, r, c = np.nonzero(edge)
    g = np.stack([gx[t, r, c], gy[t, r, c]], axis=1)
    norm = np.linalg.norm(g, axis=1)
    nx, ny = g[:, 0] / np.maximum(norm, 1e-6), g[:, 1] / np.maximum(norm, 1e-6)
    h, w = x.shape[1:]
    ahead = np.max([x[t, np.clip(np.rint(r + ny * d).astype(int), 0, h - 1), np.clip(np.rint(c + nx * d).astype(int), 0, w - 1)]
                    for d in (2, 3, 4, 5)], axis=0)
    clean = (ahead <= outer[t] + contrast) & (norm > 1e-6)
    t, r, c, nx, ny, norm = t[clean], r[clean], c[clean], nx[clean], ny[clean], norm[clean]
    step = np.clip((0.5 * (inner[t] + outer[t]) - x[t, r, c]) / norm, -1.5, 1.5)
    fits = fit_ellipses(t, c + nx * step, r + ny * step, len(x))
    fits[~((0.5 <= fits[:, 3]) & (fits[:, 3] <= fits[:, 2]) & (fits[:, 2] <= max(h, w)))] = np.nan
    return fits


def _masked_median(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per frame median of x over mask (NaN where empty): (T, h, w) -> (T,). One sort for all
    frames (the unmasked pixels sort last as +inf), not a median per frame."""
    flat = np.sort(np.where(mask, x, np.inf).reshape(len(x), -1), axis=1)
    count = mask.reshape(len(x), -1).sum(axis=1)
    rows = np.arange(len(x))
    lo, hi = flat[rows, np.maximum(count - 1, 0) // 2], flat[rows, np.maximum(count, 1) // 2 - (count == 0)]
    return np.where(count > 0, (lo.astype(np.float64) + hi) / 2, np.nan)


def measure_pupil(frames: np.ndarray, box: Box, threshold: float,
                  settings: PupilSettings = PupilSettings()) -> PupilTrace:
    """Pupil of each frame of a chunk: frames (T, H, W) uint8, box (x0, y0, x1, y1), threshold
    from `pupil_threshold` (same settings). Pure: no state between chunks."""
    n = len(frames)
    if n == 0:
        return empty_pupil(0)
    x = _levels(frames, box, settings)
    found = _largest_components(x < threshold, settings.min_area)
    # Work on the chunk's pupils' bounding box plus a margin that holds the ring and the look-ahead
    rows, cols = np.flatnonzero(found.any(axis=(0, 2))), np.flatnonzero(found.any(axis=(0, 1)))
    if len(rows) == 0:
        return empty_pupil(n)
    r0, c0 = max(rows[0] - _MARGIN, 0), max(cols[0] - _MARGIN, 0)
    r1, c1 = min(rows[-1] + _MARGIN + 1, x.shape[1]), min(cols[-1] + _MARGIN + 1, x.shape[2])
    x, found = x[:, r0:r1, c0:c1], found[:, r0:r1, c0:c1]
    # Pad one empty frame each side: holes then never touch the array's border in time.
    padded = np.pad(found, ((1, 1), (0, 0), (0, 0)))
    if settings.close > 0:
        disk = _disk_offsets(settings.close)
        padded = _erode(_dilate(padded, disk), disk)
    filled = ndimage.binary_fill_holes(padded, structure=_IN_PLANE)[1:-1]
    core = _erode(filled)
    grown = [filled]  # grown[k]: filled dilated k times
    for _ in range(5):
        grown.append(_dilate(grown[-1]))
    rim = grown[2] & ~core
    ring = grown[5] & ~grown[3]
    # The pupil's own level from its dark core (reflections excluded), the surround's from a ring.
    inner = _masked_median(x, core & (x < threshold))
    outer = _masked_median(x, ring)
    ok = filled.any(axis=(1, 2)) & np.isfinite(inner) & np.isfinite(outer)
    ok &= (outer - inner) >= settings.min_contrast
    span = np.where(ok, outer - inner, 1.0).astype(np.float32)[:, None, None]
    soft = np.clip((outer.astype(np.float32)[:, None, None] - x) / span, 0.0, 1.0)
    known = np.where(core, np.float32(1.0), np.where(rim, soft, np.float32(0.0))) * ok[:, None, None]
    # Reflections (much brighter than the surround, grown by their blurred flanks) hide what is
    # under them: those pixels count as pupil where they fall inside the fitted ellipse, which is
    # refitted until it settles (the original fills its "reflector" pixels the same way).
    glare = x > (outer + 2 * settings.min_contrast)[:, None, None]
    hidden = _dilate(_dilate(glare))
    hidden &= grown[4] & ok[:, None, None]
    known = np.where(hidden, 0.0, known)
    rows, cols = np.mgrid[0:x.shape[1], 0:x.shape[2]]
    w = known
    for _ in range(_REFITS):
        area, cx, cy, sxx, syy, sxy = _moments(w, rows, cols)
        det = np.maximum(sxx * syy - sxy ** 2, 1e-9)
        dx, dy = cols[None] - cx[:, None, None], rows[None] - cy[:, None, None]
        # inside the uniform ellipse with these moments: d' S^-1 d <= 4
        m = (syy[:, None, None] * dx * dx - 2 * sxy[:, None, None] * dx * dy + sxx[:, None, None] * dy * dy) \
            / det[:, None, None]
        w = known + hidden * (m <= 4.0)
    area, cx, cy, sxx, syy, sxy = _moments(w, rows, cols)
    ok &= area >= settings.min_area
    out = empty_pupil(n)
    if not ok.any():
        return out
    # moments first (every found frame), then the rim's ellipse where it fits
    half_diff = np.sqrt(((sxx - syy) / 2) ** 2 + sxy ** 2)
    lam_major, lam_minor = (sxx + syy) / 2 + half_diff, np.maximum((sxx + syy) / 2 - half_diff, 0.0)
    angle = 0.5 * np.arctan2(2 * sxy, sxx - syy)  # a uniform ellipse of semi-axis a: variance a^2 / 4
    fits = np.stack([cx, cy, 2 * np.sqrt(lam_major), 2 * np.sqrt(lam_minor), angle, area], axis=1)
    rim = _rim_fits(x, filled, core, hidden, inner, outer, ok, settings.min_contrast)
    # The rim's ellipse is trusted only near the moments' area: far above it, the rim points were
    # mostly a lid's edge or a reflection's (a wild conic); the moments then are the better guess.
    with np.errstate(invalid="ignore", divide="ignore"):
        agree = np.pi * rim[:, 2] * rim[:, 3] / area
    fitted = np.isfinite(rim[:, 0]) & (agree >= _RIM_AGREE[0]) & (agree <= _RIM_AGREE[1])
    fits[fitted, :5] = rim[fitted]
    fits[fitted, 5] = np.pi * rim[fitted, 2] * rim[fitted, 3]
    fits = fits[ok]
    ang = np.where(fits[:, 4] <= -np.pi / 2, fits[:, 4] + np.pi, fits[:, 4])
    out.area[ok] = fits[:, 5]
    out.center[ok] = fits[:, :2] + np.array([box[0] + c0, box[1] + r0], np.float64)
    out.axes[ok] = 2.0 * fits[:, 2:4]
    out.angle[ok] = ang
    return out
    area, cx, cy, sxx, syy, sxy = (v[ok] for v in (area, cx, cy, sxx, syy, sxy))
    # eigenvalues of [[sxx, sxy], [sxy, syy]]; a uniform ellipse of semi-axis a has variance a^2 / 4
    half_diff = np.sqrt(((sxx - syy) / 2) ** 2 + sxy ** 2)
    lam_major, lam_minor = (sxx + syy) / 2 + half_diff, np.maximum((sxx + syy) / 2 - half_diff, 0.0)
    angle = 0.5 * np.arctan2(2 * sxy, sxx - syy)
    angle = np.where(angle <= -np.pi / 2, angle + np.pi, angle)
    out.area[ok] = area
    out.center[ok] = np.stack([cx + box[0], cy + box[1]], axis=1)
    out.axes[ok] = 4.0 * np.sqrt(np.stack([lam_major, lam_minor], axis=1))
    out.angle[ok] = angle
    return out
