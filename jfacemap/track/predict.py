"""Track whole videos: decode in a background thread, predict in the main one, resume after a stop.

    keypoints = track_video("mouse.mp4", model, bodyparts)   # writes mouse_FacemapPose.h5

Pipeline. A decoder thread reads chunks of `chunk_size` frames (ffmpeg runs
in its own process) into a queue of depth 1, so at most about three chunks
of frames exist at once: one being decoded, one waiting, one being tracked.
The main thread cuts a chunk into batches of `batch_size`, pads the last
batch with copies of its final frame (a fixed shape compiles once), and
dispatches every batch before it waits for the previous chunk's results:
JAX's asynchronous dispatch keeps the device busy while Python stores them.

Resuming. After each chunk its keypoints are appended to `<out>.partial`
(an h5 file: dataset `keypoints` (n, K, 3) and a `done` frame counter that is
raised only after the data are flushed). A rerun with the same video file,
model, bodyparts and bbox starts decoding at frame `done`; a partial from
another run, or one damaged by a kill in mid-write, is discarded. The final
file is written atomically and only then is the partial deleted, so readers
never see half a result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

import h5py
import jax
import numpy as np
from flax import nnx

from jfacemap import DEFAULT_CHUNK  # re-exported
from jfacemap.errors import JfacemapError
from jfacemap.io.keypoints import GROUND_TRUTH, facemap_pose_path, read_pose_source, write_dlc_csv, write_facemap_pose
from jfacemap.io.video import iter_chunks, video_info
from jfacemap.nets.unet import FacemapUNet
from jfacemap.track.inference import dispatch_batches, gather_batches, make_predict_fn
from jfacemap.track.shape_prior import DECODER_VERSION

__all__ = ["track_video", "track_videos", "partial_path", "DEFAULT_CHUNK"]

_END = object()


def refuse_to_overwrite_ground_truth(out: Path) -> None:
    """`jfacemap synth` writes ground truth under the name tracking writes to: never replace it."""
    if out.exists() and read_pose_source(out) == GROUND_TRUTH:
        raise JfacemapError(f"{out}: holds the ground truth of a synthetic session; "
                            "write the tracked keypoints elsewhere")


def output_paths(videos: Sequence[str | os.PathLike], out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Each video's pose file; JfacemapError if two videos would write the same one (same name, one out_dir)."""
    outputs = [output_path(video, out_dir) for video in videos]
    seen: dict[Path, Path] = {}
    for video, out in zip(map(Path, videos), outputs):
        if out.resolve() in seen and seen[out.resolve()].resolve() != video.resolve():
            raise JfacemapError(f"{seen[out.resolve()]} and {video} would both write {out}; track them into different folders")
        seen[out.resolve()] = video
    return outputs


def partial_path(out_path: str | os.PathLike) -> Path:
    """`<out>.partial`: where unfinished results live (a suffix no `*.h5` glob matches)."""
    out = Path(out_path)
    return out.with_name(out.name + ".partial")


# ---------------------------------------------------------------- decoding ---


class _Decoder:
    """Chunks of a video from `start` on, decoded in a daemon thread into a bounded queue."""

    def __init__(self, video: Path, chunk_size: int, start: int, stop: int | None = None, depth: int = 1):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(video, chunk_size, start, stop), daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        # Poll so that close() can stop a thread blocked on a full queue.
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def _run(self, video: Path, chunk_size: int, start: int, stop: int | None) -> None:
        chunks = iter_chunks(video, chunk_size, start=start, stop=stop, with_valid=True)
        try:
            for item in chunks:  # (chunk, valid): undecodable frames are zeros, valid False
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as err:  # handed to the main thread, which raises it
            self._put(err)
        finally:
            chunks.close()  # stops ffmpeg when we stop early

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------ partial file ---


