"""`--cluster` of `track`, `svd` and `roi`: the option, its early checks, and the lines a cluster run prints."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import typer

CLUSTER_HELP = ("Process the videos in parallel on Dask distributed, one task per video: 'local:N' starts N worker "
                "processes here; 'tcp://HOST:PORT' joins a running scheduler (e.g. one started in a SLURM job). "
                "Needs pip install \"jfacemap[cluster]\". A video that fails there is listed in the closing summary.")


def check_cluster(spec: Optional[str]) -> None:
    """A bad --cluster value or a missing extra fails before any video is read (one line)."""
    if spec is not None:
        from jfacemap.cluster import parse_cluster, require_distributed

        parse_cluster(spec)
        require_distributed()


def run_cluster_command(spec: str, videos: list[Path], work: Callable | None, failed: list[Path], *, verb: str,
                        stage: str, describe: Callable | None = None, refused: int = 0,
                        submit: Callable | None = None) -> None:
    """`work(video)` for each video on the cluster `spec`: one line per video as it finishes, then the summary.

    verb: the per-video and summary lines' verb ("tracked"); stage: the command, in the task keys.
    failed: videos that failed there are appended (the caller exits 1 when it is not empty).
    describe: fn(VideoResult) -> extra lines printed after a finished video's line.
    refused: videos the command's own checks turned away before (their errors are printed already).
    submit: fn(client, on_result) -> ClusterSummary, instead of `run_on_cluster(client, work, videos)`.
    """
    from jfacemap.cluster import ClusterSummary, open_client, run_on_cluster

    def one(result) -> None:
        if result.error is not None:
            named = result.video.name in result.error  # user errors name their video already
            typer.echo(f"jfacemap: error: {'' if named else result.video.name + ': '}{result.error}", err=True)
            failed.append(result.video)
            return
        for message in result.warnings:
            typer.echo(f"warning: {message}", err=True)
        before = f", {result.resumed} from the interrupted run" if result.resumed else ""
        typer.echo(f"{verb} {result.video.name}: {result.frames} frames in {result.seconds:.1f} s on "
                   f"{result.worker}{before}")
        for line in describe(result) if describe is not None else ():
            typer.echo(line)

    summary = ClusterSummary()
    if videos:
        with open_client(spec) as client:
            typer.echo(f"cluster    {client.scheduler.address}: {len(client.nthreads())} workers, "
                       f"{len(videos)} video{'s' if len(videos) != 1 else ''}", err=True)
            summary = (submit(client, one) if submit is not None
                       else run_on_cluster(client, work, videos, on_result=one, name=f"jfacemap-{stage}"))
    for line in summary.lines(refused, verb):
        typer.echo(line)


def process_videos(videos: list[Path], work: Callable, cluster: Optional[str], stage: str) -> None:
    """The per-video loop of `svd` and `roi`: `work(video, show_progress=True)` here, one line each, or one task
    per video on `cluster`; exits 1 when a video failed there. `work` returns a VideoOutput whose
    extra["kept"] says what was written."""
    label = f"{stage:<10} "
    if cluster is not None:
        failed: list[Path] = []
        run_cluster_command(cluster, [v.absolute() for v in videos], work, failed, verb="done", stage=stage,
                            describe=lambda result: [f"{label}{result.output}  ({result.extra['kept']})"])
        if failed:
            raise typer.Exit(code=1)
        return
    for video in videos:
        start = time.perf_counter()
        done = work(video, show_progress=True)
        for message in done.warnings:
            typer.echo(f"warning: {message}", err=True)
        typer.echo(f"{label}{done.output}  ({done.extra['kept']}, {time.perf_counter() - start:.1f} s)")
