"""Write a synthetic session to disk the way a real recording arrives.

A session becomes three files beside each other:
  <name>.mp4                 the grayscale video
  <name>_FacemapPose.h5      ground-truth keypoints (likelihood 1, NaN where not visible)
  <name>_latents.npz         the behavioural latents that drove it (50 Hz)
Each is written atomically, so an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from jfacemap import DEFAULT_FPS
from jfacemap.io.jsonable import jsonable
from jfacemap.io.atomic import atomic_path
from jfacemap.io.keypoints import GROUND_TRUTH, facemap_pose_path, write_facemap_pose
from jfacemap.io.video import VideoWriter
from jfacemap.synth.session import RENDER_CHUNK, check_session_args, make_session


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
    fps: float = DEFAULT_FPS,
    chunk_size: int = RENDER_CHUNK,
    on_progress: Callable[[int], None] | None = None,
    roi: bool = False,
) -> SessionFiles:
    """Render a synthetic session and write video, ground truth and latents.

    The three files land together: all are written under temporary names and
    renamed only once the video is complete, so an interrupted run never
    leaves a new video beside an older session's ground truth. Memory is
    bounded by `chunk_size` frames; the keypoints, (n_frames, 15, 3) float32,
    are kept whole (7 MB per hour at 50 Hz). `on_progress(n)` is called with
    the number of frames written in each chunk.

    roi: render the ROI ground-truth scene (`make_session(roi=True)`) and add
    its truth to the latents file under `roi_*` names: roi_pupil_area (T,)
    px^2, roi_pupil_center (T, 2) x, y px, roi_pupil_diameter (T,) px,
    roi_blink (T,), roi_blink_intervals (E, 2) frames, roi_running (T, 2)
    dx, dy px/frame, roi_eye_box and roi_treadmill_box (x0, y0, x1, y1).
    """
    check_session_args(n_frames, seed, style, size, fps)
    video_path = Path(video_path)
    session = make_session(n_frames, seed=seed, style=style, size=size, fps=fps, roi=roi)
    pose, latents_file = facemap_pose_path(video_path), latents_path(video_path)
    meta = {
        "seed": seed,
        "style": style,
        "size": size,
        "fps": fps,
        "n_frames": n_frames,
        "bodyparts": list(session.bodyparts),
        "face_params": jsonable(session.params),
    }
    truth = {f"roi_{k}": v for k, v in session.roi_truth().items()} if roi else {}
    if roi:
        meta["roi"] = True
    with contextlib.ExitStack() as pending:  # renames pose and latents after the video
        pose_tmp = pending.enter_context(atomic_path(pose))
        latents_tmp = pending.enter_context(atomic_path(latents_file))
        write_facemap_pose(pose_tmp, session.keypoints(0, n_frames), session.bodyparts, source=GROUND_TRUTH)
        with open(latents_tmp, "wb") as fh:
            np.savez_compressed(fh, **session.latents.to_dict(), **truth, meta=json.dumps(meta))
        with VideoWriter(video_path, fps=fps) as writer:
            for frames, _ in session.iter_chunks(chunk_size):
                writer.write(frames)
                if on_progress is not None:
                    on_progress(len(frames))
    return SessionFiles(video=video_path, keypoints=pose, latents=latents_file)
