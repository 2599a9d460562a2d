"""Static appearance, rendered once per session: fur, background, lighting, noise bank."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from jfacemap.synth.geometry import Camera, Layout, sd_ellipse
from jfacemap.synth.params import FaceParams


def _unit_noise(rng: np.random.Generator, shape, sigma) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return n / max(float(n.std()), 1e-9)


def fur_texture(p: FaceParams, L: Layout, cam: Camera, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Relative fur texture (about unit std, mean 0) on the pixel grid of (u, v).

    Hairs: white noise smeared along lines radiating from a point ahead of the
    nose (line integral convolution), so the strands are about a pixel wide
    everywhere and the fur flows back from the snout; plus fine grain and
    soft blotches.
    """
    rng = np.random.default_rng(p.texture_seed)
    k = p.texture_scale
    shape = u.shape
    qx, qy = cam.to_pixel(L.nose[0] + 30.0, L.nose[1] + 6.0)
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    dx, dy = xs - qx, ys - qy
    norm = np.maximum(np.hypot(dx, dy), 1e-6)
    dx, dy = dx / norm, dy / norm
    if p.pad_fur > 0:
        # near the whisker pad the hairs radiate from it: blend the two flows as axes (doubled
        # angles), so that opposite directions along one line do not cancel
        cx, cy = cam.to_pixel(*pad_centre(L))
        ex, ey = xs - cx, ys - cy
        r = np.maximum(np.hypot(ex, ey), 1e-6)
        ex, ey = ex / r, ey / r
        w = p.pad_fur * np.exp(-((r / (_PAD_FUR_RADIUS * cam.scale)) ** 2))
        c2 = (1.0 - w) * (dx * dx - dy * dy) + w * (ex * ex - ey * ey)
        s2 = (1.0 - w) * 2.0 * dx * dy + w * 2.0 * ex * ey
        theta = 0.5 * np.arctan2(s2, c2)
        dx, dy = np.cos(theta), np.sin(theta)
    strands = []
    for sigma, half_len in ((0.55 * k, 11.0 * k * cam.scale), (1.4 * k, 16.0 * k * cam.scale)):
        noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
        steps = np.linspace(-half_len, half_len, 21)
        weights = np.hanning(len(steps) + 2)[1:-1]
        acc = np.zeros(shape)
        for step, weight in zip(steps, weights):
            acc += weight * ndimage.map_coordinates(noise, [ys + step * dy, xs + step * dx], order=1, mode="mirror")
        strands.append(acc / max(float(acc.std()), 1e-9))
    fine = _unit_noise(rng, shape, 0.5)
    blotch = _unit_noise(rng, shape, 7.0 * k * cam.scale)
    streak = p.fur_streak  # < 1: softer fur, shading carried by blotches rather than strands
    return streak * (0.55 * strands[0] + 0.4 * strands[1]) + 0.15 * fine + (0.2 + 0.6 * (1.0 - streak)) * blotch


_PAD_FUR_RADIUS = 35.0  # head units: reach of the pad's radial fur (the pad is ~30 x 24)


def pad_centre(L: Layout) -> tuple[float, float]:
    """Centre of the whisker pad (head units): the mean of the whisker bases at rest."""
    return float(np.mean(L.whiskers.base_u)), float(np.mean(L.whiskers.base_v))


def fur_base(p: FaceParams, L: Layout, u, v):
    """Fur albedo without the texture: brighter toward the snout and the cheek."""
    snout = 1.0 / (1.0 + np.exp(-(u - (L.snout_a[0] - 25.0)) / 28.0))
    cheek = 1.0 / (1.0 + np.exp(-(v - (L.eye[1] + 80.0)) / 18.0))
    return p.fur_brightness * (0.62 + p.snout_gain * snout + 0.35 * cheek)


def fur_albedo(p: FaceParams, L: Layout, cam: Camera, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Unshaded fur brightness at head coordinates (brighter toward the snout and cheek), and the texture."""
    base = fur_base(p, L, u, v)
    # darker, smoother fur ring around the eye
    ring = sd_ellipse(u, v, L.eye[0], L.eye[1], L.eye_a, L.eye_b, L.eye_tilt)
    base = base * (1.0 - 0.12 * np.exp(-np.maximum(ring, 0.0) / 6.0))
    # the whisker pad is a bright, slightly raised region
    pad_u, pad_v = pad_centre(L)
    pad = sd_ellipse(u, v, pad_u, pad_v, 30.0, 24.0, np.deg2rad(15))
    base = base * (1.0 + 0.12 * np.exp(-np.maximum(pad, 0.0) / 8.0))
    tex = fur_texture(p, L, cam, u, v)
    return base * (1.0 + p.fur_contrast * tex), tex


def background(p: FaceParams, cam: Camera, shape) -> np.ndarray:
    """Background brightness (an unlit wall in lab1, a grey panel in lab2)."""
    rng = np.random.default_rng(p.texture_seed + 1)
    blotch = _unit_noise(rng, shape, 20.0 * cam.scale)
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]] / max(shape)
    ramp = 0.5 * (xs + ys) - 0.5
    return p.background * (1.0 + 0.25 * blotch + 0.3 * ramp)


def gain_map(p: FaceParams, shape) -> np.ndarray:
    """Multiplicative lighting gradient, vignetting and camera gain (pixel frame)."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w]
    xn, yn = (xs - (w - 1) / 2) / w, (ys - (h - 1) / 2) / h
    a = np.deg2rad(p.light_angle)
    light = 1.0 + p.light_strength * (np.cos(a) * xn + np.sin(a) * yn)
    vignette = 1.0 - p.vignette * np.clip((xn**2 + yn**2) / 0.5, 0.0, 1.0) ** 1.2
    return p.gain * light * vignette


def shade(d_px: np.ndarray, length_px: float) -> np.ndarray:
    """Darkening toward a silhouette (d_px: signed distance in pixels, negative inside)."""
    return 1.0 - 0.45 * np.exp(np.minimum(d_px, 0.0) / length_px)


def coverage(d_px, edge):
    """Anti-aliased, blurred coverage of a shape from its signed distance in pixels."""
    return np.clip(0.5 - d_px / edge, 0.0, 1.0)
