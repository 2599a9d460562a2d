"""`jfacemap info`: what a video holds (decodable frames, size, frame rate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jfacemap.io.video import VideoError, video_info


def info(
    videos: Annotated[list[Path], typer.Argument(metavar="VIDEO...", help="One or more video files.")],
    fast: Annotated[bool, typer.Option("--fast", help="Count packets instead of decoding every frame (much faster; equal on every intact or cut file tested).")] = False,
) -> None:
    """Print each video's decodable frame count, size and frame rate."""
    header_shown, failed = False, 0
    for path in videos:
        try:
            meta = video_info(path, exact=not fast)
        except (VideoError, OSError) as error:  # report every bad file, keep going with the rest
            typer.echo(f"jfacemap: error: {error}", err=True)
            failed += 1
            continue
        if not header_shown:
            typer.echo(f"{'frames':>8}  {'width':>5}  {'height':>6}  {'fps':>7}  video")
            header_shown = True
        typer.echo(f"{meta.n_frames:>8}  {meta.width:>5}  {meta.height:>6}  {meta.fps:>7.2f}  {path}")
    if failed:
        raise typer.Exit(code=1)
