"""`jfacemap roi`: pupil, blink, running and ROI SVD of videos, one <video>_roi.npz each."""

from __future__ import annotations

import contextlib
import functools
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from jfacemap.cli.cluster import CLUSTER_HELP, check_cluster, process_videos
from jfacemap.cli.progress import phase_bars, progress_bar
from jfacemap.errors import JfacemapError

# Heavy modules (JAX) are imported inside the command so `jfacemap --help` stays quick.

_BOX = "X0,Y0,X1,Y1"


def roi(
    videos: Annotated[list[Path], typer.Argument(metavar="VIDEO...", help="Video files.")],
    pupil: Annotated[Optional[str], typer.Option(metavar=_BOX, help="Pupil ROI (frame pixels, ends exclusive).")] = None,
    blink: Annotated[Optional[str], typer.Option(metavar=_BOX, help="Eye ROI for the blink trace and events.")] = None,
    running: Annotated[Optional[str], typer.Option(metavar=_BOX, help="Treadmill / ball ROI for running (dx, dy).")] = None,
    svd_roi: Annotated[Optional[list[str]], typer.Option(
        "--svd-roi", metavar=_BOX, help="A region with its own movie and motion PCs; repeatable.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", metavar="FOLDER", help="Folder for the outputs (default: beside each video).")] = None,
    bright_pupil: Annotated[bool, typer.Option("--bright-pupil", help="The pupil is brighter than the iris (back-illumination).")] = False,
    pupil_offset: Annotated[float, typer.Option(help="Grey levels added to the pupil threshold (the original's saturation: > 0 takes in more pixels).")] = 0.0,
    blink_threshold: Annotated[float, typer.Option(help="A blink: the normalised blink trace (open eye ~1) below this.")] = 0.15,
    components: Annotated[int, typer.Option("--components", "-n", help="PCs to keep per --svd-roi and kind.")] = 500,
    bin_: Annotated[int, typer.Option("--bin", help="Spatial binning of the --svd-roi PCs.")] = 1,
    restart: Annotated[bool, typer.Option("--restart", help="Ignore a partial result of an earlier run.")] = False,
    cluster: Annotated[Optional[str], typer.Option("--cluster", metavar="WHERE", help=CLUSTER_HELP)] = None,
) -> None:
    """Pupil, blink, running and ROI SVD of each VIDEO; writes <video>_roi.npz.

    Resumable: rerun the same command after an interruption (traces kept in <video>_roi.npz.partial).
    """
    from jfacemap.io.video import video_info
    from jfacemap.roi.box import check_box, parse_box
    from jfacemap.roi.pipeline import RoiRequest, check_request, roi_path
    from jfacemap.roi.pupil import PupilSettings

    boxes = {k: parse_box(v, f"--{k}") for k, v in (("pupil", pupil), ("blink", blink), ("running", running)) if v}
    svd_boxes = [parse_box(text, "--svd-roi") for text in svd_roi or []]
    if not boxes and not svd_boxes:
        raise JfacemapError("nothing to measure: give --pupil, --blink, --running or --svd-roi")
    if components < 1 or bin_ < 1:
        raise JfacemapError(f"--components and --bin must be >= 1, got {components}, {bin_}")
    if out is not None and out.exists() and not out.is_dir():
        raise JfacemapError(f"{out}: --out must be a folder")
    check_cluster(cluster)
    request = RoiRequest(**boxes, pupil_settings=PupilSettings(bright=bright_pupil, offset=pupil_offset),
                         blink_threshold=blink_threshold)
    videos = list({video.resolve(): video for video in videos}.values())
    targets = [roi_path(video, out) for video in videos]
    if len(set(targets)) < len(targets):
        raise JfacemapError("two videos would write the same <video>_roi.npz; use separate --out folders")
    # Check every video and ROI first (cheap): a bad last one should not fail after hours of work.
    infos = [video_info(video, exact=False) for video in videos]
    for video, info in zip(videos, infos):
        check_request(video, request, info.height, info.width)
        for box in svd_boxes:
            try:
                check_box(box, info.height, info.width, "--svd-roi", min_side=max(4, bin_))
            except JfacemapError as err:
                raise JfacemapError(f"{video}: {err}") from err
    if restart:
        for target in targets:
            target.with_name(target.name + ".partial").unlink(missing_ok=True)
    work = functools.partial(roi_one_video, request=request, boxes=tuple(boxes), svd_boxes=tuple(svd_boxes),
                             components=components, bin_=bin_, out=None if out is None else out.absolute())
    process_videos(videos, work, cluster, "roi")


