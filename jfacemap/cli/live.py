"""`jfacemap live`: track a camera or a video played at its own frame rate, one frame as it arrives."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from jfacemap import DEFAULT_TRACKER
from jfacemap.errors import JfacemapError

# Heavy modules (JAX) are imported inside the command so `jfacemap --help` stays quick.


def default_out(source: str) -> Path:
    """`<video stem>_FacemapLive.h5` beside a video; `<device name>_FacemapLive.h5` here for a camera."""
    p = Path(source)
    return Path(f"{p.name}_FacemapLive.h5") if source.startswith("/dev/") else p.with_name(f"{p.stem}_FacemapLive.h5")


def live(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="A video file (played at its own frame rate) or a V4L2 camera such as /dev/video0.")],
    model: Annotated[str, typer.Option("--model", "-m", metavar="MODEL", help="Tracker: a model name, a model folder or an original .pt file.")] = DEFAULT_TRACKER,
    bbox: Annotated[Optional[tuple[int, int, int, int]], typer.Option(
        metavar="X0 X1 Y0 Y1", help="Crop box in frame pixels (default: the model's training box, else the whole frame).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", metavar="FILE", help="The h5 log of keypoints (default: SOURCE's name + _FacemapLive.h5).")] = None,
    max_frames: Annotated[Optional[int], typer.Option(help="Stop after this many frames from the source.")] = None,
    speed: Annotated[float, typer.Option(help="Play a video this many times faster than its frame rate.")] = 1.0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")] = False,
    filter_: Annotated[bool, typer.Option("--filter", help=(
        "Reject outliers as they come, from past frames only (the offline filter's rules: likelihood drops, "
        "jumps over 25 px, over 25 px from the recent median). The log then holds the filtered keypoints "
        "(a flagged point keeps its last accepted x, y and its tracked likelihood) and the summary line adds "
        "the fraction of points flagged. Off: the log holds the tracker's keypoints as they are."))] = False,
    flip_average: Annotated[bool, typer.Option("--flip-average", help=(
        "Average every frame's network outputs with its mirror image's (`track` does it for the frames the "
        "shipped base is unsure of): more accurate on faces the model has not seen, twice the latency."))] = False,
) -> None:
    """Track SOURCE live: each frame as it arrives, dropping frames rather than falling behind; keypoints go to an h5 log readable while it grows."""
    from jfacemap.live.session import run_live
    from jfacemap.live.sources import open_source
    from jfacemap.live.tracker import LiveTracker
    from jfacemap.track.model_store import load_tracker

    target = out if out is not None else default_out(source)
    if target.exists() and not overwrite:
        raise JfacemapError(f"{target}: exists; pass --overwrite to replace it or --out for another file")
    feed = open_source(source, max_frames=max_frames, speed=speed)  # one-line errors before the model loads
    try:
        net, bodyparts, meta = load_tracker(model)
        tracker = LiveTracker(net, feed.frame_shape, bbox if bbox is not None else meta.get("bbox"),
                              flip_average=flip_average)
        typer.echo(f"tracking {source} ({feed.frame_shape[1]}x{feed.frame_shape[0]}, {feed.fps:g} frames/s); "
                   "Ctrl-C stops", err=True)
        summary = run_live(feed, tracker, bodyparts, target, outlier_filter=filter_)
    finally:
        feed.close()
    typer.echo(summary.line())
    typer.echo(f"keypoints  {target}")
