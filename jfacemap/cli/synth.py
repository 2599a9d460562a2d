"""`jfacemap synth`: write a synthetic mouse-face session (video + ground truth + latents)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jfacemap import DEFAULT_FPS
from jfacemap.cli.progress import progress_bar
from jfacemap.errors import JfacemapError
from jfacemap.synth.export import save_synthetic_session
from jfacemap.synth.face import STYLES
from jfacemap.synth.session import check_session_args


def synth(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Output video (.mp4, .avi, .mkv or .mov).")],
    frames: Annotated[int, typer.Option("--frames", "-n", help="Number of frames (at --fps).")] = 500,
    seed: Annotated[int, typer.Option(help="Seed: picks the mouse, the camera view and the behaviour.")] = 0,
    style: Annotated[str, typer.Option(metavar="STYLE", help=f"Imaging style: {', '.join(STYLES)} ('lab2' is the 'other lab' look, 'wild' draws every look from wide ranges).")] = "lab1",
    size: Annotated[int, typer.Option(help="Frame size in pixels (square).")] = 256,
    fps: Annotated[float, typer.Option(help="Frame rate of the behaviour and the video (Hz).")] = DEFAULT_FPS,
    roi: Annotated[bool, typer.Option("--roi", help="Add the ROI ground truth: known pupil and blinks, a lit iris, a moving treadmill (roi_* in the latents).")] = False,
) -> None:
    """Write a synthetic session: OUT video, OUT_FacemapPose.h5 ground truth, OUT_latents.npz behaviour."""
    check_session_args(frames, seed, style, size, fps)  # before the progress bar starts
    if out.suffix.lower() not in {".mp4", ".avi", ".mkv", ".mov"}:
        raise JfacemapError(f"{out}: output must end in .mp4, .avi, .mkv or .mov")
    with progress_bar(frames, f"rendering {out.name}") as advance:
        files = save_synthetic_session(
            out, n_frames=frames, seed=seed, style=style, size=size, fps=fps, on_progress=advance, roi=roi
        )
    typer.echo(f"video      {files.video}")
    typer.echo(f"keypoints  {files.keypoints}")
    typer.echo(f"latents    {files.latents}")
