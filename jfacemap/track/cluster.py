"""`track --cluster`: each video tracked by `track_videos` on a Dask worker, as serial `track` does.

    with open_client("local:2") as client:
        summary = track_on_cluster(client, videos, "base")

Each worker process loads the model once (a per-process cache keyed by the
model argument) and reuses its compiled predictors across its videos; a
rerun of a dead worker's video resumes from the `<out>.partial` it left.
The engine (clients, retries, the summary) is `jfacemap.cluster`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable, Sequence

from jfacemap.cluster import ClusterSummary, VideoOutput, VideoResult, run_on_cluster

__all__ = ["track_on_cluster", "track_one_video", "track_work"]

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


def track_on_cluster(
    client,
    videos: Sequence[str | os.PathLike],
    model: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    csv: bool = False,
    *,
    filter_: bool = False,
    retries: int = 2,
    on_result: Callable[[VideoResult], object] | None = None,
    on_chunk: Callable[[Path, int], object] | None = None,
    **options,
) -> ClusterSummary:
    """Track `videos` on the workers of `client`, one task per video; returns what each did, in input order.

    Args:
      model: a model name or folder (or .pt file) that every worker can resolve:
        a local path is made absolute here, so workers need the same file system.
      out_dir, csv, options (bbox, batch_size, chunk_size, resume): as `track_videos`.
      filter_: outlier filtering before writing (the `--filter` of `track`).
      retries, on_result: as `jfacemap.cluster.run_on_cluster`.
      on_chunk: fn(video, frames so far) called on the worker after each chunk is
        safely in the partial file (a test uses it to kill a worker mid-video);
        it must pickle.
    """
    from jfacemap.track.predict import output_paths

    videos = [Path(v).absolute() for v in videos]
    output_paths(videos, out_dir)  # two videos of one name into one folder: refuse before any work
    work = track_work(model, out_dir, csv, filter_, options, on_chunk)
    return run_on_cluster(client, work, videos, retries=retries, on_result=on_result, name="jfacemap-track")


def track_work(model: str | os.PathLike, out_dir: str | os.PathLike | None, csv: bool, filter_: bool, options: dict,
               on_chunk: Callable[[Path, int], object] | None = None) -> Callable[[Path], VideoOutput]:
    """`track_one_video` with these settings, for `run_on_cluster`: local paths made absolute (workers may
    run elsewhere on the same file system)."""
    spec = str(Path(model).absolute()) if Path(model).exists() else str(model)
    out = None if out_dir is None else Path(out_dir).absolute()
    return functools.partial(track_one_video, model=spec, out_dir=out, csv=csv, filter_=filter_, options=options,
                             on_chunk=on_chunk)
