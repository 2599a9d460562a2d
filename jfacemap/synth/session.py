"""A synthetic recording session: one mouse, one camera, one behaviour, rendered lazily."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from jfacemap import DEFAULT_FPS
from jfacemap.errors import JfacemapError
from jfacemap.skeleton import FACEMAP_BODYPARTS
from jfacemap.synth.behavior import BehaviorLatents, simulate_behavior
from jfacemap.synth.face import STYLES, FaceParams, get_renderer, render_frames, sample_face_params
from jfacemap.synth.roi_scene import IRIS, RoiScene, apply_scene, draw_treadmill, make_scene, scene_truth

RENDER_CHUNK = 250  # frames rendered (and written) at once: bounds a session's memory


@dataclass(frozen=True)
class SyntheticSession:
    """`params` (who and how filmed), `latents` (what it does); frames are rendered on demand.

    scene: the opt-in ROI ground truth (lit iris, known pupil and blinks, a
    treadmill); None renders the plain session.
    """

    params: FaceParams
    latents: BehaviorLatents
    bodyparts: tuple[str, ...] = FACEMAP_BODYPARTS
    scene: RoiScene | None = None

    @property
    def n_frames(self) -> int:
        return self.latents.n_frames

    def __len__(self) -> int:
        return self.n_frames

    @property
    def fps(self) -> float:
        return self.latents.fps

    def render(self, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frames [start, stop): ((B, H, W) uint8, (B, 15, 3) float32 x, y, likelihood)."""
        if self.scene is None:
            return render_frames(self.params, self.latents, start, stop)
        frames, keypoints = render_frames(self.params, self.latents, start, stop, iris=IRIS)
        draw_treadmill(frames, self.scene, start)
        return frames, keypoints

    def roi_truth(self) -> dict[str, np.ndarray]:
        """Ground truth of the ROI measures (`roi_scene.scene_truth`); needs a session made with roi=True."""
        if self.scene is None:
            raise JfacemapError("this session has no ROI scene: make it with roi=True")
        return scene_truth(get_renderer(self.params), self.latents, self.scene)

    def keypoints(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Ground truth only (no pixels), (B, 15, 3): cheap."""
        stop = self.n_frames if stop is None else stop
        return get_renderer(self.params).keypoints(self.latents.slice(start, stop))

    def iter_chunks(self, chunk_size: int = RENDER_CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (frames, keypoints) chunk by chunk; memory is bounded by `chunk_size` frames."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        for start in range(0, self.n_frames, chunk_size):
            yield self.render(start, min(self.n_frames, start + chunk_size))


class SessionArgumentError(JfacemapError):
    """Arguments no synthetic session can have (a JfacemapError: one line in the CLI)."""


def check_session_args(n_frames: int, seed: int, style: str, size: int, fps: float) -> None:
    """SessionArgumentError (one line, naming the parameter) for arguments no session can have."""
    if n_frames < 1:
        raise SessionArgumentError(f"n_frames must be at least 1, got {n_frames}")
    if seed < 0:
        raise SessionArgumentError(f"seed must be 0 or more, got {seed}")
    if style not in STYLES:
        raise SessionArgumentError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")
    if size < 32:
        raise SessionArgumentError(f"size must be at least 32 pixels, got {size}")
    if not (np.isfinite(fps) and 1.0 <= fps <= 1000.0):
        raise SessionArgumentError(f"fps must be between 1 and 1000 Hz, got {fps}")


def make_session(
    n_frames: int, seed: int = 0, style: str = "lab1", size: int = 256, fps: float = DEFAULT_FPS,
    roi: bool = False,
) -> SyntheticSession:
    """A session of `n_frames` at `fps`: mouse, camera and behaviour all follow from `seed`.

    roi: add the ROI ground-truth scene (`jfacemap.synth.roi_scene`): known
    pupil and blinks, a lit iris and a moving treadmill. Off, the session is
    exactly the one every earlier version rendered.
    """
    check_session_args(n_frames, seed, style, size, fps)
    params = sample_face_params(seed, style=style, size=size)
    latents = simulate_behavior(n_frames, seed=seed, fps=fps)
    if not roi:
        return SyntheticSession(params=params, latents=latents)
    scene = make_scene(n_frames, seed, size, fps)
    return SyntheticSession(params=params, latents=apply_scene(latents, scene), scene=scene)
