"""Run one task per video on a Dask distributed cluster: the engine behind `track`, `svd` and `roi --cluster`.

    with open_client("local:2") as client:              # or "tcp://host:8786" (a running scheduler)
        summary = run_on_cluster(client, work, videos)   # work(video) -> VideoOutput, the serial path's function
    summary.done, summary.failed, summary.frames_per_s

(Worker processes are spawned: a script that starts a local cluster does so
under `if __name__ == "__main__":`.)

Why Dask distributed: pure Python (pip installs it; no daemon of its own),
`dask scheduler` / `dask worker` run as plain processes inside a SLURM job
(dask-jobqueue submits them for you), `LocalCluster` covers one machine, and
its scheduler already re-runs the tasks of a worker that dies.

A task calls `work(video)`, the same per-video function the serial command
calls, so outputs are the same files, written atomically where the serial
command writes them. `work` must pickle: a module-level function, or a
`functools.partial` of one.

Failures. A user error (JfacemapError / OSError: unreadable video, bbox
outside the frame) is returned, not raised: rerunning cannot fix it. Any
other exception is retried `retries` times. A worker that dies (killed,
out of memory, node lost) is not an exception: the scheduler re-runs its
task on another worker (up to `distributed.scheduler.allowed-failures`,
default 3), and that run resumes from the partial file the dead one left
(where the stage has one: `track`, `roi`).
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

__all__ = ["ClusterError", "ClusterSummary", "VideoOutput", "VideoResult", "open_client", "parse_cluster",
           "require_distributed", "run_on_cluster", "completed_tasks"]

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


class VideoOutput(NamedTuple):
    """What a stage's per-video function returns: its output file, frames done in this run and taken over from a
    partial, one-line warnings (e.g. frames that did not decode), anything else the command reports (`extra`)."""
    output: Path
    frames: int
    resumed: int = 0
    warnings: tuple[str, ...] = ()
    extra: dict = {}


class VideoResult(NamedTuple):
    """One video's task as the client sees it: VideoOutput's fields, plus seconds, worker and a one-line error."""
    video: Path
    output: Path | None
    frames: int
    resumed: int
    seconds: float
    worker: str
    error: str | None = None  # one line, for a video the stage could not process
    warnings: tuple[str, ...] = ()
    extra: dict = {}


@dataclass
class ClusterSummary:
    """What a cluster run did; `frames_per_s` counts frames done in this run over its wall time."""
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

    def lines(self, refused: int = 0, verb: str = "tracked") -> list[str]:
        """The closing summary: counts (with `refused` videos the caller turned away before), rate, failures."""
        workers = len({w for r in self.done for w in r.worker.split("+")})  # a video in pieces: "w1+w2"
        out = [f"{len(self.done)} of {len(self.results) + refused} videos {verb}, {len(self.failed) + refused} failed; "
               f"{self.frames} frames in {self.seconds:.1f} s ({self.frames_per_s:.1f} frames/s overall, "
               f"{workers} worker{'s' if workers != 1 else ''})"]
        out += [f"failed {r.video}: {r.error}" for r in self.failed]
        return out


def one_line(error: BaseException) -> str:
    """The first line of an error's message (its type's name if it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _video_task(work: Callable[[Path], VideoOutput], video: Path) -> VideoResult:
    """Runs on a worker: `work(video)`, timed; a user error comes back as the result's one-line error."""
    worker = f"{os.uname().nodename}:{os.getpid()}"
    started = time.perf_counter()
    try:
        done = work(video)
    except (JfacemapError, OSError) as err:  # the video's (or model's) fault: a retry would fail the same way
        return VideoResult(video, None, 0, 0, time.perf_counter() - started, worker, one_line(err))
    return VideoResult(video, done.output, done.frames, done.resumed, time.perf_counter() - started, worker, None,
                       tuple(done.warnings), dict(done.extra))


def run_on_cluster(
    client,
    work: Callable[[Path], VideoOutput],
    videos: Sequence[str | os.PathLike],
    *,
    retries: int = 2,
    on_result: Callable[[VideoResult], object] | None = None,
    name: str = "jfacemap",
) -> ClusterSummary:
    """`work(video)` for each of `videos` on the workers of `client`, one task each; results in input order.

    Args:
      work: fn(absolute video path) -> VideoOutput; must pickle (a module-level function or a partial of one)
        and find its inputs at the same paths on every worker (a shared file system).
      retries: re-runs of a task that raised something other than a user error.
      on_result: called here with each VideoResult as it arrives (completion order).
      name: prefix of the task keys (the scheduler's name for them).
    Returns:
      ClusterSummary; seconds = wall time from submission to the last result.
    """
    videos = [Path(v).absolute() for v in videos]
    started = time.perf_counter()
    results: list[VideoResult | None] = [None] * len(videos)
    for i, result in completed_tasks(client, [(video, work) for video in videos], retries=retries, name=name):
        results[i] = result
        if on_result is not None:
            on_result(result)
    return ClusterSummary([r for r in results if r is not None], time.perf_counter() - started)


def completed_tasks(client, tasks: Sequence[tuple[Path, Callable[[Path], VideoOutput]]], *, retries: int = 2,
                    name: str = "jfacemap") -> Iterator[tuple[int, VideoResult]]:
    """Submit `work(video)` for each (video, work) of `tasks`; yield (its index, VideoResult) as each ends.

    A task whose retries are spent, or whose worker died `allowed-failures` times, yields a result with
    that error (one line) instead of raising.
    """
    distributed = require_distributed()
    futures = {client.submit(_video_task, work, video, key=f"{name}-{i}-{video.name}-{os.getpid()}-{time.time_ns()}",
                             retries=retries, pure=False): i
               for i, (video, work) in enumerate(tasks)}
    for future in distributed.as_completed(futures):
        i = futures[future]
        try:
            result = future.result()
        except Exception as err:  # retries spent, or a worker died allowed-failures times (KilledWorker)
            result = VideoResult(tasks[i][0], None, 0, 0, 0.0, "", f"{type(err).__name__}: {one_line(err)}")
        yield i, result
