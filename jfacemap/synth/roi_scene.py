"""Opt-in ground truth for the ROI measures (pupil, blink, running): `make_session(..., roi=True)`.

A session with a scene differs from the plain one (same seed) in three ways,
and only then; plain sessions render exactly as before:

* pupil: the radius follows a known slow trace (three sinusoids at 0.1-1 Hz,
  arousal-like), in units of the eye's half height, replacing the latent one;
  the eyeball around the pupil is lit (`IRIS` grey levels), as under IR, so
  the pupil stands out as in real eye videos.
* blinks: full closures (0.2-0.3 s, ~0.4 per second, at least 1 s apart) at
  known frames, replacing the latent ones; they occlude the pupil.
* treadmill: a band-limited random texture in a box near the bottom-left
  corner, moving by a known (dx, dy) px per frame (drawn over the face).

Ground truth (`scene_truth`), per frame: the visible pupil (the disc inside
the lid opening): area px^2, centre x, y px, full-disc diameter px; blink
intervals (frames with the lids more than half closed); running (dx, dy).
Boxes (x0, y0, x1, y1, ends exclusive) of the eye and the treadmill come
with it, for `jfacemap roi`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from jfacemap.synth import geometry as g
from jfacemap.synth.behavior import BehaviorLatents

__all__ = ["RoiScene", "make_scene", "apply_scene", "scene_truth", "draw_treadmill", "IRIS"]

IRIS = 30.0  # grey levels added to the eyeball outside the pupil
BLINK_CLOSED = 0.5  # lid closure above which a frame is in a blink (ground truth)
_TEXTURE = 128  # side of the periodic treadmill texture (px), at least; grows to hold the box
_SUBSAMPLE = 40  # grid points per pupil diameter for the visible-area integral


@dataclass(frozen=True)
class RoiScene:
    """pupil, blink: (T,) latents that replace the session's; running: (T, 2) dx, dy px/frame
    (row 0 is 0); treadmill: its box; seed: of the texture and its noise."""

    pupil: np.ndarray
    blink: np.ndarray
    running: np.ndarray
    treadmill: tuple[int, int, int, int]
    seed: int


def _stream(seed: int, k: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), 16, k]))


def _pupil_trace(rng: np.random.Generator, n: int, fps: float) -> np.ndarray:
    t = np.arange(n) / fps
    freqs = rng.uniform([0.1, 0.25, 0.5], [0.2, 0.5, 1.0])
    amps = np.array([0.12, 0.06, 0.03])
    phases = rng.uniform(0, 2 * np.pi, 3)
    return 0.42 + (amps * np.sin(2 * np.pi * freqs * t[:, None] + phases)).sum(axis=1)


def _blink_trace(rng: np.random.Generator, n: int, fps: float) -> np.ndarray:
    closure = np.zeros(n)
    t = int(rng.exponential(fps / 0.4))
    while t < n:
        length = int(np.ceil(rng.uniform(0.2, 0.3) * fps))
        s = np.arange(length + 1) / length
        profile = np.where(s < 0.35, np.sin(0.5 * np.pi * s / 0.35) ** 2,
                           np.cos(0.5 * np.pi * np.clip((s - 0.35) / 0.65, 0, 1)) ** 2)
        stop = min(n, t + len(s))
        closure[t:stop] = profile[: stop - t]
        t += len(s) + int(fps) + int(rng.exponential(fps / 0.4))
    return closure


def _running(rng: np.random.Generator, n: int, fps: float) -> np.ndarray:
    t = np.arange(n) / fps
    f, phase = rng.uniform(0.05, 0.2, 2), rng.uniform(0, 2 * np.pi, 2)
    dx = 1.5 + 1.5 * np.sin(2 * np.pi * f[0] * t + phase[0])
    dy = 0.4 * np.sin(2 * np.pi * f[1] * t + phase[1])
    out = np.stack([dx, dy], axis=1) + rng.normal(0.0, 0.15, (n, 2))
    out[0] = 0.0
    return out


def make_scene(n_frames: int, seed: int, size: int, fps: float) -> RoiScene:
    """The scene of a session (deterministic per seed, independent of the behaviour's streams)."""
    box = (int(0.05 * size), int(0.78 * size), int(0.40 * size), int(0.97 * size))
    return RoiScene(_pupil_trace(_stream(seed, 0), n_frames, fps).astype(np.float32),
                    _blink_trace(_stream(seed, 1), n_frames, fps).astype(np.float32),
                    _running(_stream(seed, 2), n_frames, fps).astype(np.float32), box, int(seed))


def apply_scene(latents: BehaviorLatents, scene: RoiScene) -> BehaviorLatents:
    """The latents with the scene's pupil and blinks."""
    return dataclasses.replace(latents, pupil=scene.pupil, blink=scene.blink)


def _texture_side(box) -> int:
    x0, y0, x1, y1 = box
    return max(_TEXTURE, 1 << int(np.ceil(np.log2(max(x1 - x0, y1 - y0) + 16))))


def _texture(seed: int, side: int) -> np.ndarray:
    """(N, N) periodic band-limited texture, mean 0, std 1, as its Fourier transform."""
    noise = _stream(seed, 3).standard_normal((side, side))
    f = np.fft.fftfreq(side)
    spectrum = np.fft.fft2(noise) * np.exp(-2 * (np.pi * 1.5) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    return spectrum / np.sqrt(np.mean(np.abs(np.fft.ifft2(spectrum)) ** 2))


def draw_treadmill(frames: np.ndarray, scene: RoiScene, start: int) -> None:
    """Paint the moving texture into frames [start, start + B) (B, H, W) uint8, in place.

    Content at frame t is the texture shifted by the summed running up to t
    (Fourier shift: exact at sub-pixel offsets), plus sensor noise seeded per frame.
    """
    x0, y0, x1, y1 = scene.treadmill
    offsets = np.cumsum(scene.running.astype(np.float64), axis=0)[start:start + len(frames)]
    side = _texture_side(scene.treadmill)
    spectrum = _texture(scene.seed, side)
    f = np.fft.fftfreq(side)
    for i, (ox, oy) in enumerate(offsets):
        phase = np.exp(-2j * np.pi * (f[:, None] * oy + f[None, :] * ox))
        img = np.real(np.fft.ifft2(spectrum * phase))[: y1 - y0, : x1 - x0]
        noise = _stream(scene.seed, 1000 + start + i).normal(0.0, 2.0, img.shape)
        frames[i, y0:y1, x0:x1] = np.clip(110.0 + 35.0 * img + noise + 0.5, 0, 255).astype(np.uint8)


def _eye_frame(renderer, latents: BehaviorLatents):
    """Per frame: eye centre (u, v), lid factors, and the pupil centre / radius in eye coordinates."""
    L = renderer.L
    f64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
    cu, cv, ku, kl = g.eye_state(L, f64(latents.eye_x), f64(latents.eye_y), f64(latents.blink))
    pu, pv = f64(latents.eye_x) * (0.35 * L.eye_a), f64(latents.eye_y) * (0.3 * L.eye_b)
    return cu, cv, ku, kl, pu, pv, f64(latents.pupil) * L.eye_b


def scene_truth(renderer, latents: BehaviorLatents, scene: RoiScene, chunk: int = 500) -> dict[str, np.ndarray]:
    """Ground truth of a scene session (latents already with the scene applied).

    pupil_area (T,) px^2 and pupil_center (T, 2) x, y px of the visible pupil
    (NaN when under 1 px^2 shows); pupil_diameter (T,) px of the full disc;
    blink (T,) lid closure; blink_intervals (E, 2) first, last frame with
    closure > BLINK_CLOSED; running (T, 2); eye_box, treadmill_box (4,).
    """
    L, cam = renderer.L, renderer.cam
    cu, cv, ku, kl, pu, pv, rp = _eye_frame(renderer, latents)
    a, b, tilt = L.eye_a, L.eye_b, L.eye_tilt
    k = (np.arange(_SUBSAMPLE) + 0.5) / _SUBSAMPLE * 2 - 1  # unit-disc grid
    gx, gy = np.meshgrid(k, k)
    disc = gx ** 2 + gy ** 2 <= 1
    gx, gy = gx[disc], gy[disc]
    area = np.full(len(cu), np.nan)
    centre = np.full((len(cu), 2), np.nan)
    for s in range(0, len(cu), chunk):
        sl = slice(s, s + chunk)
        x = pu[sl, None] + rp[sl, None] * gx
        y = pv[sl, None] + rp[sl, None] * gy
        half = b * np.sqrt(np.clip(1 - (x / a) ** 2, 0, 1))
        seen = (np.abs(x) < a) & (y > ku[sl, None] * half) & (y < kl[sl, None] * half)
        frac = seen.mean(axis=1)
        cell = np.pi * (rp[sl] * renderer.px) ** 2  # px^2 of the whole disc
        area[sl] = np.where(frac * cell >= 1.0, frac * cell, np.nan)
        with np.errstate(invalid="ignore"):
            mx = (x * seen).sum(axis=1) / seen.sum(axis=1)
            my = (y * seen).sum(axis=1) / seen.sum(axis=1)
        du, dv = g.rotate(mx, my, tilt)
        px, py = cam.to_pixel(cu[sl] + du, cv[sl] + dv)
        ok = np.isfinite(area[sl])
        centre[sl] = np.where(ok[:, None], np.stack([px, py], axis=1), np.nan)
    closed = np.asarray(latents.blink) > BLINK_CLOSED
    edges = np.diff(np.r_[0, closed.astype(np.int8), 0])
    intervals = np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1], axis=1)
    return {
        "pupil_area": area, "pupil_center": centre, "pupil_diameter": 2 * rp * renderer.px,
        "blink": np.asarray(latents.blink, np.float64), "blink_intervals": intervals.astype(np.int64),
        "running": scene.running.astype(np.float64), "eye_box": np.array(eye_box(renderer), np.int64),
        "treadmill_box": np.array(scene.treadmill, np.int64),
    }


def eye_box(renderer, margin: float = 4.0) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) px around the lid opening at every gaze (plus `margin` px), clipped to the frame."""
    L, cam = renderer.L, renderer.cam
    t = np.linspace(0, 2 * np.pi, 64)
    reach_u, reach_v = L.eye_a + max(g.EYE_SHIFT), L.eye_b + max(g.EYE_SHIFT)
    du, dv = g.rotate(reach_u * np.cos(t), reach_v * np.sin(t), L.eye_tilt)
    x, y = cam.to_pixel(L.eye[0] + du, L.eye[1] + dv)
    size = renderer.size
    return (int(max(0, np.floor(x.min() - margin))), int(max(0, np.floor(y.min() - margin))),
            int(min(size, np.ceil(x.max() + margin) + 1)), int(min(size, np.ceil(y.max() + margin) + 1)))
