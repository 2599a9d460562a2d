"""Synthetic mouse faces: parameters, and frames with exact ground-truth keypoints.

`render_frames(params, latents, start, stop)` returns

* frames: (B, H, W) uint8 grayscale, IR-like side view of the face;
* keypoints: (B, 15, 3) float32 in FACEMAP_BODYPARTS order: x, y, likelihood.

Pixel convention: x to the right (column), y down (row), pixel centres at
integer coordinates: the pixel frames[b, i, j] is centred at (x, y) = (j, i)
and the frame covers [-0.5, W - 0.5) x [-0.5, H - 0.5). A keypoint is visible
when it lies in that range and the paw is not in front of it; visible
keypoints have likelihood 1, the others have x = y = NaN and likelihood 0.

The renderer of a FaceParams is built once (static face, whisker layers,
noise bank) and cached, so rendering a session chunk by chunk costs the setup
only once; the output depends only on (params, latents, frame index), so
chunked and one-shot rendering give identical bytes.
"""

from __future__ import annotations

import functools

import numpy as np

from jfacemap.synth.behavior import BehaviorLatents
from jfacemap.synth.params import STYLES, FaceParams, sample_face_params
from jfacemap.synth.render import FaceRenderer

__all__ = ["STYLES", "FaceParams", "sample_face_params", "render_frames", "get_renderer"]

_BATCH = 32  # frames rendered together (bounds the float32 working memory)


@functools.lru_cache(maxsize=2)  # a renderer holds ~70 MB (whisker layers)
def get_renderer(params: FaceParams) -> FaceRenderer:
    """The (cached) renderer of `params`."""
    return FaceRenderer(params)


def render_frames(
    params: FaceParams, latents: BehaviorLatents, start: int = 0, stop: int | None = None, iris: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Frames [start, stop) of the session driven by `latents`: (frames uint8, keypoints float32).

    iris: grey levels added to the eyeball outside the pupil (0: the default dark eye)."""
    n_total = latents.n_frames
    stop = n_total if stop is None else stop
    if not 0 <= start <= stop <= n_total:
        raise ValueError(f"frames [{start}, {stop}) outside the session's 0..{n_total}")
    renderer = get_renderer(params)
    size = params.size
    frames = np.empty((stop - start, size, size), np.uint8)
    keypoints = np.empty((stop - start, 15, 3), np.float32)
    for a in range(start, stop, _BATCH):
        b = min(stop, a + _BATCH)
        f, k = renderer.render(latents.slice(a, b), a, iris)
        frames[a - start : b - start] = f
        keypoints[a - start : b - start] = k
    return frames, keypoints
