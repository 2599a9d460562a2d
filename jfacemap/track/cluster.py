"""`track --cluster`: each video tracked by `track_videos` on a Dask worker, as serial `track` does.

    with open_client("local:2") as client:
        summary = track_on_cluster(client, videos, "base")
        summary = track_on_cluster(client, [long_video], "base", segment_frames=90_000)  # pieces on many workers

A video longer than `segment_frames` is tracked in pieces of that many frames,
one task each (`track_video(frames=(start, stop))` into
`<out stem>.segment-<start>.h5`, resumable like a whole video); when all its
pieces are in, this process joins them, filters the whole (`--filter` needs
its neighbours across piece boundaries), writes the pose file atomically and
deletes the pieces. Each frame's keypoints do not depend on which batch or
chunk it was in, so the file is the one serial `track` writes.

Each worker process loads the model once (a per-process cache keyed by the
model argument) and reuses its compiled predictors across its videos; a
rerun of a dead worker's video resumes from the `<out>.partial` it left.
The engine (clients, retries, the summary) is `jfacemap.cluster`.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from jfacemap.cluster import ClusterSummary, VideoOutput, VideoResult, completed_tasks, one_line, run_on_cluster
from jfacemap.errors import JfacemapError

__all__ = ["segment_path", "track_on_cluster", "track_one_video", "track_segment", "track_work"]

# The worker side. Module globals live once per worker process.
_MODELS: dict[tuple, tuple] = {}  # (model argument, its mtime) -> (net, bodyparts, predictors)


def _worker_tracker(model: str) -> tuple[tuple, bool]:
    """The model, loaded on this worker's first video; again only if its file or folder changed since
    (a long-lived worker of a joined scheduler may outlive a model folder rewritten in place)."""
    path = Path(model)
    key = (model, path.stat().st_mtime_ns if path.exists() else None)
    if key in _MODELS:
        return _MODELS[key], False
    from jfacemap.track.model_store import load_tracker

    net, bodyparts, _ = load_tracker(model)
    _MODELS.clear()  # one model per worker: a changed one replaces the old one
    _MODELS[key] = (net, bodyparts, {})
    return _MODELS[key], True


def track_one_video(video: Path, model: str, out_dir: Path | None, csv: bool, filter_: bool, options: dict,
                    on_chunk: Callable[[Path, int], object] | None = None) -> VideoOutput:
    """Runs on a worker: track one video through `track_videos`, as serial `track` does.

    extra: model_loaded (this task loaded the model: the worker's first video) and, with `filter_`,
    fractions (of frames flagged per outlier kind).
    """
    from jfacemap.track.filter import filter_hook
    from jfacemap.track.predict import track_videos

    counts = {"frames": 0, "resumed": 0}
    fractions: dict = {}
    warned: list[str] = []

    def progress(n: int) -> None:
        counts["frames"] += n
        if on_chunk is not None:
            on_chunk(video, counts["frames"])

    def resumed(n: int) -> None:
        counts["resumed"] += n

    (net, bodyparts, predictors), loaded = _worker_tracker(model)
    [pose] = track_videos([video], net, bodyparts, out_dir, csv, predictors=predictors, on_progress=progress,
                          on_resume=resumed, postprocess=filter_hook(fractions) if filter_ else None,
                          on_warning=warned.append, **options)
    extra = {"model_loaded": loaded, **({"fractions": fractions} if filter_ else {})}
    return VideoOutput(pose, counts["frames"], counts["resumed"], tuple(warned), extra)


def segment_path(out: Path, start: int) -> Path:
    """Where the piece of a video from frame `start` goes until the pieces are joined into `out`."""
    return out.with_name(f"{out.stem}.segment-{start:09d}.h5")


def track_segment(video: Path, frames: tuple[int, int | None], model: str, out: Path, options: dict,
                  on_chunk: Callable[[Path, int], object] | None = None) -> VideoOutput:
    """Runs on a worker: track frames start..stop-1 of `video` into `segment_path(out, start)`."""
    from jfacemap.track.predict import track_video

    counts = {"frames": 0, "resumed": 0}
    warned: list[str] = []

    def progress(n: int) -> None:
        counts["frames"] += n
        if on_chunk is not None:
            on_chunk(video, frames[0] + counts["resumed"] + counts["frames"])

    def resumed(n: int) -> None:
        counts["resumed"] += n

    (net, bodyparts, predictors), loaded = _worker_tracker(model)
    piece = segment_path(out, frames[0])
    track_video(video, net, bodyparts, out_path=piece, predictors=predictors, on_progress=progress,
                on_resume=resumed, on_warning=warned.append, frames=frames, **options)
    return VideoOutput(piece, counts["frames"], counts["resumed"], tuple(warned), {"model_loaded": loaded})


def _segments(video: Path, segment_frames: int) -> list[tuple[int, int | None]]:
    """(start, stop) pieces of `segment_frames` frames; the last runs to the end (the packet count of a
    video can be a little off: frames past it still land in the last piece)."""
    from jfacemap.io.video import video_info

    n = video_info(video, exact=False).n_frames
    starts = list(range(0, max(n, 1), segment_frames))
    return [(a, b) for a, b in zip(starts, starts[1:])] + [(starts[-1], None)]


def _join_segments(video: Path, out: Path, pieces: list[VideoResult], csv: bool, filter_: bool) -> VideoResult:
    """One video's result from its pieces' (all done): the pose file written from them, pieces deleted."""
    from jfacemap.io.keypoints import read_facemap_pose
    from jfacemap.io.video import video_info
    from jfacemap.track.filter import filter_hook
    from jfacemap.track.predict import write_track_outputs

    started = time.perf_counter()
    parts = [read_facemap_pose(piece.output) for piece in pieces]
    keypoints = np.concatenate([kp for kp, _ in parts])
    fractions: dict = {}
    try:
        write_track_outputs(out, keypoints, parts[0][1], video_info(video, exact=False).fps,
                            filter_hook(fractions) if filter_ else None, out.with_suffix(".csv") if csv else None)
    except (JfacemapError, OSError) as err:
        return VideoResult(video, None, 0, 0, 0.0, "", one_line(err))
    for piece in pieces:
        piece.output.unlink(missing_ok=True)
    workers = sorted({piece.worker for piece in pieces})
    extra = {"model_loaded": any(p.extra.get("model_loaded") for p in pieces), "segments": len(pieces),
             "workers": workers, **({"fractions": fractions} if filter_ else {})}
    return VideoResult(video, out, sum(p.frames for p in pieces), sum(p.resumed for p in pieces),
                       sum(p.seconds for p in pieces) + time.perf_counter() - started, "+".join(workers), None,
                       tuple(w for p in pieces for w in p.warnings), extra)


def track_on_cluster(
    client,
    videos: Sequence[str | os.PathLike],
    model: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    csv: bool = False,
    *,
    filter_: bool = False,
    segment_frames: int = 0,
    retries: int = 2,
    on_result: Callable[[VideoResult], object] | None = None,
    on_chunk: Callable[[Path, int], object] | None = None,
    **options,
) -> ClusterSummary:
    """Track `videos` on the workers of `client`, one task per video (or per piece of a long one).

    Args:
      model: a model name or folder (or .pt file) that every worker can resolve:
        a local path is made absolute here, so workers need the same file system.
      out_dir, csv, options (bbox, batch_size, chunk_size, resume): as `track_videos`.
      filter_: outlier filtering before writing (the `--filter` of `track`).
      segment_frames: > 0: a video longer than this is tracked in pieces of this many
        frames on several workers at once (module doc); 0 = one task per video.
      retries, on_result: as `jfacemap.cluster.run_on_cluster` (on_result gets one result per video).
      on_chunk: fn(video, frames of it done) called on the worker after each chunk is
        safely in the partial file (a test uses it to kill a worker mid-video);
        it must pickle.
    Returns:
      ClusterSummary, one result per video in input order.
    """
    from jfacemap.track.predict import output_paths

    videos = [Path(v).absolute() for v in videos]
    outs = output_paths(videos, out_dir)  # two videos of one name into one folder: refuse before any work
    work = track_work(model, out_dir, csv, filter_, options, on_chunk)
    if segment_frames <= 0:
        return run_on_cluster(client, work, videos, retries=retries, on_result=on_result, name="jfacemap-track")
    if segment_frames < options.get("chunk_size", 1):
        raise JfacemapError(f"segment_frames {segment_frames} is below the chunk size {options['chunk_size']}")
    started = time.perf_counter()
    tasks, owner = [], []  # (video, work) per task; the index of its video
    plans = []
    for i, (video, out) in enumerate(zip(videos, outs)):
        try:
            pieces = _segments(video, segment_frames)
        except (JfacemapError, OSError):  # an unreadable video: its one task fails with the error, as unsplit
            pieces = [(0, None)]
        plans.append(pieces)
        for frames in pieces:
            tasks.append((video, work if len(pieces) == 1 else functools.partial(
                track_segment, frames=frames, model=work.keywords["model"], out=out.absolute(),
                options=options, on_chunk=on_chunk)))
            owner.append(i)
    got: dict[int, dict[int, VideoResult]] = {i: {} for i in range(len(videos))}
    results: list[VideoResult | None] = [None] * len(videos)
    for t, piece in completed_tasks(client, tasks, retries=retries, name="jfacemap-track"):
        i = owner[t]
        if results[i] is not None:
            continue  # the video failed already (another of its pieces)
        if piece.error is not None or len(plans[i]) == 1:
            results[i] = piece
        else:
            got[i][t] = piece
            if len(got[i]) < len(plans[i]):
                continue
            results[i] = _join_segments(videos[i], outs[i].absolute(), [got[i][k] for k in sorted(got[i])],
                                        csv, filter_)
        if on_result is not None:
            on_result(results[i])
    return ClusterSummary([r for r in results if r is not None], time.perf_counter() - started)


def track_work(model: str | os.PathLike, out_dir: str | os.PathLike | None, csv: bool, filter_: bool, options: dict,
               on_chunk: Callable[[Path, int], object] | None = None) -> Callable[[Path], VideoOutput]:
    """`track_one_video` with these settings, for `run_on_cluster`: local paths made absolute (workers may
    run elsewhere on the same file system)."""
    spec = str(Path(model).absolute()) if Path(model).exists() else str(model)
    out = None if out_dir is None else Path(out_dir).absolute()
    return functools.partial(track_one_video, model=spec, out_dir=out, csv=csv, filter_=filter_, options=options,
                             on_chunk=on_chunk)
