"""Track many videos on a Dask distributed cluster: one task per video, the serial tracking path on each worker.

    with open_client("local:2") as client:              # or "tcp://host:8786" (a running scheduler)
        summary = track_on_cluster(client, videos, "base")
    summary.done, summary.failed, summary.frames_per_s

(Worker processes are spawned: a script that starts a local cluster does so
under `if __name__ == "__main__":`.)

Why Dask distributed: pure Python (pip installs it; no daemon of its own),
`dask scheduler` / `dask worker` run as plain processes inside a SLURM job
(dask-jobqueue submits them for you), `LocalCluster` covers one machine, and
its scheduler already re-runs the tasks of a worker that dies.

A task is `_track_task`: it calls `track_videos` on its one video exactly as
serial `track` does, so outputs are the same files, written atomically
beside the video (or in `out_dir`), and a rerun resumes from `<out>.partial`.
Each worker process loads the model once (a per-process cache keyed by the
model argument) and reuses its compiled predictors across its videos.

Failures. A user error (JfacemapError / OSError: unreadable video, bbox
outside the frame) is returned, not raised: rerunning cannot fix it. Any
other exception is retried `retries` times. A worker that dies (killed,
out of memory, node lost) is not an exception: the scheduler re-runs its
task on another worker (up to `distributed.scheduler.allowed-failures`,
default 3), and that run resumes from the partial file the dead one left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

from jfacemap.errors import JfacemapError

__all__ = ["ClusterError", "ClusterSummary", "VideoResult", "parse_cluster", "require_distributed", "open_client",
           "track_on_cluster"]

INSTALL_HINT = 'pip install "jfacemap[cluster]"'
_LOCAL = re.compile(r"local:(\d+)")
_ADDRESS = re.compile(r"(tcp|tls|inproc|ucx|ws|wss)://([^\s/:\[\]]+|\[[0-9a-fA-F:.]+\])(:\d+)?/?")  # host or [IPv6]


class ClusterError(JfacemapError):
    """A bad --cluster value, or the cluster extra is not installed."""


def parse_cluster(spec: str) -> tuple[str, int | str]:
    """A --cluster value: `local:N` -> ("local", N); `tcp://host:port` -> ("address", it); else ClusterError."""
    text = spec.strip()
    if match := _LOCAL.fullmatch(text):
        n = int(match.group(1))
        if n < 1:
            raise ClusterError(f"--cluster {spec!r}: local:N needs N >= 1 workers")
        return "local", n
    if _ADDRESS.fullmatch(text):
        return "address", text
    raise ClusterError(f"--cluster {spec!r}: expected local:N (N worker processes here) "
                       "or a scheduler address such as tcp://host:8786")


def require_distributed():
    try:
        import distributed
    except ImportError as err:
        raise ClusterError(f"--cluster needs Dask distributed, which is not installed: {INSTALL_HINT}") from err
    return distributed


@contextlib.contextmanager
def open_client(spec: str, timeout_s: float = 30.0) -> Iterator:
    """A `distributed.Client`: on a new LocalCluster of N one-thread worker processes, or joined to `spec`'s scheduler.

    A local cluster is closed on exit; a joined scheduler and its workers keep running.
    """
    kind, value = parse_cluster(spec)
    distributed = require_distributed()
    # The scheduler's INFO lines (workers joining, comms closing) would bury the per-video lines.
    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with _client(distributed, kind, value, timeout_s) as client:
            yield client
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _client(distributed, kind: str, value, timeout_s: float) -> Iterator:
    if kind == "local":
        # One thread per worker: one video at a time each (JAX threads inside it).
        # No memory limit: the nanny would pause or kill a worker whose JAX buffers look large.
        # No dashboard: it needs bokeh and a free port, and nobody is looking at it here.
        with distributed.LocalCluster(n_workers=value, threads_per_worker=1, processes=True, memory_limit=0,
                                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
                distributed.Client(cluster) as client:
            yield client
        return
    try:
        client = distributed.Client(value, timeout=timeout_s)
    except OSError as err:  # includes asyncio/tornado TimeoutError: nothing listens there
        raise ClusterError(f"--cluster {value}: cannot reach a Dask scheduler there ({err})") from err
    with client:
        yield client


class VideoResult(NamedTuple):
    """One video's task: frames tracked in this run and taken over from a partial, seconds, worker."""
    video: Path
    pose: Path | None
    frames: int
    resumed: int
    seconds: float
    worker: str
    model_loaded: bool  # this task loaded the model (the worker's first video)
    error: str | None = None  # one line, for a video that could not be tracked
    fractions: dict | None = None  # --filter: fraction of frames flagged per outlier kind
    warnings: tuple[str, ...] = ()  # e.g. frames that did not decode (one line each)


