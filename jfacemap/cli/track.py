"""`jfacemap track`: keypoints for every frame of one or more videos.

Inputs may be files, folders (their videos) and glob patterns (expanded here,
so a quoted pattern works too). Every video is checked before any tracking;
`track_videos` then tracks them one after the other.
"""

from __future__ import annotations

import contextlib
import glob
import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from jfacemap import DEFAULT_CHUNK, DEFAULT_TRACKER
from jfacemap.cli.cluster import CLUSTER_HELP, check_cluster, run_cluster_command
from jfacemap.cli.progress import progress_bar
from jfacemap.errors import JfacemapError
from jfacemap.io.video import video_info

# Heavy modules (JAX) are imported inside the command so `jfacemap --help` stays quick.

# What a folder or a glob pattern contributes: the containers and raw streams ffmpeg reads.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".mj2", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm", ".flv",
                  ".ts", ".asf", ".h264", ".264", ".h265", ".hevc")


def expand_videos(inputs: list[Path]) -> list[Path]:
    """Files as given; a folder as its videos; a pattern with * ? [ as the videos it matches (both sorted).

    A file need not exist here (the checks name it later); a folder without
    videos or a pattern that matches none is a JfacemapError.
    """
    found: list[Path] = []
    for item in inputs:
        text = str(item)
        if item.is_dir():
            videos = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            if not videos:
                raise JfacemapError(f"{item}: a folder with no videos in it ({' '.join(VIDEO_SUFFIXES)})")
        elif not item.exists() and any(c in text for c in "*?["):
            matches = glob.glob(os.path.expanduser(text), recursive=True)
            videos = sorted(Path(p) for p in matches if Path(p).is_file() and Path(p).suffix.lower() in VIDEO_SUFFIXES)
            if not videos:
                raise JfacemapError(f"{text}: no video matches this pattern")
        else:
            videos = [item]
        found.extend(videos)
    return found


def track(
    videos: Annotated[list[Path], typer.Argument(
        metavar="VIDEO...", help="Video files, folders (every video in them) or glob patterns such as 'data/*.mp4'.")],
    model: Annotated[str, typer.Option("--model", "-m", metavar="MODEL", help="Tracker: a model name ('facemap' = the original's installed model), a model folder or an original .pt file.")] = DEFAULT_TRACKER,
    bbox: Annotated[Optional[tuple[int, int, int, int]], typer.Option(
        metavar="X0 X1 Y0 Y1", help="Crop box in frame pixels (default: the model's training box, else the whole frame).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Frames per network call.")] = 8,
    chunk_size: Annotated[int, typer.Option(help="Frames decoded at once (memory bound and resume step).")] = DEFAULT_CHUNK,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", metavar="FOLDER", help="Folder for the outputs (default: beside each video).")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="Also write a DeepLabCut-style CSV (read by movement, keypoint-moseq).")] = False,
    filter_: Annotated[bool, typer.Option("--filter", help="Replace outliers (likelihood drops, jumps) by values filtered "
                                                           "from their neighbours; prints the fraction flagged per kind.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its .partial file.")] = True,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="With several videos: report a video that cannot be "
                                                                   "tracked in one line, skip it and go on (exit status 1 at the end).")] = False,
    cluster: Annotated[Optional[str], typer.Option("--cluster", metavar="WHERE", help=CLUSTER_HELP)] = None,
    segment_frames: Annotated[int, typer.Option("--segment-frames", metavar="N", help=(
        "With --cluster: a video longer than N frames is tracked in pieces of N frames on several workers "
        "at once, then joined (same file). 0 = one task per video."))] = 0,
    flip_average: Annotated[Optional[bool], typer.Option("--flip-average/--no-flip-average", help=(
        "Average every frame's network outputs with those of its mirror image (more accurate on faces the "
        "model has not seen, twice the compute), or no frame's. Default: the model's setting (the shipped "
        "base: the frames it is unsure of)."))] = None,
) -> None:
    """Track keypoints in each VIDEO; writes <video>_FacemapPose.h5 (and .csv with --csv)."""
    from jfacemap.track.filter import filter_hook
    from jfacemap.track.model_store import load_tracker
    from jfacemap.track.predict import output_paths, partial_path, refuse_to_overwrite_ground_truth, track_videos
    from jfacemap.track.preprocess import crop_geometry

    if batch_size < 1 or chunk_size < 1:
        raise JfacemapError(f"--batch-size and --chunk-size must be >= 1, got {batch_size}, {chunk_size}")
    if out is not None and out.exists() and not out.is_dir():
        raise JfacemapError(f"{out}: --out must be a folder")
    check_cluster(cluster)  # a bad spec or a missing extra fails before any video is read
    if segment_frames and (cluster is None or segment_frames < chunk_size):
        raise JfacemapError(f"--segment-frames {segment_frames}: needs --cluster, and N >= --chunk-size ({chunk_size})"
                            if segment_frames > 0 else f"--segment-frames must be >= 0, got {segment_frames}")
    videos = list({video.resolve(): video for video in expand_videos(videos)}.values())  # named twice: tracked once
    targets = dict(zip(videos, output_paths(videos, out)))  # two videos of one name into one folder: refuse
    infos: dict = {}
    failed: list[Path] = []

    def skip(video: Path, error: Exception) -> None:  # --keep-going: one line, then the next video
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        typer.echo(f"jfacemap: error: {text} (skipped)", err=True)
        failed.append(video)

    def readable(video: Path) -> None:
        infos[video] = video_info(video, exact=False)
        try:
            refuse_to_overwrite_ground_truth(targets[video])
        except JfacemapError as err:
            raise JfacemapError(f"{err} (--out FOLDER)") from err

    # Check every video first (cheap): a bad last one should not fail after hours of tracking.
    videos = _passing(videos, readable, keep_going, skip)
    if videos:
        net, bodyparts, meta = load_tracker(model)
        box = bbox if bbox is not None else meta.get("bbox")

        def croppable(video: Path) -> None:
            try:
                crop_geometry((infos[video].height, infos[video].width), box)
            except JfacemapError as err:
                raise JfacemapError(f"{video}: {err}") from err

        videos = _passing(videos, croppable, keep_going, skip)
        if cluster is not None:
            _on_cluster(cluster, videos, model, out, csv, filter_, failed,
                        {"bbox": box, "batch_size": batch_size, "chunk_size": chunk_size, "resume": resume,
                         "flip_average": flip_average},
                        segment_frames)
            videos = []  # tracked there

        @contextlib.contextmanager
        def one_video(video: Path, target: Path):
            fractions: dict = {}
            resumed = resume and partial_path(target).is_file()
            started = time.perf_counter()
            with progress_bar(infos[video].n_frames, f"{'resuming' if resumed else 'tracking'} {video.name}") as advance:
                yield {"on_progress": advance, "on_resume": advance.skip,
                       "postprocess": filter_hook(fractions) if filter_ else None}
            _report(advance.done - advance.skipped, advance.skipped, time.perf_counter() - started, target, csv,
                    fractions if filter_ else None)

        track_videos(videos, net, bodyparts, out, csv, keep_going=keep_going,
                     on_error=skip, per_video=one_video, bbox=box, batch_size=batch_size, chunk_size=chunk_size,
                     resume=resume, flip_average=flip_average,
                     on_warning=lambda message: typer.echo(f"warning: {message}", err=True))
    if cluster is None and (len(targets) > 1 or failed):
        typer.echo(f"{len(targets) - len(failed)} of {len(targets)} videos tracked, {len(failed)} failed")
    if failed:
        raise typer.Exit(code=1)


