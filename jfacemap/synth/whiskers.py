"""Whiskers pre-rendered at every quantised whisking angle.

A whisker is a quadratic curve from its follicle on the pad, sweeping back
and bending down, tapering in width and opacity toward the tip. All whiskers
of one whisking level are rasterised into one layer (an anti-aliased
coverage), so per frame the renderer only picks the layer of the frame's
quantised angle and composites it: out = canvas * mul + add.

A few whiskers of the far side of the face stick out in front of the snout
(as in real side views); the head hides their bases.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from jfacemap.synth.geometry import Camera, Layout, WHISK_LEVELS, whisk_level_angle

_SEGMENT_PX = 2.5  # longest segment of a whisker polyline, pixels


def _curves(L: Layout, angle: float, scale: float, far: dict):
    """Polylines (list of (n, 2) head-unit arrays), base widths and opacities at one angle."""
    w = L.whiskers
    bu, bv = w.bases(angle)
    psi = w.directions(angle)
    lines, widths, alphas = [], [], []
    for i in range(len(w.base_u)):
        n = max(4, int(np.ceil(w.length[i] * scale / _SEGMENT_PX)))
        s = np.linspace(0.0, w.length[i], n + 1)
        du, dv = np.cos(psi[i]), np.sin(psi[i])
        nu, nv = dv, -du  # bend down-forward
        bend = w.curvature[i] * s * s / w.length[i]
        lines.append(np.stack([bu[i] + s * du + bend * nu, bv[i] + s * dv + bend * nv], axis=1))
        widths.append(1.0)
        alphas.append(0.95 if w.opacity is None else float(w.opacity[i]))
    for k in range(len(far["u"])):
        length = far["length"][k]
        n = max(4, int(np.ceil(length * scale / _SEGMENT_PX)))
        s = np.linspace(0.0, length, n + 1)
        psi_k = far["psi"][k] + np.deg2rad(0.6 * angle)
        du, dv = np.cos(psi_k), np.sin(psi_k)
        nu, nv = -dv, du
        bend = far["curvature"][k] * s * s / length
        lines.append(np.stack([far["u"][k] + s * du + bend * nu, far["v"][k] + s * dv + bend * nv], axis=1))
        widths.append(0.8)
        alphas.append(0.55)
    return lines, np.array(widths), np.array(alphas)


def _segments(lines, widths, alphas, cam: Camera, px_width: float):
    """Flatten polylines into pixel segments with interpolated width and opacity at both ends."""
    a_list, b_list, w_list, o_list = [], [], [], []
    for line, w0, o0 in zip(lines, widths, alphas):
        x, y = cam.to_pixel(line[:, 0], line[:, 1])
        pts = np.stack([x, y], axis=1)
        t = np.linspace(0.0, 1.0, len(pts))
        width = px_width * w0 * (1.0 - 0.75 * t)
        opacity = o0 * (1.0 - 0.45 * t)
        a_list.append(pts[:-1])
        b_list.append(pts[1:])
        w_list.append(np.stack([width[:-1], width[1:]], axis=1))
        o_list.append(np.stack([opacity[:-1], opacity[1:]], axis=1))
    return np.concatenate(a_list), np.concatenate(b_list), np.concatenate(w_list), np.concatenate(o_list)


def _raster(flat: np.ndarray, shape, y0, x0, a, b, width, opacity, stencil: int):
    """Max-composite anti-aliased segments into `flat` (h*w), pixel centres at integers."""
    h, w = shape
    mid = 0.5 * (a + b)
    ox = np.floor(mid[:, 0]).astype(np.int64) - stencil // 2 + 1
    oy = np.floor(mid[:, 1]).astype(np.int64) - stencil // 2 + 1
    k = np.arange(stencil)
    px = (ox[:, None, None] + k[None, None, :]).astype(np.float64)
    py = (oy[:, None, None] + k[None, :, None]).astype(np.float64)
    ab = b - a
    length2 = np.maximum((ab**2).sum(axis=1), 1e-12)[:, None, None]
    t = ((px - a[:, 0, None, None]) * ab[:, 0, None, None] + (py - a[:, 1, None, None]) * ab[:, 1, None, None]) / length2
    t = np.clip(t, 0.0, 1.0)
    dx = px - (a[:, 0, None, None] + t * ab[:, 0, None, None])
    dy = py - (a[:, 1, None, None] + t * ab[:, 1, None, None])
    dist = np.sqrt(dx * dx + dy * dy)
    wd = width[:, 0, None, None] * (1 - t) + width[:, 1, None, None] * t
    op = opacity[:, 0, None, None] * (1 - t) + opacity[:, 1, None, None] * t
    # overlap of a line of width wd with a unit pixel (1-D box filter across the line)
    cover = np.clip(np.minimum(dist + 0.5 * wd, 0.5) - np.maximum(dist - 0.5 * wd, -0.5), 0.0, 1.0)
    alpha = cover * op
    iy = py.astype(np.int64) - y0
    ix = px.astype(np.int64) - x0
    iy, ix = np.broadcast_arrays(iy, ix)
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w) & (alpha > 0)
    np.maximum.at(flat, (iy[ok] * w + ix[ok]), alpha[ok])


def _far_side(p, L: Layout, rng: np.random.Generator) -> dict:
    n = 7
    return {
        "u": L.snout_a[0] + rng.uniform(8, 24, n),
        "v": L.snout_a[1] + rng.uniform(-4, 16, n),
        "psi": np.deg2rad(np.linspace(-38, 30, n) + rng.normal(0, 4, n)),
        "length": p.whisker_length * rng.uniform(0.8, 1.05, n),
        "curvature": p.whisker_curvature * rng.uniform(0.5, 1.2, n),
    }


class WhiskerLayers:
    """Whisker layers for all WHISK_LEVELS angles, each rendered the first time it is needed.

    Per level q, the composite is `canvas[y0:, x0:] * mul[q] + add[q]`. Layers
    are built lazily (a short call renders only the angles it uses) and are
    deterministic, so the build order does not matter.
    `head_cover` (H, W): coverage of the head at rest; it hides the far-side whiskers.
    `brightness`: the whiskers' albedo (default `p.whisker_brightness`).
    """

    def __init__(self, p, L: Layout, cam: Camera, head_cover: np.ndarray, edge_sigma: float,
                 brightness: float | None = None):
        size = head_cover.shape[0]
        rng = np.random.default_rng(p.whisker_seed + 7)
        far = _far_side(p, L, rng)
        self.angles = whisk_level_angle(np.arange(WHISK_LEVELS))
        px_width = p.whisker_width * cam.scale
        self.segments = []
        lo = np.array([np.inf, np.inf])
        hi = -lo
        for angle in self.angles:
            lines, widths, alphas = _curves(L, angle, cam.scale, far)
            segs = _segments(lines, widths, alphas, cam, px_width)
            self.segments.append(segs)
            pts = np.concatenate([segs[0], segs[1]])
            lo, hi = np.minimum(lo, pts.min(axis=0)), np.maximum(hi, pts.max(axis=0))
        # a square around each segment's middle that holds the segment, its width and the anti-aliasing
        self.stencil = 2 * int(np.ceil(0.5 * (_SEGMENT_PX + px_width) + 1.5))
        margin = self.stencil
        self.x0 = x0 = int(np.clip(np.floor(lo[0]) - margin, 0, size))
        self.y0 = y0 = int(np.clip(np.floor(lo[1]) - margin, 0, size))
        x1 = int(np.clip(np.ceil(hi[0]) + margin, 0, size))
        y1 = int(np.clip(np.ceil(hi[1]) + margin, 0, size))
        self.h, self.w = max(y1 - y0, 0), max(x1 - x0, 0)
        self.n_seg_near = sum(max(4, int(np.ceil(n * cam.scale / _SEGMENT_PX))) for n in L.whiskers.length)
        self.hide = 1.0 - head_cover[y0:y1, x0:x1]
        self.p, self.L, self.cam, self.edge_sigma = p, L, cam, edge_sigma
        self.brightness = p.whisker_brightness if brightness is None else float(brightness)
        self.mul = np.empty((WHISK_LEVELS, self.h, self.w), np.float32)
        self.add = np.empty((WHISK_LEVELS, self.h, self.w), np.float32)
        self.built = np.zeros(WHISK_LEVELS, bool)

    def ensure(self, levels) -> None:
        """Build the layers of `levels` that are not built yet."""
        for q in np.unique(levels):
            if not self.built[q]:
                self._build(int(q))
                self.built[q] = True

    def _build(self, q: int) -> None:
        h, w, y0, x0, cam = self.h, self.w, self.y0, self.x0, self.cam
        if not (h and w):
            return
        a, b, wd, op = self.segments[q]
        k = self.n_seg_near
        near = np.zeros(h * w)
        farl = np.zeros(h * w)
        _raster(near, (h, w), y0, x0, a[:k], b[:k], wd[:k], op[:k], self.stencil)
        _raster(farl, (h, w), y0, x0, a[k:], b[k:], wd[k:], op[k:], self.stencil)
        alpha = np.maximum(near.reshape(h, w), farl.reshape(h, w) * self.hide)
        # follicles: darker dots at every near-side base (they move with the pad)
        bu, bv = self.L.whiskers.bases(self.angles[q])
        bx, by = cam.to_pixel(bu, bv)
        follicle_r = 1.25 * cam.scale
        dot = np.zeros((h, w))
        for xb, yb in zip(bx, by):
            r0, c0 = int(np.floor(yb)) - 4 - y0, int(np.floor(xb)) - 4 - x0
            rows = slice(min(max(r0, 0), h), min(max(r0 + 9, 0), h))
            cols = slice(min(max(c0, 0), w), min(max(c0 + 9, 0), w))
            fy, fx = np.mgrid[rows, cols]
            d = np.hypot(fx + x0 - xb, fy + y0 - yb)
            dot[rows, cols] = np.maximum(dot[rows, cols], np.clip(0.5 + follicle_r - d, 0.0, 1.0))
        if self.edge_sigma > 0:
            alpha = ndimage.gaussian_filter(alpha, self.edge_sigma, mode="constant")
            dot = ndimage.gaussian_filter(dot, self.edge_sigma, mode="constant")
        darken = 1.0 - 0.3 * dot
        self.mul[q] = (1.0 - alpha) * darken
        self.add[q] = alpha * darken * self.brightness
