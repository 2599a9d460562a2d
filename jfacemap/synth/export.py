"""Write a synthetic session to disk the way a real recording arrives.

A session becomes three files beside each other:
  <name>.mp4                 the grayscale video
  <name>_FacemapPose.h5      ground-truth keypoints (likelihood 1, NaN where not visible)
  <name>_latents.npz         the behavioural latents that drove it (50 Hz)
Each is written atomically, so an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from jfacemap.io.atomic import atomic_path
from jfacemap.io.keypoints import GROUND_TRUTH, facemap_pose_path, write_facemap_pose
from jfacemap.io.video import VideoWriter
from jfacemap.synth.session import make_session


@dataclass(frozen=True)
class SessionFiles:
    """Where a saved synthetic session lives."""

    video: Path
    keypoints: Path
    latents: Path


def latents_path(video_path: str | os.PathLike) -> Path:
    """`<video stem>_latents.npz` beside the video."""
    video_path = Path(video_path)
    return video_path.with_name(f"{video_path.stem}_latents.npz")


def save_synthetic_session(
    video_path: str | os.PathLike,
    n_frames: int,
    seed: int = 0,
    style: str = "lab1",
    size: int = 256,
    fps: float = 50.0,
    chunk_size: int = 250,
    on_progress: Callable[[int], None] | None = None,
) -> SessionFiles:
    """Render a synthetic session and write video, ground truth and latents.

    Memory is bounded by `chunk_size` frames of video; the keypoints, (n_frames,
    15, 3) float32, are kept whole (7 MB per hour at 50 Hz).
    `on_progress(n)` is called with the number of frames written in each chunk.
    """
    if n_frames < 1:
        raise ValueError(f"--frames must be at least 1, got {n_frames}")
    video_path = Path(video_path)
    session = make_session(n_frames, seed=seed, style=style, size=size, fps=fps)
    keypoints = np.empty((n_frames, len(session.bodyparts), 3), np.float32)
    done = 0
    with VideoWriter(video_path, fps=fps) as writer:
        for frames, kp in session.iter_chunks(chunk_size):
            writer.write(frames)
            keypoints[done : done + len(frames)] = kp
            done += len(frames)
            if on_progress is not None:
                on_progress(len(frames))
    pose = facemap_pose_path(video_path)
    write_facemap_pose(pose, keypoints, session.bodyparts, source=GROUND_TRUTH)
    latents_file = latents_path(video_path)
    meta = {
        "seed": seed,
        "style": style,
        "size": size,
        "fps": fps,
        "n_frames": n_frames,
        "bodyparts": list(session.bodyparts),
        "face_params": _jsonable(session.params),
    }
    with atomic_path(latents_file) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **session.latents.to_dict(), meta=json.dumps(meta))
    return SessionFiles(video=video_path, keypoints=pose, latents=latents_file)


def _jsonable(params) -> dict:
    """Face parameters as plain JSON types (numpy scalars and arrays unpacked)."""
    raw = dataclasses.asdict(params) if dataclasses.is_dataclass(params) else dict(vars(params))

    def convert(value):
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        return value

    return convert(raw)
