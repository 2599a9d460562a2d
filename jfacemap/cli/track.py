"""`jfacemap track`: keypoints for every frame of one or more videos."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from jfacemap import DEFAULT_TRACKER
from jfacemap.cli.progress import progress_bar
from jfacemap.errors import JfacemapError
from jfacemap.io.video import video_info

# Heavy modules (JAX) are imported inside the command so `jfacemap --help` stays quick.
DEFAULT_CHUNK = 64  # = jfacemap.track.predict.DEFAULT_CHUNK


def _filter(fractions: dict):
    """postprocess hook: SPEC section 2 outlier filtering; records what it flagged."""
    from jfacemap.track.filter import filter_keypoints

    def run(keypoints: np.ndarray, fps: float) -> np.ndarray:
        if not (fps > 0 and math.isfinite(fps)):
            raise JfacemapError("the video has no frame rate, which --filter needs")
        filtered, report = filter_keypoints(keypoints, fps)
        fractions.update(report.fractions)
        return filtered

    return run


def track(
    videos: Annotated[list[Path], typer.Argument(help="Video files to track.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Tracker: a model name ('facemap' = the original's installed model), a model folder or an original .pt file.")] = DEFAULT_TRACKER,
    bbox: Annotated[Optional[tuple[int, int, int, int]], typer.Option(
        help="Crop box X0 X1 Y0 Y1 in frame pixels (default: the model's training box, else the whole frame).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Frames per network call.")] = 8,
    chunk_size: Annotated[int, typer.Option(help="Frames decoded at once (memory bound and resume step).")] = DEFAULT_CHUNK,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for the outputs (default: beside each video).")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="Also write a DeepLabCut-style CSV (read by movement, keypoint-moseq).")] = False,
    filter_: Annotated[bool, typer.Option("--filter", help="Replace outliers (likelihood drops, jumps) by filtered values (SPEC 2).")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its .partial file.")] = True,
) -> None:
    """Track keypoints in each VIDEO; writes <video>_FacemapPose.h5 (and .csv with --csv)."""
    from jfacemap.track.model_store import load_tracker
    from jfacemap.track.predict import output_paths, partial_path, refuse_to_overwrite_ground_truth, track_video
    from jfacemap.track.preprocess import crop_geometry

    if batch_size < 1 or chunk_size < 1:
        raise JfacemapError(f"--batch-size and --chunk-size must be >= 1, got {batch_size}, {chunk_size}")
    if out is not None and out.exists() and not out.is_dir():
        raise JfacemapError(f"{out}: --out must be a folder")
    videos = list({video.resolve(): video for video in videos}.values())  # a file named twice is tracked once
    # Check every video first (cheap): a bad last one should not fail after hours of tracking.
    infos = [video_info(video, exact=False) for video in videos]
    targets = output_paths(videos, out)  # two videos of one name into one folder: refuse
    for target in targets:  # fail before any work, not after the first video
        try:
            refuse_to_overwrite_ground_truth(target)
        except JfacemapError as err:
            raise JfacemapError(f"{err} (--out DIR)") from err
    net, bodyparts, meta = load_tracker(model)
    box = bbox if bbox is not None else meta.get("bbox")
    for video, info in zip(videos, infos):
        try:
            crop_geometry((info.height, info.width), box)
        except JfacemapError as err:
            raise JfacemapError(f"{video}: {err}") from err
    predictors: dict = {}
    for video, info, target in zip(videos, infos, targets):
        resumed = resume and partial_path(target).is_file()
        fractions: dict = {}
        label = f"{'resuming' if resumed else 'tracking'} {video.name}"
        started, earlier = time.perf_counter(), []
        with progress_bar(info.n_frames, label) as advance:
            keypoints = track_video(
                video, net, bodyparts, bbox=box, batch_size=batch_size, chunk_size=chunk_size,
                out_path=target, on_progress=advance, resume=resume,
                on_resume=lambda n: (earlier.append(n), advance(n)),
                csv_path=target.with_suffix(".csv") if csv else None,
                postprocess=_filter(fractions) if filter_ else None, predictors=predictors,
                on_warning=lambda message: typer.echo(f"warning: {message}", err=True))
        seconds, now = time.perf_counter() - started, len(keypoints) - sum(earlier)
        before = f" ({sum(earlier)} more came from the interrupted run)" if earlier else ""
        typer.echo(f"tracked {now} frames in {seconds:.1f} s ({now / max(seconds, 1e-9):.1f} frames/s){before}")
        typer.echo(f"keypoints  {target}")
        if csv:
            typer.echo(f"csv        {target.with_suffix('.csv')}")
        if filter_:
            flagged = ", ".join(f"{k} {100 * v:.3f}%" for k, v in fractions.items())
            typer.echo(f"filtered   {flagged}")
