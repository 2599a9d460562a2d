"""Keypoint files in the formats other tools read: NWB (ndx-pose), DeepLabCut .h5 and .csv.

`export_pose(fmt, path, out)` reads any keypoint file jfacemap reads
(`_FacemapPose.h5`, legacy pandas-table `_FacemapPose.h5`, DeepLabCut .h5 /
.csv) and writes `<out>/<stem>.nwb`, `.h5` or `.csv`, where stem is the
input's name without `_FacemapPose` and extension (`mouse_FacemapPose.h5` ->
`mouse.h5`), so the export never overwrites its input and folder-wide loaders
(keypoint-moseq's `load_keypoints(folder, "deeplabcut")`) can be pointed at
`out` without picking up the Facemap file. Bodyparts keep the input's order.

NWB needs timestamps: a timestamps file (.npy, s), else a frame rate, else
the frame rate of the video, given or found beside the input as
`<stem>.mp4/.avi/.mkv/.mov`.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import numpy as np

from jfacemap.errors import JfacemapError
from jfacemap.io.behavior import read_timestamps
from jfacemap.io.dlc_export import write_dlc_h5
from jfacemap.io.inputs import existing_file
from jfacemap.io.keypoints import KeypointFileError, read_keypoints, read_pose_source, write_dlc_csv

__all__ = ["POSE_FORMATS", "export_pose", "export_target", "find_video"]

POSE_FORMATS = {"nwb": ".nwb", "dlc-h5": ".h5", "dlc-csv": ".csv"}
POSE_SUFFIX = "_FacemapPose"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")


def _stem(path: Path) -> str:
    stem = path.stem
    return stem[: -len(POSE_SUFFIX)] if stem.endswith(POSE_SUFFIX) and len(stem) > len(POSE_SUFFIX) else stem


def export_target(fmt: str, path: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Where `fmt`'s export of `path` goes: <out or path's folder>/<stem><suffix> (see the module docstring)."""
    if fmt not in POSE_FORMATS:
        raise JfacemapError(f"export format must be one of {', '.join(POSE_FORMATS)}, got {fmt!r}")
    p = Path(path)
    return (Path(out) if out is not None else p.parent) / (_stem(p) + POSE_FORMATS[fmt])


def find_video(path: str | os.PathLike) -> Path | None:
    """The video beside a keypoint file, named `<stem>` + a common video suffix, or None."""
    p = Path(path)
    for suffix in VIDEO_SUFFIXES:
        for candidate in (p.with_name(_stem(p) + suffix), p.with_name(_stem(p) + suffix.upper())):
            if candidate.is_file():
                return candidate
    return None


def _nwb_times(n: int, times, fps: float | None, video_fps: float | None, p: Path) -> np.ndarray:
    if times is not None:
        return read_timestamps(times, n)
    rate = fps if fps is not None else video_fps
    if rate is None:
        raise JfacemapError(f"{p}: NWB needs timestamps: give the frame rate (fps), a timestamps file "
                            "(times) or the video")
    if not rate > 0:
        raise JfacemapError(f"{p}: fps must be > 0, got {rate}")
    return np.arange(n) / float(rate)


def export_pose(
    fmt: str, path: str | os.PathLike, out: str | os.PathLike | None = None, *, scorer: str = "jfacemap",
    fps: float | None = None, times: str | os.PathLike | None = None, video: str | os.PathLike | None = None,
    append_to: str | os.PathLike | None = None, session_start: datetime | None = None,
) -> Path:
    """Write the keypoints in `path` as `fmt` ("nwb", "dlc-h5" or "dlc-csv"), atomically; the path written.

    scorer: DeepLabCut's scorer column / NWB's scorer. fps, times, video: NWB's
    clock and source video (see the module docstring). append_to: an existing
    NWB file of the same session to add the PoseEstimation to, instead of a new file.
    """
    p = existing_file(path, "keypoint file", KeypointFileError)
    target = export_target(fmt, p, out) if append_to is None else Path(append_to)
    if append_to is not None and fmt != "nwb":
        raise JfacemapError(f"{append_to}: only NWB exports can be appended to an existing file")
    if target.resolve() == p.resolve():
        raise JfacemapError(f"{p}: the {fmt} export would overwrite its input; write it to another folder (out)")
    keypoints, bodyparts = read_keypoints(p)
    if fmt == "dlc-h5":
        return write_dlc_h5(target, keypoints, bodyparts, scorer=scorer)
    if fmt == "dlc-csv":
        return write_dlc_csv(target, keypoints, bodyparts, scorer=scorer, with_likelihood=True)
    from jfacemap.io.nwb_pose import write_pose_nwb
    from jfacemap.io.video import video_info

    video_path = Path(video) if video is not None else find_video(p)
    info = video_info(video_path, exact=False) if video_path is not None else None
    clock = _nwb_times(len(keypoints), times, fps, info.fps if info else None, p)
    source = read_pose_source(p)
    description = f"keypoints from {p.name}" + (f", {source}" if source else "") + f" (scorer {scorer})"
    return write_pose_nwb(target, keypoints, bodyparts, clock, video=video_path,
                          dimensions=(info.width, info.height) if info else None, scorer=scorer,
                          description=description, append=append_to is not None, session_start=session_start)
