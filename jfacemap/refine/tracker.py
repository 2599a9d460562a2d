"""The tracker a refinement session uses: predictions on frames, and the frames it is least sure of.

    tracker = Tracker(model, bodyparts, bbox=None, name="base")
    keypoints = tracker.predict(frames)        # (N, H, W) uint8 -> (N, K, 3) x, y, likelihood
    indices = choose_frames(tracker, "mouse.mp4", 20, "mixed")
"""

from __future__ import annotations

import os
import threading
from typing import Iterable, Sequence

import numpy as np

from jfacemap.io.video import read_frames, video_info
from jfacemap.refine.picking import (
    PICK_METHODS,
    candidate_frames,
    flip_disagreement_px,
    jump_px,
    pick_frames,
    uncertainty_scores,
)

__all__ = ["Tracker", "choose_frames"]

BATCH = 8  # one compiled shape per frame size: short batches are padded to it


class Tracker:
    """A model with its bodyparts, crop box and a name, predicting on frames of any size."""

    def __init__(self, model, bodyparts: Sequence[str], bbox=None, name: str = "model"):
        self.model, self.bodyparts, self.bbox, self.name = model, [str(b) for b in bodyparts], bbox, str(name)
        self._fns: dict[tuple[int, int], object] = {}
        self._lock = threading.Lock()  # the page and a training thread may predict at once

    def _fn(self, shape: tuple[int, int]):
        from jfacemap.track.inference import make_predict_fn

        with self._lock:
            if shape not in self._fns:
                self._fns[shape] = make_predict_fn(self.model, self.bbox, shape)
            return self._fns[shape]

    def predict(self, frames: np.ndarray) -> np.ndarray:
        """(N, K, 3) float64 x, y (frame px), likelihood for (N, H, W) uint8 frames."""
        from jfacemap.track.inference import predict_frames

        frames = np.asarray(frames)
        if len(frames) == 0:
            return np.zeros((0, len(self.bodyparts), 3))
        return predict_frames(self._fn(tuple(frames.shape[1:3])), frames, BATCH).astype(np.float64)

    def predict_many(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """(K, 3) predictions for each of a list of (H_i, W_i) frames (sizes may differ)."""
        from jfacemap.track.inference import predict_images

        return [kp.astype(np.float64) for kp in predict_images(self._fn, images, BATCH)]


def scan_video(tracker: Tracker, video: str | os.PathLike, n_candidates: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(candidates (C,), uncertainty scores (C,), n_frames) of `video`:
    predictions on each candidate, its two neighbours and its mirror image."""
    n_frames = video_info(video, exact=False).n_frames
    centres = candidate_frames(n_frames, n_candidates)
    if n_frames < 3:
        return centres, np.zeros(len(centres)), n_frames
    wanted = np.concatenate([centres - 1, centres, centres + 1])
    frames = read_frames(video, wanted)
    pred = tracker.predict(frames).reshape(3, len(centres), len(tracker.bodyparts), 3)
    mirrored = tracker.predict(frames[len(centres) : 2 * len(centres), :, ::-1])
    jumps = jump_px(pred[0], pred[1], pred[2])
    flips = flip_disagreement_px(pred[1], mirrored, frames.shape[2])
    return centres, uncertainty_scores(pred[1, ..., 2], jumps, flips), n_frames


def choose_frames(
    tracker: Tracker | None,
    video: str | os.PathLike,
    n: int,
    method: str = "mixed",
    random_fraction: float = 0.5,
    seed: int = 0,
    exclude: Iterable[int] = (),
    n_candidates: int | None = None,
) -> np.ndarray:
    """(m <= n,) sorted frame indices of `video` to label, not in `exclude`.

    method: "random", "uncertain" (all by `scan_video`'s score) or "mixed"
    (`random_fraction` random, the rest uncertain). n_candidates: frames
    scored (default max(4 n, 40)).
    """
    if method not in PICK_METHODS:
        raise ValueError(f"unknown picking method {method!r}; choose one of {', '.join(PICK_METHODS)}")
    rng = np.random.default_rng(seed)
    if method == "random" or tracker is None:
        n_frames = video_info(video, exact=False).n_frames
        return pick_frames(n_frames, np.zeros(0, np.int64), None, n, 1.0, rng, exclude)
    centres, scores, n_frames = scan_video(tracker, video, n_candidates or max(4 * n, 40))
    fraction = 0.0 if method == "uncertain" else random_fraction
    return pick_frames(n_frames, centres, scores, n, fraction, rng, exclude)