def _on_cluster(spec: str, videos: list[Path], model: str, out: Optional[Path], csv: bool, filter_: bool,
                failed: list[Path], options: dict, segment_frames: int) -> None:
    """Track `videos` on the Dask cluster `spec` (one line per video as it finishes), then print the summary."""
    from jfacemap.track.cluster import track_on_cluster

    def describe(result) -> list[str]:
        lines = []
        if result.extra.get("segments"):
            lines.append(f"           in {result.extra['segments']} segments on {len(result.extra['workers'])} workers")
        found = result.extra.get("fractions")
        if found is not None:
            lines.append(f"filtered   {', '.join(f'{k} {100 * v:.3f}%' for k, v in found.items())}")
        return lines

    def submit(client, on_result):
        return track_on_cluster(client, videos, model, out, csv, filter_=filter_, segment_frames=segment_frames,
                                on_result=on_result, **options)

    run_cluster_command(spec, videos, None, failed, verb="tracked", stage="track", describe=describe,
                        refused=len(failed), submit=submit)


def _passing(videos: list[Path], test, keep_going: bool, skip) -> list[Path]:
    """The videos `test` accepts; one it refuses is `skip`ped with --keep-going, else its error stops the command."""
    kept = []
    for video in videos:
        try:
            test(video)
        except (JfacemapError, OSError) as err:
            if not keep_going:
                raise
            skip(video, err)
            continue
        kept.append(video)
    return kept


def _report(now: int, earlier: int, seconds: float, target: Path, csv: bool, fractions: dict | None) -> None:
    """What one video's tracking did, on stdout."""
    before = f" ({earlier} more came from the interrupted run)" if earlier else ""
    typer.echo(f"tracked {now} frames in {seconds:.1f} s ({now / max(seconds, 1e-9):.1f} frames/s){before}")
    typer.echo(f"keypoints  {target}")
    if csv:
        typer.echo(f"csv        {target.with_suffix('.csv')}")
    if fractions is not None:
        flagged = ", ".join(f"{k} {100 * v:.3f}%" for k, v in fractions.items())
        typer.echo(f"filtered   {flagged}")
