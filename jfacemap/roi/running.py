"""Running: (dx, dy) between consecutive frames of a treadmill / ball ROI, by phase correlation.

As the original: each frame's ROI, mean removed and its edges tapered (here
by a Hann window), is Fourier transformed; the cross-power spectrum of
consecutive frames is whitened (phase only) and smoothed by a Gaussian of
`sigma` px, and the peak of its inverse transform is the shift. Unlike the original (whole pixels),
the peak is refined to sub-pixel by a parabola through the log of the peak
and its neighbours along each axis, exact for the Gaussian-shaped peak the
smoothing gives. Shifts larger than `max_shift` of the ROI's side are not
looked for (the original: 40 %).

Sign: row t is where the content of frame t-1 moved to in frame t
(dx > 0: rightward, dy > 0: downward, px per frame). One jitted JAX function
does a whole chunk (FFTs batched over frames).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jfacemap.roi.box import Box, crop

__all__ = ["phase_shifts", "measure_running"]

_EPS = 1e-6


def _taper(h: int, w: int) -> np.ndarray:
    """A Hann window over the ROI. The original's taper (sigmoids at the edges) leaves more of the
    content that enters and leaves the ROI in the correlation: on a moving texture its shifts are
    off by up to 0.15 px, with Hann's 0.06."""
    return np.outer(np.hanning(h + 2)[1:-1], np.hanning(w + 2)[1:-1]).astype(np.float32)


def _gaussian_spectrum(h: int, w: int, sigma: float) -> np.ndarray:
    """Fourier transform of a unit-sum Gaussian of std `sigma` px centred at (0, 0), (h, w) real."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    return np.exp(-2 * (np.pi * sigma) ** 2 * (fy ** 2 + fx ** 2)).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("max_shift", "sigma"))
def _shifts(frames: jax.Array, max_shift: float, sigma: float) -> jax.Array:
    """(T + 1, h, w) float32 -> (T, 2) float32 (dx, dy) of frame t + 1 relative to frame t."""
    _, h, w = frames.shape
    x = frames - frames.mean(axis=(1, 2), keepdims=True)
    f = jnp.fft.rfft2(x * _taper(h, w))
    cross = f[1:] * jnp.conj(f[:-1])
    cross = cross / (jnp.abs(cross) + _EPS) * _gaussian_spectrum(h, w, sigma)[:, : w // 2 + 1]
    cc = jnp.fft.irfft2(cross, s=(h, w))  # peak at (dy, dx) modulo (h, w)
    ly, lx = max(1, int(h * max_shift)), max(1, int(w * max_shift))
    cc = jnp.roll(cc, (ly, lx), axis=(1, 2))[:, : 2 * ly + 1, : 2 * lx + 1]  # shifts -l..l
    n = cc.shape[0]
    flat = cc.reshape(n, -1).argmax(axis=1)
    iy, ix = flat // (2 * lx + 1), flat % (2 * lx + 1)
    t = jnp.arange(n)

    def refine(pos, size, axis_y):
        lo, hi = jnp.clip(pos - 1, 0, size - 1), jnp.clip(pos + 1, 0, size - 1)
        at = lambda yy, xx: jnp.log(jnp.maximum(cc[t, yy, xx], _EPS))  # noqa: E731
        c0 = at(iy, ix)
        cm, cp = (at(lo, ix), at(hi, ix)) if axis_y else (at(iy, lo), at(iy, hi))
        curv = cm - 2 * c0 + cp
        step = jnp.where(curv < 0, 0.5 * (cm - cp) / jnp.where(curv < 0, curv, -1.0), 0.0)
        inside = (pos > 0) & (pos < size - 1)
        return pos + jnp.where(inside, jnp.clip(step, -0.5, 0.5), 0.0)

    dy = refine(iy, 2 * ly + 1, True) - ly
    dx = refine(ix, 2 * lx + 1, False) - lx
    return jnp.stack([dx, dy], axis=1).astype(jnp.float32)


def phase_shifts(frames: np.ndarray, max_shift: float = 0.4, sigma: float = 1.5, pad_to: int | None = None) -> np.ndarray:
    """Shifts between consecutive frames of a crop: (T, h, w) -> (T - 1, 2) float32 (dx, dy) px.

    pad_to: run on at least this many frames (repeating the last), so that
    chunks of a video share one compiled shape; the extra rows are dropped.
    """
    frames = np.asarray(frames, np.float32)
    n = len(frames)
    if n < 2:
        return np.zeros((0, 2), np.float32)
    if pad_to is not None and n < pad_to:
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad_to - n, axis=0)])
    return np.asarray(_shifts(jnp.asarray(frames), float(max_shift), float(sigma)))[: n - 1]


def measure_running(frames: np.ndarray, box: Box, previous: np.ndarray | None = None,
                    max_shift: float = 0.4, sigma: float = 1.5, pad_to: int | None = None) -> np.ndarray:
    """(dx, dy) per frame of a chunk: frames (T, H, W) uint8 -> (T, 2) float32 px/frame.

    previous: the ROI of the frame before the chunk ((h, w), from the last
    chunk), so chunked and whole-video results agree; None (the video's first
    chunk): row 0 is (0, 0). pad_to: see `phase_shifts` (chunk size + 1
    compiles once for a whole video).
    """
    roi = crop(np.asarray(frames), box)
    if previous is not None:
        roi = np.concatenate([np.asarray(previous)[None], roi])
    shifts = phase_shifts(roi, max_shift, sigma, pad_to)
    if previous is None:
        shifts = np.concatenate([np.zeros((min(1, len(roi)), 2), np.float32), shifts])
    return shifts
