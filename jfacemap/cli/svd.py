"""`jfacemap svd`: movie and motion PCs of videos (SVD of frames and of |frame differences|), one <video>_svd.npz each."""

from __future__ import annotations

import contextlib
import functools
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from jfacemap.cli.cluster import CLUSTER_HELP, check_cluster, process_videos
from jfacemap.cli.progress import phase_bars
from jfacemap.errors import JfacemapError
from jfacemap.io.video import video_info

# Heavy modules (JAX) are imported inside the command so `jfacemap --help` stays quick.


def parse_roi(text: str) -> tuple[int, int, int, int]:
    """'X0,X1,Y0,Y1' (commas and/or spaces; the svd command's order) -> four ints; one-line error otherwise."""
    from jfacemap.roi.box import parse_box

    return parse_box(text, "--roi", fields="X0,X1,Y0,Y1")


def svd_path(video: Path, out: Path | None) -> Path:
    """Where the PCs of `video` go: <out or the video's folder>/<video stem>_svd.npz."""
    return (out if out is not None else video.parent) / f"{video.stem}_svd.npz"


def svd(
    videos: Annotated[list[Path], typer.Argument(metavar="VIDEO...", help="Video files.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", metavar="FOLDER", help="Folder for the outputs (default: beside each video).")] = None,
    components: Annotated[int, typer.Option("--components", "-n", help="PCs to keep per region and kind.")] = 500,
    bin_: Annotated[int, typer.Option("--bin", help="Spatial binning: mean over BIN x BIN pixel blocks.")] = 1,
    roi: Annotated[Optional[list[str]], typer.Option(
        "--roi", metavar="X0,X1,Y0,Y1", help="A region (frame pixels, ends exclusive) with its own PCs; repeatable.")] = None,
    no_motion: Annotated[bool, typer.Option("--no-motion", help="Skip motion PCs (|frame difference|).")] = False,
    no_movie: Annotated[bool, typer.Option("--no-movie", help="Skip movie PCs (frames).")] = False,
    cluster: Annotated[Optional[str], typer.Option("--cluster", metavar="WHERE", help=CLUSTER_HELP)] = None,
) -> None:
    """Movie and motion PCs of each VIDEO (full frame and each --roi); writes <video>_svd.npz."""
    from jfacemap.encode.movie_pcs import check_rois

    if components < 1 or bin_ < 1:
        raise JfacemapError(f"--components and --bin must be >= 1, got {components}, {bin_}")
    if no_motion and no_movie:
        raise JfacemapError("--no-motion and --no-movie together leave nothing to compute")
    if out is not None and out.exists() and not out.is_dir():
        raise JfacemapError(f"{out}: --out must be a folder")
    check_cluster(cluster)
    rois = [parse_roi(text) for text in roi or []]
    videos = list({video.resolve(): video for video in videos}.values())  # a file named twice runs once
    targets = [svd_path(video, out) for video in videos]
    clash = {t for t in targets if targets.count(t) > 1}
    if clash:
        raise JfacemapError(f"{sorted(clash)[0]}: two videos would write this file; use separate --out folders")
    # Check every video first (cheap): a bad last one should not fail after hours of work.
    infos = [video_info(video, exact=False) for video in videos]
    for video, info in zip(videos, infos):
        try:
            check_rois(rois, info.height, info.width, bin_)
        except JfacemapError as err:
            raise JfacemapError(f"{video}: {err}") from err
    work = functools.partial(svd_one_video, components=components, bin_=bin_, rois=tuple(rois), movie=not no_movie,
                             motion=not no_motion, out=None if out is None else out.absolute())
    process_videos(videos, work, cluster, "svd")


def svd_one_video(video: Path, *, components: int, bin_: int, rois: tuple, movie: bool, motion: bool,
                  out: Path | None, show_progress: bool = False):
    """The PCs of one video into <out or its folder>/<stem>_svd.npz (the per-video work of `svd`, serial or on a
    cluster worker) -> jfacemap.cluster.VideoOutput; extra["kept"]: what was kept, for the command's line."""
    from jfacemap.cluster import VideoOutput
    from jfacemap.encode.movie_pcs import movie_svd, sample_plan
    from jfacemap.encode.movie_pcs_store import save_movie_svd

    target = svd_path(video, out)
    with warnings.catch_warnings(record=True) as caught, contextlib.ExitStack() as bars:
        warnings.simplefilter("always", UserWarning)
        advance = None
        if show_progress:
            n_frames = video_info(video, exact=False).n_frames
            starts, size = sample_plan(max(n_frames, 2))
            advance = phase_bars(bars, {"sample": (len(starts) * size, f"sampling {video.name}"),
                                        "project": (n_frames, f"projecting {video.name}")})
            advance("sample", 0)  # the bar shows before the first sampled frame
        result = movie_svd(video, components, bin_, rois, movie=movie, motion=motion, on_progress=advance)
    save_movie_svd(target, result)
    kept = ", ".join(f"{kind} {getattr(result.full, kind + '_masks').shape[0]}" for kind in ("movie", "motion")
                     if getattr(result.full, kind + "_masks") is not None)
    extra = f" + {len(rois)} ROI{'s' if len(rois) > 1 else ''}" if rois else ""
    return VideoOutput(target, result.n_frames, 0, tuple(str(w.message) for w in caught),
                       {"kept": f"{result.n_frames} frames, {kept} PCs{extra}"})
