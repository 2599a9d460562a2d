"""A whole video's ROI measures: every ROI asked, chunk by chunk, resumable.

    request = RoiRequest(pupil=(30, 90, 95, 140), blink=(30, 90, 95, 140), running=(12, 199, 102, 248))
    arrays = roi_video("mouse.mp4", request)            # the contents of <video>_roi.npz
    arrays["pupil_area"], arrays["blink_events"], arrays["running"]

Levels (the pupil threshold, the blink eye level) come from the first chunk
(every `SAMPLE_STEP`-th frame of it): no extra pass over the video, and a
resumed run keeps the levels it started with (they are in the partial). The
pass reads the video in chunks, the next one decoded while this one is
measured; only the per-frame traces (a few floats per frame) and the last
frame's running ROI are kept, so memory does not grow with the frames.

Resuming (as `track`): with `partial` set, the traces so far, the levels and
the frames done are saved there (atomically, at most every `save_every_s`
seconds, and when the pass is interrupted); a later call with the same video
file and request continues from there. A partial that belongs to another
video or request is ignored and replaced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from jfacemap.errors import JfacemapError
from jfacemap.io.atomic import write_npz_atomic
from jfacemap.io.video import iter_chunks, video_info
from jfacemap.roi.blink import BLINK_THRESHOLD, blink_events, blink_trace, eye_level, normalise_blink
from jfacemap.roi.box import Box, RoiError, check_box
from jfacemap.roi.pupil import PupilSettings, measure_pupil, pupil_threshold
from jfacemap.roi.running import measure_running

__all__ = ["RoiRequest", "roi_video", "roi_path", "check_request", "CHUNK"]

SAMPLE_STEP = 4  # every 4th frame of the first chunk sets the levels
CHUNK = 500  # frames per chunk of the pass


@dataclass(frozen=True)
class RoiRequest:
    """Which ROIs to measure (x0, y0, x1, y1 frame pixels, ends exclusive; None = not asked) and how.

    blink_fraction: `eye_level`'s fraction; blink_threshold: `blink_events`'
    threshold on the normalised trace. running_sigma, running_max_shift: see
    `jfacemap.roi.running`.
    """

    pupil: Box | None = None
    blink: Box | None = None
    running: Box | None = None
    pupil_settings: PupilSettings = PupilSettings()
    blink_fraction: float = 0.2
    blink_threshold: float = BLINK_THRESHOLD
    running_sigma: float = 1.5
    running_max_shift: float = 0.4

    def asked(self) -> list[str]:
        return [k for k in ("pupil", "blink", "running") if getattr(self, k) is not None]


def roi_path(video: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """<out or the video's folder>/<video stem>_roi.npz."""
    video = Path(video)
    return (Path(out) if out is not None else video.parent) / f"{video.stem}_roi.npz"


def check_request(video: str | os.PathLike, request: RoiRequest, height: int, width: int) -> RoiRequest:
    """The request with its boxes checked against a height x width frame; RoiError naming the video."""
    boxes = {}
    for kind in request.asked():
        try:
            boxes[kind] = check_box(getattr(request, kind), height, width, what=f"{kind} ROI")
        except RoiError as err:
            raise RoiError(f"{video}: {err}") from err
    return dataclasses.replace(request, **boxes)


def _fingerprint(video: Path, request: RoiRequest) -> str:
    st = video.stat()
    text = json.dumps([str(video.resolve()), st.st_size, st.st_mtime_ns, repr(request)])
    return hashlib.sha1(text.encode()).hexdigest()


class _State:
    """Traces so far (lists of per-chunk arrays), the levels, the running carry-over."""

    def __init__(self, request: RoiRequest, levels: dict[str, float]):
        self.request, self.levels, self.done = request, levels, 0
        self.parts: dict[str, list[np.ndarray]] = {}
        self.previous: np.ndarray | None = None  # running ROI of the last frame done

    def add(self, name: str, values: np.ndarray) -> None:
        self.parts.setdefault(name, []).append(np.asarray(values))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in self.parts.items()}

    def save(self, path: Path, fingerprint: str) -> None:
        extra = {} if self.previous is None else {"_previous": self.previous}
        write_npz_atomic(path, _fingerprint=np.array(fingerprint), _done=np.array(self.done),
                         _levels=np.array(json.dumps(self.levels)), **self.arrays(), **extra)

    @classmethod
    def load(cls, path: Path, fingerprint: str, request: RoiRequest) -> "_State | None":
        try:
            with np.load(path) as data:
                if str(data["_fingerprint"]) != fingerprint:
                    return None
                state = cls(request, json.loads(str(data["_levels"])))
                state.done = int(data["_done"])
                state.previous = data["_previous"] if "_previous" in data else None
                for k in data.files:
                    if not k.startswith("_"):
                        state.parts[k] = [data[k]]
                return state
        except (OSError, KeyError, ValueError):
            return None


