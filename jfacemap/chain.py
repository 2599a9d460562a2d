"""The paper's chain in one call: video -> keypoints -> neural prediction -> behavioural states.

    from jfacemap.chain import run_chain
    result = run_chain("mouse.mp4", spks, neural_times, xpos=xpos, ypos=ypos)
    result.keypoints                    # (T_video, 15, 3) tracked, outliers filled
    result.encode.summary["ve_deep"]    # test variance explained by the deep encoder
    result.encode.features              # (T_video, 256) deep behavioural features
    result.hmm.summary()["lifetime_median_s"]

Each step is also a function of its own (the chain only hands arrays along):

    track_keypoints(videos, tracker)                -> keypoints, bodyparts, fps   (track.predict)
    filter_keypoints(keypoints, fps)                -> filled keypoints, report    (track.filter)
    keypoint_coordinates(keypoints, bodyparts)      -> (T, 2K) behaviour columns   (io.behavior)
    encode_recording(spks, t_neural, x, t_video)    -> EncodeResult with features  (encode.pipeline)
    run_hmm(features, fps, n_states)                -> HMMResult                   (hmm.pipeline)

With `out`, every stage writes the files its command writes (keypoints/, encode/, hmm/),
so a notebook run and a command-line run leave the same folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from jfacemap.errors import JfacemapError
from jfacemap.hmm import N_STATES

__all__ = ["ChainResult", "run_chain", "track_keypoints", "video_frame_times"]

Videos = str | os.PathLike | Sequence[str | os.PathLike]


@dataclass
class ChainResult:
    """What `run_chain` computed.

    keypoints: (T_video, K, 3) float32 x, y (frame pixels), likelihood, after outlier filling
      (when filtered); tracked: the same before filtering; bodyparts: the K names.
    outliers: the filter's OutlierReport, or None when not filtered.
    behavior: (T_video, D) float32 the encoder's input columns (`behavior_names`);
      behavior_times: (T_video,) s.
    encode: the EncodeResult (its `features` are the HMM's input); hmm: the HMMResult, or
      None when n_states is 0.
    paths: files written by stage (empty without `out`).
    """

    keypoints: np.ndarray
    tracked: np.ndarray
    bodyparts: tuple[str, ...]
    outliers: object | None
    behavior: np.ndarray
    behavior_names: list[str]
    behavior_times: np.ndarray
    encode: object
    hmm: object | None
    paths: dict[str, object]


def _as_list(videos: Videos) -> list[Path]:
    if isinstance(videos, (str, os.PathLike)):
        return [Path(videos)]
    paths = [Path(v) for v in videos]
    if not paths:
        raise JfacemapError("videos: give at least one video")
    return paths


def track_keypoints(
    videos: Videos,
    tracker="base",
    *,
    out_dir: str | os.PathLike | None = None,
    bbox: Sequence[float] | None = None,
    on_progress: Callable[[int], object] | None = None,
) -> tuple[np.ndarray, tuple[str, ...], float]:
    """Track one video, or consecutive parts of one recording (concatenated in order).

    tracker: a model name or folder (`load_tracker`), or a (model, bodyparts) pair.
    out_dir: where the `_FacemapPose.h5` files go (default: beside each video); a
      run that is interrupted resumes from them.
    Returns ((T, K, 3) float32 keypoints, bodyparts, fps of the first video).
    """
    from jfacemap.io.video import video_info
    from jfacemap.track.model_store import load_tracker
    from jfacemap.track.predict import output_path, track_video

    paths = _as_list(videos)
    model, bodyparts = (tracker if isinstance(tracker, tuple) else load_tracker(tracker)[:2])
    parts, predictors = [], {}
    for video in paths:
        parts.append(track_video(video, model, bodyparts, bbox=bbox, out_path=output_path(video, out_dir),
                                 on_progress=on_progress, predictors=predictors))
    return np.concatenate(parts), tuple(bodyparts), float(video_info(paths[0]).fps)


def video_frame_times(n_frames: int, fps: float, video_times=None, where: str = "videos") -> np.ndarray:
    """(n_frames,) s: `video_times` checked against the frame count, or frame / fps."""
    from jfacemap.encode.align import check_timestamps

    if video_times is None:
        if not fps or not np.isfinite(fps) or fps <= 0:
            raise JfacemapError(f"{where}: no frame rate in the video: give video_times")
        return np.arange(n_frames) / fps
    times = check_timestamps(video_times, "video_times")
    if len(times) != n_frames:
        raise JfacemapError(f"{where}: {len(times)} video_times for {n_frames} tracked frames")
    return times


def run_chain(
    videos: Videos,
    spks: np.ndarray,
    neural_times: np.ndarray,
    *,
    video_times: np.ndarray | None = None,
    xpos: np.ndarray | None = None,
    ypos: np.ndarray | None = None,
    tracker="base",
    keypoints: np.ndarray | None = None,
    bodyparts: Sequence[str] | None = None,
    filter_outliers: bool = True,
    models: Sequence[str] = ("linear", "deep"),
    n_states: int = N_STATES,
    seed: int = 0,
    encode_options: dict | None = None,
    hmm_options: dict | None = None,
    out: str | os.PathLike | None = None,
    on_track_progress: Callable[[int], object] | None = None,
    on_epoch: Callable[[int, dict], object] | None = None,
    on_hmm_step: Callable | None = None,
) -> ChainResult:
    """Video(s) + neural recording -> keypoints -> linear and deep encoders -> HMM on the deep features.

    Args:
      videos: one video, or consecutive parts of one recording.
      spks: (n_neurons, T_neural) activity; neural_times: (T_neural,) s on the video's clock.
      video_times: (T_video,) s of every frame (all parts); default frame / fps from t = 0.
      xpos, ypos: (n_neurons,) um, for peer-predicted explainable variance.
      tracker: model name, folder, or (model, bodyparts); keypoints/bodyparts: skip tracking and
        start from these (T_video, K, 3) (e.g. read from a `_FacemapPose.h5`).
      filter_outliers: fill likelihood drops and jumps (`filter_keypoints`) before encoding.
      models: encoders to fit ("linear", "deep"); the HMM needs "deep".
      n_states: HMM states (0 = no HMM); seed: encoder and HMM seed.
      encode_options, hmm_options: further keyword arguments of `encode_recording` and `run_hmm`.
      out: folder for each stage's files (keypoints/, encode/, hmm/); None writes only the
        tracker's resumable pose files (beside the videos).
      on_track_progress(n_frames), on_epoch(epoch, row), on_hmm_step(fit, step, train_ll, test_ll):
        progress callbacks.
    """
    from jfacemap.encode.pipeline import encode_recording
    from jfacemap.io.behavior import keypoint_coordinates
    from jfacemap.track.filter import filter_keypoints

    out = None if out is None else Path(out)
    paths: dict[str, object] = {}
    if n_states and "deep" not in models:
        raise JfacemapError("n_states > 0 needs the deep encoder (models must include 'deep'), or set n_states=0")
    if keypoints is None:
        tracked, bodyparts, fps = track_keypoints(videos, tracker, out_dir=None if out is None else out / "keypoints",
                                                  on_progress=on_track_progress)
    else:
        if bodyparts is None:
            raise JfacemapError("keypoints given without their bodyparts")
        tracked, fps = np.asarray(keypoints, np.float32), None
        if video_times is None:
            from jfacemap.io.video import video_info

            fps = float(video_info(_as_list(videos)[0]).fps)
    where = ", ".join(str(v) for v in _as_list(videos))
    times = video_frame_times(len(tracked), fps, video_times, where)
    clean, report = filter_keypoints(tracked, 1.0 / float(np.median(np.diff(times)))) if filter_outliers \
        else (tracked, None)
    behavior, names = keypoint_coordinates(clean, bodyparts, where)
    encode_options = dict(encode_options or {})
    result = encode_recording(spks, neural_times, behavior, times, xpos=xpos, ypos=ypos, models=models, seed=seed,
                              on_epoch=on_epoch, **encode_options)
    hmm = None
    if n_states:
        from jfacemap.hmm.pipeline import run_hmm

        hmm = run_hmm(result.features, result.feature_fps, n_states, seed=seed, on_step=on_hmm_step,
                      **(hmm_options or {}))
    if out is not None:
        from jfacemap.encode.outputs import write_encode_outputs
        from jfacemap.io.atomic import write_npz_atomic

        paths["keypoints"] = out / "keypoints" / "keypoints.npz"
        paths["keypoints"].parent.mkdir(parents=True, exist_ok=True)
        write_npz_atomic(paths["keypoints"], keypoints=clean, tracked=tracked, times=times,
                         bodyparts=np.array(bodyparts), outliers=None if report is None else report.mask)
        paths["encode"] = write_encode_outputs(out / "encode", result, behavior, times, result.neural_times,
                                               xpos, ypos, {"videos": where, "behavior": "tracked keypoints",
                                                            "behavior_columns": names})
        if hmm is not None:
            from jfacemap.io.hmm_outputs import write_hmm_outputs

            paths["hmm"] = write_hmm_outputs(out / "hmm", hmm, {"features": str(paths["encode"]["features"]),
                                                                 "kind": "deep features"})
    return ChainResult(keypoints=clean, tracked=tracked, bodyparts=tuple(bodyparts), outliers=report,
                       behavior=behavior, behavior_names=names, behavior_times=times, encode=result, hmm=hmm,
                       paths=paths)