def _fingerprint(video: Path, model: FacemapUNet, bodyparts: Sequence[str], geometry,
                 frames: tuple[int, int | None] | None = None,
                 flip: tuple[bool, float | None] = (False, None)) -> str:
    """What a partial result depends on: the video file, the weights, the skeleton, the crop, the
    decoder's layout prior if the model has one, flip averaging (and the frame range of a segment)."""
    st = video.stat()
    what = [str(video.resolve()), st.st_size, st.st_mtime_ns, list(map(str, bodyparts)), list(map(int, geometry))]
    if getattr(model, "shape_prior", None) is not None:
        what.append([DECODER_VERSION, model.shape_prior.to_json()])
    if flip[0]:
        what.append(["flip_average", flip[1]])
    h = hashlib.sha1(json.dumps(what + ([list(frames)] if frames is not None else [])).encode())
    for leaf in jax.tree.leaves(nnx.state(model)):
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()


class _Partial:
    """Append-only h5 of finished keypoints; `done` counts frames safely on disk."""

    def __init__(self, path: Path, fingerprint: str, n_keypoints: int, resume: bool, first: int = 0):
        self.path = path
        self.file = self._open_existing(fingerprint, n_keypoints) if resume else None
        if self.file is None:
            path.unlink(missing_ok=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = h5py.File(path, "w")
            self.file.attrs["fingerprint"] = fingerprint
            self.file.attrs["done"] = 0
            self.file.attrs["undecodable"] = np.zeros(0, np.int64)
            self.file.create_dataset("keypoints", (0, n_keypoints, 3), np.float32,
                                     maxshape=(None, n_keypoints, 3), chunks=(256, n_keypoints, 3))
            self.file.flush()
        self.done = int(self.file.attrs["done"])
        bad = np.asarray(self.file.attrs.get("undecodable", np.zeros(0, np.int64)), np.int64)
        self.undecodable = bad[bad < first + self.done]  # video indices; rows start at frame `first`

    def _open_existing(self, fingerprint: str, n_keypoints: int) -> h5py.File | None:
        if not self.path.is_file():
            return None
        try:
            f = h5py.File(self.path, "r+")
        except OSError:  # damaged by a kill in mid-write: start over
            return None
        try:
            ok = (f.attrs.get("fingerprint") == fingerprint and "keypoints" in f
                  and f["keypoints"].shape[1:] == (n_keypoints, 3)
                  and 0 <= int(f.attrs["done"]) <= f["keypoints"].shape[0])
        except (OSError, KeyError, ValueError, TypeError):
            ok = False
        if not ok:
            f.close()
        return f if ok else None

    def read(self) -> np.ndarray:
        return np.asarray(self.file["keypoints"][: self.done], np.float32)

    def append(self, keypoints: np.ndarray, undecodable: np.ndarray) -> None:
        """Add finished rows; `undecodable`: their frames (video indices) that did not decode."""
        data = self.file["keypoints"]
        data.resize(self.done + len(keypoints), axis=0)
        data[self.done :] = keypoints
        self.file.flush()  # the data first, then the counter that vouches for it
        self.done += len(keypoints)
        self.undecodable = np.concatenate([self.undecodable, undecodable]).astype(np.int64)
        self.file.attrs["undecodable"] = self.undecodable  # written before the counter vouches for it
        self.file.attrs["done"] = self.done
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


# ---------------------------------------------------------------- tracking ---


def track_video(
    video: str | os.PathLike,
    model: FacemapUNet,
    bodyparts: Sequence[str],
    bbox: Sequence[float] | None = None,
    batch_size: int = 8,
    chunk_size: int = DEFAULT_CHUNK,
    out_path: str | os.PathLike | None = None,
    on_progress: Callable[[int], object] | None = None,
    resume: bool = True,
    *,
    on_warning: Callable[[str], object] | None = None,
    on_resume: Callable[[int], object] | None = None,
    csv_path: str | os.PathLike | None = None,
    postprocess: Callable[[np.ndarray, float], np.ndarray] | None = None,
    predictors: dict | None = None,
    frames: tuple[int, int | None] | None = None,
    flip_average: bool | None = None,
) -> np.ndarray:
    """Track every frame of `video`; write `out_path` (default `<video>_FacemapPose.h5`).

    Args:
      model, bodyparts: the tracker and the names of its K outputs.
      bbox: (x0, x1, y0, y1) crop box in frame pixels; None = whole frame.
      batch_size: frames per network call (results do not depend on it).
      chunk_size: frames decoded at once; bounds memory and is the unit of resuming.
      on_progress: called with the number of frames finished, after each
        chunk is safely in the partial file (and once at the start with the
        frames a resumed run already had). An exception from it stops the
        run, leaving the partial file for the next one.
      resume: continue from `<out>.partial` if it belongs to this video, model
        and bbox; False starts over.
      on_resume: called instead of on_progress with the frames a resumed run
        already had (so a caller can tell them from frames tracked now).
      on_warning: called with a one-line message if some frames could not be
        decoded (their rows are x = y = NaN, likelihood 0; the frames after
        them keep their indices); default: `warnings.warn`.
      csv_path: also write a DeepLabCut-style CSV (x, y, likelihood per
        bodypart, frame numbers as index) there.
      postprocess: fn(keypoints, fps) -> keypoints applied before writing
        (e.g. outlier filtering).
      predictors: a dict shared between calls to reuse compiled predictors
        (keyed by the model object: use a new one after changing its weights).
      frames: (start, stop) to track only frames start..stop-1 (stop None = to
        the end): a segment of a long video (`track --cluster --segment-frames`);
        the output and the returned rows hold those frames only, warnings name
        frames by their index in the video.
      flip_average: True: average every frame's outputs with its mirror image's (twice the
        network compute); False: never; None: the model's own setting (`make_predict_fn`).
    Returns:
      (T, K, 3) float32 keypoints: x, y in frame pixels, likelihood.
    Raises:
      VideoError for an unreadable video, JfacemapError (naming the video) for a
      bbox outside its frames.
    """
    video = Path(video)
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch size and chunk size must be >= 1, got {batch_size}, {chunk_size}")
    if len(bodyparts) != model.n_keypoints:
        raise ValueError(f"{len(bodyparts)} bodyparts for a model with {model.n_keypoints} outputs")
    out = facemap_pose_path(video) if out_path is None else Path(out_path)
    refuse_to_overwrite_ground_truth(out)
    info = video_info(video, exact=False)  # fast packet count: for the frame size and fps
    key = (id(model), (info.height, info.width), None if bbox is None else tuple(bbox), flip_average)
    predict = None if predictors is None else predictors.get(key)
    if predict is None:
        try:
            predict = make_predict_fn(model, bbox, (info.height, info.width), flip_average=flip_average)
        except JfacemapError as err:  # a bbox outside this video's frames
            raise JfacemapError(f"{video}: {err}") from err
        if predictors is not None:
            predictors[key] = predict
    first, last = (0, None) if frames is None else (int(frames[0]), None if frames[1] is None else int(frames[1]))
    fingerprint = _fingerprint(video, model, bodyparts, predict.geometry, frames and (first, last),
                               (predict.flip_average, predict.flip_average_below))
    partial = _Partial(partial_path(out), fingerprint, len(bodyparts), resume, first)
    try:
        parts = [partial.read()]
        if partial.done and (on_resume or on_progress) is not None:
            (on_resume or on_progress)(partial.done)
        decoder = _Decoder(video, chunk_size, first + partial.done, last)
        try:
            pending: tuple[list, int] | None = None
            for chunk, valid in decoder:
                outs = dispatch_batches(predict, chunk, batch_size)  # queue this chunk first ...
                if pending is not None:  # ... then wait for the previous one
                    _finish(partial, parts, pending, on_progress, first)
                pending = (outs, valid)
            if pending is not None:
                _finish(partial, parts, pending, on_progress, first)
        finally:
            decoder.close()
        keypoints = np.concatenate(parts)
        bad = partial.undecodable
    finally:
        partial.close()
    if len(bad):
        (on_warning or _warn)(undecodable_message(video, bad))
    keypoints = write_track_outputs(out, keypoints, bodyparts, info.fps, postprocess, csv_path)
    partial.path.unlink(missing_ok=True)
    return keypoints


def write_track_outputs(out: Path, keypoints: np.ndarray, bodyparts: Sequence[str], fps: float,
                        postprocess: Callable[[np.ndarray, float], np.ndarray] | None = None,
                        csv_path: str | os.PathLike | None = None) -> np.ndarray:
    """The end of tracking a video: `postprocess(keypoints, fps)`, then the pose file (and CSV), each
    written atomically; returns the keypoints written, (T, K, 3) float32."""
    if postprocess is not None:
        keypoints = np.asarray(postprocess(keypoints, fps), np.float32)
    write_facemap_pose(out, keypoints, bodyparts)
    if csv_path is not None:
        write_dlc_csv(csv_path, keypoints, list(bodyparts), scorer="jfacemap", with_likelihood=True)
    return keypoints


def _finish(partial: _Partial, parts: list, pending: tuple[list, np.ndarray], on_progress, first: int) -> None:
    outs, valid = pending
    result = gather_batches(outs, len(valid))
    result[~valid, :, :2] = np.nan  # a frame that did not decode: no position, no confidence
    result[~valid, :, 2] = 0.0
    partial.append(result, np.flatnonzero(~valid) + first + partial.done)
    parts.append(result)
    if on_progress is not None:
        on_progress(len(result))


def undecodable_message(video: str | os.PathLike, frames: np.ndarray) -> str:
    """One line: how many frames of `video` did not decode, and where."""
    where = f"frame {frames[0]}" if len(frames) == 1 else f"frames {frames[0]}-{frames[-1]}"
    return (f"{Path(video).name}: {len(frames)} frame{'s' if len(frames) > 1 else ''} could not be decoded "
            f"({where}); their keypoints are NaN with likelihood 0")


def _warn(message: str) -> None:
    warnings.warn(message, UndecodableFramesWarning, stacklevel=3)


class UndecodableFramesWarning(UserWarning):
    """Some frames of a tracked video could not be decoded."""


def track_videos(
    videos: Sequence[str | os.PathLike],
    model: FacemapUNet,
    bodyparts: Sequence[str],
    out_dir: str | os.PathLike | None = None,
    csv: bool = False,
    *,
    keep_going: bool = False,
    on_error: Callable[[Path, Exception], object] | None = None,
    per_video: Callable[[Path, Path], contextlib.AbstractContextManager[dict]] | None = None,
    **kwargs,
) -> list[Path]:
    """Track several videos, reusing compiled predictors; returns the pose files written.

    Outputs go beside each video, or to `out_dir` (named `<stem>_FacemapPose.h5`);
    `csv=True` adds `<stem>_FacemapPose.csv`. `kwargs` go to `track_video`.

    keep_going: a video that fails with a user error (JfacemapError, e.g. a
      missing or corrupt video, or an OSError) is passed to `on_error(video,
      error)` (default: a `VideoSkippedWarning`) and skipped; the result lists
      only the videos tracked. False: the first such error is raised.
    per_video: fn(video, out) -> a context manager wrapping that video's
      tracking; what it yields is a dict of extra `track_video` keyword
      arguments for it (e.g. its own on_progress). Its code after the yield
      runs only when the video was tracked.
    """
    output_paths(videos, out_dir)  # refuse clashing outputs before any work
    predictors = kwargs.pop("predictors", None)
    predictors = {} if predictors is None else predictors
    written = []
    for video in map(Path, videos):
        out = output_path(video, out_dir)
        try:
            with (per_video(video, out) if per_video is not None else contextlib.nullcontext({})) as extra:
                track_video(video, model, bodyparts, out_path=out, predictors=predictors,
                            csv_path=out.with_suffix(".csv") if csv else None, **{**kwargs, **extra})
        except (JfacemapError, OSError) as err:  # the video's fault; anything else is a bug and propagates
            if not keep_going:
                raise
            (on_error or _warn_skipped)(video, err)
            continue
        written.append(out)
    return written


class VideoSkippedWarning(UserWarning):
    """`track_videos(keep_going=True)` skipped a video it could not track."""


def _warn_skipped(video: Path, error: Exception) -> None:
    warnings.warn(f"skipped {video.name}: {error}", VideoSkippedWarning, stacklevel=3)


def output_path(video: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """`<stem>_FacemapPose.h5` beside the video, or in `out_dir`."""
    out = facemap_pose_path(video)
    return out if out_dir is None else Path(out_dir) / out.name