def _levels(first_chunk: np.ndarray, request: RoiRequest) -> dict[str, float]:
    sample = first_chunk[::SAMPLE_STEP]
    levels = {}
    if request.pupil is not None:
        levels["pupil_threshold"] = pupil_threshold(sample, request.pupil, request.pupil_settings)
    if request.blink is not None:
        levels["blink_level"] = eye_level(sample, request.blink, request.blink_fraction)
    return levels


def _measure(request: RoiRequest, levels: dict, previous, frames: np.ndarray,
             chunk_size: int) -> tuple[dict, np.ndarray | None]:
    """One chunk's traces ({name: array}) and the running ROI of its last frame."""
    r, out = request, {}
    if r.pupil is not None:
        p = measure_pupil(frames, r.pupil, levels["pupil_threshold"], r.pupil_settings)
        out.update({f"pupil_{k}": getattr(p, k) for k in ("area", "center", "axes", "angle")})
    if r.blink is not None:
        out["blink_raw"] = blink_trace(frames, r.blink, levels["blink_level"])
    if r.running is not None:
        out["running"] = measure_running(frames, r.running, previous, r.running_max_shift, r.running_sigma,
                                         pad_to=chunk_size + 1)
        x0, y0, x1, y1 = r.running
        previous = frames[-1, y0:y1, x0:x1].copy()
    return out, previous


def _finish(state: _State) -> dict[str, np.ndarray]:
    r, out = state.request, state.arrays()
    out["n_frames"] = np.array(state.done)
    if r.pupil is not None:
        out["pupil_roi"] = np.array(r.pupil, np.int64)
        out["pupil_threshold"] = np.array(state.levels["pupil_threshold"])
    if r.blink is not None:
        out["blink"] = normalise_blink(out["blink_raw"])
        out["blink_events"] = blink_events(out["blink"], r.blink_threshold)
        out["blink_roi"] = np.array(r.blink, np.int64)
        out["blink_level"] = np.array(state.levels["blink_level"])
        out["blink_threshold"] = np.array(r.blink_threshold)
    if r.running is not None:
        out["running_roi"] = np.array(r.running, np.int64)
    return out


def _prefetched(chunks):
    """The chunks of `chunks`, the next one decoded in a thread while the caller works on this one
    (ffmpeg's pipe holds about one frame: without a reader it would wait for us)."""
    it = iter(chunks)
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(next, it, None)
            while (chunk := pending.result()) is not None:
                pending = pool.submit(next, it, None)
                yield chunk
    finally:  # the worker is done here (the pool waited): stop the decoder now, not at garbage collection
        if hasattr(it, "close"):
            it.close()


def roi_video(
    video: str | os.PathLike, request: RoiRequest, chunk_size: int = CHUNK, partial: str | os.PathLike | None = None,
    on_progress: Callable[[int], None] | None = None, on_resume: Callable[[int], None] | None = None,
    save_every_s: float = 10.0,
) -> dict[str, np.ndarray]:
    """Every ROI of `request` over the whole video: the arrays of <video>_roi.npz.

    Per frame (T): pupil_area (T,) px^2, pupil_center (T, 2) x, y px,
    pupil_axes (T, 2) px (major, minor full lengths), pupil_angle (T,) rad
    (NaN where no pupil); blink (T,) normalised trace, blink_raw (T,) grey
    levels, blink_events (E, 2) onset, offset frames (inclusive); running
    (T, 2) dx, dy px/frame (row 0 is 0). Plus each ROI's box (`*_roi`), the
    levels used, n_frames. on_progress(n): n more frames done; on_resume(n):
    n frames found done in `partial`.
    """
    video = Path(video)
    if not request.asked():
        raise JfacemapError(f"{video}: no ROI asked (pupil, blink or running)")
    info = video_info(video, exact=False)
    request = check_request(video, request, info.height, info.width)
    fingerprint = _fingerprint(video, request)
    partial = Path(partial) if partial is not None else None
    state = _State.load(partial, fingerprint, request) if partial is not None and partial.exists() else None
    if state is None:
        state = _State(request, {})
    elif state.done and on_resume is not None:
        on_resume(state.done)
    last_save = time.monotonic()
    try:
        for frames in _prefetched(iter_chunks(video, chunk_size, start=state.done)):
            if not state.levels:
                state.levels = _levels(frames, request)
            parts, previous = _measure(request, state.levels, state.previous, frames, chunk_size)
            for name, values in parts.items():  # committed together: an interrupt leaves a whole chunk or none
                state.add(name, values)
            state.previous, state.done = previous, state.done + len(frames)
            if on_progress is not None:
                on_progress(len(frames))
            if partial is not None and time.monotonic() - last_save >= save_every_s:
                state.save(partial, fingerprint)
                last_save = time.monotonic()
    except BaseException:
        if partial is not None and state.done:
            state.save(partial, fingerprint)  # what is done survives Ctrl-C and errors
        raise
    if state.done == 0:
        raise JfacemapError(f"{video}: no frames decoded")
    return _finish(state)