@dataclass
class ClusterSummary:
    """What a cluster run did; `frames_per_s` counts frames tracked in this run over its wall time."""
    results: list[VideoResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def done(self) -> list[VideoResult]:
        return [r for r in self.results if r.error is None]

    @property
    def failed(self) -> list[VideoResult]:
        return [r for r in self.results if r.error is not None]

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self.done)

    @property
    def frames_per_s(self) -> float:
        return self.frames / max(self.seconds, 1e-9)

    def lines(self, refused: int = 0) -> list[str]:
        """The closing summary: counts (with `refused` videos the caller turned away before), rate, failures."""
        workers = len({r.worker for r in self.done})
        out = [f"{len(self.done)} of {len(self.results) + refused} videos tracked, {len(self.failed) + refused} failed; "
               f"{self.frames} frames in {self.seconds:.1f} s ({self.frames_per_s:.1f} frames/s overall, "
               f"{workers} worker{'s' if workers != 1 else ''})"]
        out += [f"failed {r.video}: {r.error}" for r in self.failed]
        return out


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


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _track_task(video: Path, model: str, out_dir: Path | None, csv: bool, filter_: bool, options: dict,
                on_chunk: Callable[[Path, int], object] | None = None) -> VideoResult:
    """Runs on a worker: track one video through `track_videos`, as serial `track` does."""
    from jfacemap.track.filter import filter_hook
    from jfacemap.track.predict import track_videos

    worker = f"{os.uname().nodename}:{os.getpid()}"
    counts = {"frames": 0, "resumed": 0}
    fractions: dict = {}
    warned: list[str] = []

    def progress(n: int) -> None:
        counts["frames"] += n
        if on_chunk is not None:
            on_chunk(video, counts["frames"])

    def resumed(n: int) -> None:
        counts["resumed"] += n

    started = time.perf_counter()
    loaded = False
    try:
        (net, bodyparts, predictors), loaded = _worker_tracker(model)
        [pose] = track_videos([video], net, bodyparts, out_dir, csv, predictors=predictors, on_progress=progress,
                              on_resume=resumed, postprocess=filter_hook(fractions) if filter_ else None,
                              on_warning=warned.append, **options)
    except (JfacemapError, OSError) as err:  # the video's (or model's) fault: a retry would fail the same way
        return VideoResult(video, None, 0, 0, time.perf_counter() - started, worker, loaded, _one_line(err))
    return VideoResult(video, pose, counts["frames"], counts["resumed"], time.perf_counter() - started, worker,
                       loaded, None, fractions if filter_ else None, tuple(warned))


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
      retries: re-runs of a task that raised something other than a user error.
      on_result: called here with each VideoResult as it arrives (completion order).
      on_chunk: fn(video, frames so far) called on the worker after each chunk is
        safely in the partial file (a test uses it to kill a worker mid-video);
        it must pickle.
    Returns:
      ClusterSummary; seconds = wall time from submission to the last result.
    """
    distributed = require_distributed()
    from jfacemap.track.predict import output_paths

    videos = [Path(v).absolute() for v in videos]
    output_paths(videos, out_dir)  # two videos of one name into one folder: refuse before any work
    spec = str(Path(model).absolute()) if Path(model).exists() else str(model)
    out = None if out_dir is None else Path(out_dir).absolute()
    started = time.perf_counter()
    futures = {client.submit(_track_task, video, spec, out, csv, filter_, options, on_chunk,
                             key=f"jfacemap-track-{i}-{video.name}-{os.getpid()}-{time.time_ns()}",
                             retries=retries, pure=False): i
               for i, video in enumerate(videos)}
    results: list[VideoResult | None] = [None] * len(videos)
    for future in distributed.as_completed(futures):
        i = futures[future]
        try:
            result = future.result()
        except Exception as err:  # retries spent, or a worker died allowed-failures times (KilledWorker)
            result = VideoResult(videos[i], None, 0, 0, 0.0, "", False, f"{type(err).__name__}: {_one_line(err)}")
        results[i] = result
        if on_result is not None:
            on_result(result)
    return ClusterSummary([r for r in results if r is not None], time.perf_counter() - started)