def roi_one_video(video: Path, *, request, boxes: tuple[str, ...], svd_boxes: tuple, components: int, bin_: int,
                  out: Path | None, show_progress: bool = False):
    """Every ROI of one video into <out or its folder>/<stem>_roi.npz, resuming from its .partial (the per-video
    work of `roi`, serial or on a cluster worker) -> jfacemap.cluster.VideoOutput; extra["kept"]: for the line."""
    from jfacemap.cluster import VideoOutput
    from jfacemap.io.atomic import write_npz_atomic
    from jfacemap.io.video import video_info
    from jfacemap.roi.pipeline import roi_path, roi_video

    target = roi_path(video, out)
    partial = target.with_name(target.name + ".partial")
    n_frames = video_info(video, exact=False).n_frames
    arrays, caught, resumed = {}, [], [0]

    def skipped(n: int) -> None:
        resumed[0] += n

    if boxes:
        with contextlib.ExitStack() as bars:
            advance = bars.enter_context(progress_bar(n_frames, f"roi {video.name}")) if show_progress else None
            on_resume = skipped if advance is None else (lambda n: (skipped(n), advance.skip(n)))
            arrays = roi_video(video, request, partial=partial, on_progress=advance, on_resume=on_resume)
    if svd_boxes:
        svd_arrays, caught = _svd(video, n_frames, list(svd_boxes), components, bin_, show_progress)
        arrays.update(svd_arrays)
    write_npz_atomic(target, video=str(video), **arrays)
    partial.unlink(missing_ok=True)
    done = int(arrays["n_frames"]) if "n_frames" in arrays else n_frames
    return VideoOutput(target, done - resumed[0], resumed[0], tuple(caught),
                       {"kept": f"{n_frames} frames, {', '.join([*boxes, *(['svd'] if svd_boxes else [])])}"})


def _svd(video: Path, n_frames: int, boxes: list, components: int, bin_: int,
         show_progress: bool) -> tuple[dict, list[str]]:
    """Movie and motion PCs of each box (the streamed SVD of `jfacemap svd`): svd_roi (R, 4) and,
    per ROI i, svd<i>_{movie,motion}_{pcs,masks,sv} and svd<i>_{avgframe,avgmotion}; and the warnings raised."""
    from jfacemap.encode.movie_pcs import movie_svd, sample_plan

    starts, size = sample_plan(max(n_frames, 2))
    totals = {"sample": (len(starts) * size, f"sampling {video.name}"), "project": (n_frames, f"projecting {video.name}")}
    with warnings.catch_warnings(record=True) as caught, contextlib.ExitStack() as bars:
        warnings.simplefilter("always", UserWarning)
        advance = phase_bars(bars, totals) if show_progress else None
        result = movie_svd(video, components, bin_, [(x0, x1, y0, y1) for x0, y0, x1, y1 in boxes], on_progress=advance)
    arrays = {"svd_roi": [list(b) for b in boxes]}
    for i, region in enumerate(result.rois):
        for key in ("avgframe", "avgmotion", "movie_pcs", "movie_masks", "movie_sv", "motion_pcs", "motion_masks", "motion_sv"):
            if getattr(region, key) is not None:
                arrays[f"svd{i}_{key}"] = getattr(region, key)
    return arrays, [str(w.message) for w in caught]
