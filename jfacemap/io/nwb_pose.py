"""Keypoints in NWB (Neurodata Without Borders) with the ndx-pose extension, written and read back.

`write_pose_nwb` puts one ndx-pose `PoseEstimation` in the `behavior`
processing module: a `PoseEstimationSeries` per bodypart (data (T, 2) x, y in
video pixels, origin at the top-left pixel, y down; confidence (T,) the
likelihood; timestamps (T,) s, stored once and shared by the other series),
the video (an external-file `ImageSeries` in acquisition, with its size, linked
as `source_video`), and a `Skeleton` whose nodes keep the bodypart
order (NWB groups list their members alphabetically; `read_pose_nwb` puts them
back in the skeleton's order). Into a new file, or appended to an existing
NWB file of the same session (copied, appended to, then renamed over it, so
an interrupted run leaves the original intact). Needs the extra `nwb`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

import jfacemap
from jfacemap.errors import JfacemapError
from jfacemap.io.atomic import atomic_path
from jfacemap.io.extras import require
from jfacemap.io.keypoints import KeypointFileError, _check_keypoints
from jfacemap.io.timestamps import check_timestamps

__all__ = ["POSE_NAME", "read_pose_nwb", "write_pose_nwb"]

POSE_NAME = "PoseEstimation"
MODULE = "behavior"
REFERENCE_FRAME = "(0, 0) is the top-left pixel of the video frame; x grows right, y grows down; pixels"
CONFIDENCE = "likelihood in [0, 1] of the keypoint (the tracker's confidence); NaN where absent"


def _modules():
    pynwb = require("pynwb", "nwb", "NWB export")
    require("pynwb.image", "nwb", "NWB export")
    ndx_pose = require("ndx_pose", "nwb", "NWB export")
    return pynwb, ndx_pose


def _new_file(pynwb, session_start: datetime | None, session_description: str):
    start = session_start or datetime.now(timezone.utc)
    if start.tzinfo is None:  # NWB needs an aware time; a naive one is taken as UTC
        start = start.replace(tzinfo=timezone.utc)
    return pynwb.NWBFile(session_description=session_description, identifier=str(uuid.uuid4()),
                         session_start_time=start)


def _pose_estimation(ndx_pose, kp: np.ndarray, bodyparts: list[str], times: np.ndarray, name: str,
                     scorer: str, description: str, edges: np.ndarray):
    """(PoseEstimation's arguments but its video, its Skeleton); the first series holds the timestamps."""
    series = []
    for k, part in enumerate(bodyparts):
        series.append(ndx_pose.PoseEstimationSeries(
            name=part, description=f"{part}: x, y in video pixels", data=kp[:, k, :2], unit="pixels",
            reference_frame=REFERENCE_FRAME, confidence=kp[:, k, 2], confidence_definition=CONFIDENCE,
            timestamps=times if not series else series[0]))  # one copy of the timestamps, linked
    skeleton = ndx_pose.Skeleton(name=f"{name}_skeleton", nodes=list(bodyparts), edges=edges)
    pose = dict(name=name, pose_estimation_series=series, description=description, scorer=scorer,
                source_software="jfacemap", source_software_version=jfacemap.__version__, skeleton=skeleton)
    return pose, skeleton


def _with_video(pynwb, ndx_pose, nwbfile, pose: dict, video: str | None, dimensions, where: object) -> dict:
    """`pose`'s arguments plus its video: an external-file ImageSeries in acquisition, linked as
    `source_video` (ndx-pose 0.4's way; versions without it take the path and size themselves)."""
    if video is None:
        return pose
    names = [a["name"] for a in ndx_pose.PoseEstimation.__init__.__docval__["args"]]
    if "source_video" not in names:
        return pose | {"original_videos": [video],
                       "dimensions": np.array([dimensions], np.uint16) if dimensions else None}
    video_name = f"{pose['name']}_video"
    if video_name in nwbfile.acquisition:
        raise JfacemapError(f"{where}: already holds acquisition/{video_name}; give another name")
    clock = pose["pose_estimation_series"][0]
    series = pynwb.image.ImageSeries(
        name=video_name, description="the video the keypoints were tracked in", unit="n.a.",
        external_file=[video], format="external", starting_frame=[0], timestamps=clock,
        dimension=list(dimensions) if dimensions else None)
    nwbfile.add_acquisition(series)
    return pose | {"source_video": series}


def _add(pynwb, ndx_pose, nwbfile, pose: dict, skeleton, video, dimensions, where: object) -> None:
    module = nwbfile.processing.get(MODULE) or nwbfile.create_processing_module(MODULE, "behavioural data")
    if pose["name"] in module.data_interfaces:
        raise JfacemapError(f"{where}: already holds {MODULE}/{pose['name']}; give another name")
    skeletons = module.data_interfaces.get("Skeletons")
    if skeletons is None:
        module.add(ndx_pose.Skeletons(skeletons=[skeleton]))
    elif skeleton.name in skeletons.skeletons:
        raise JfacemapError(f"{where}: already holds the skeleton {skeleton.name}; give another name")
    else:
        skeletons.add_skeletons(skeleton)
    module.add(ndx_pose.PoseEstimation(**_with_video(pynwb, ndx_pose, nwbfile, pose, video, dimensions, where)))


def write_pose_nwb(
    path: str | os.PathLike, keypoints: np.ndarray, bodyparts: Sequence[str], times: np.ndarray, *,
    video: str | os.PathLike | None = None, dimensions: tuple[int, int] | None = None,
    scorer: str = "jfacemap", description: str | None = None, name: str = POSE_NAME,
    append: bool = False, session_start: datetime | None = None,
    session_description: str = "keypoints tracked by jfacemap", edges: np.ndarray | None = None,
) -> Path:
    """Write (T, K, 3) keypoints (x, y pixels, likelihood) at `times` (T,) s to `path` as ndx-pose.

    video, dimensions: the source video's path and (width, height) pixels.
    append: add to the existing NWB file at `path` (same session) instead of
    writing a new one (whose session starts at `session_start`, default now,
    UTC). edges: (E, 2) skeleton edges as bodypart indices (default none).
    """
    pynwb, ndx_pose = _modules()
    bodyparts = [str(b) for b in bodyparts]
    kp = _check_keypoints(keypoints, bodyparts, path)
    bad = [b for b in bodyparts if "/" in b or not b]
    if bad:
        raise KeypointFileError(f"{path}: bodypart names cannot be NWB names: {bad}")
    times = check_timestamps(np.asarray(times, np.float64), f"{path}: times", n=len(kp))
    edges = np.zeros((0, 2), np.uint8) if edges is None else np.asarray(edges, np.uint8).reshape(-1, 2)
    description = description or f"keypoints tracked by jfacemap {jfacemap.__version__} ({scorer})"
    pose, skeleton = _pose_estimation(ndx_pose, kp, bodyparts, times, name, scorer, description, edges)
    video = None if video is None else str(video)
    target = Path(path)
    if append and not target.is_file():
        raise JfacemapError(f"{target}: no such NWB file to append to")
    with atomic_path(target) as tmp:
        if append:
            shutil.copyfile(target, tmp)
            with pynwb.NWBHDF5IO(str(tmp), "a") as io:
                nwbfile = io.read()
                _add(pynwb, ndx_pose, nwbfile, pose, skeleton, video, dimensions, target)
                io.write(nwbfile)
        else:
            nwbfile = _new_file(pynwb, session_start, session_description)
            _add(pynwb, ndx_pose, nwbfile, pose, skeleton, video, dimensions, target)
            with pynwb.NWBHDF5IO(str(tmp), "w") as io:
                io.write(nwbfile)
    return target


def read_pose_nwb(path: str | os.PathLike, name: str = POSE_NAME) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(keypoints (T, K, 3) float64, bodyparts, times (T,) s) of the PoseEstimation `name` in `path`.

    Bodyparts in the skeleton's node order when it names every series, else alphabetical.
    """
    pynwb, _ = _modules()
    p = Path(path)
    if not p.is_file():
        raise KeypointFileError(f"{p}: no such file")
    try:
        io = pynwb.NWBHDF5IO(str(p), "r")
        nwbfile = io.read()
    except (OSError, ValueError, KeyError, TypeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise KeypointFileError(f"{p}: not a readable NWB file ({reason})") from err
    with io:
        module = nwbfile.processing.get(MODULE)
        if module is None or name not in module.data_interfaces:
            raise KeypointFileError(f"{p}: no {MODULE}/{name} in this NWB file")
        pose = module.data_interfaces[name]
        series = pose.pose_estimation_series
        nodes = list(pose.skeleton.nodes[:]) if pose.skeleton is not None else []
        order = nodes if sorted(nodes) == sorted(series) else sorted(series)
        first = series[order[0]]
        times = np.asarray(first.timestamps[:], np.float64)
        kp = np.stack([np.column_stack([np.asarray(series[b].data[:], np.float64),
                                        np.asarray(series[b].confidence[:], np.float64)]) for b in order], axis=1)
    return kp, [str(b) for b in order], times
