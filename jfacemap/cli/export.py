"""`jfacemap export FORMAT INPUT... [--out DIR]`: jfacemap's results in the files other tools read.

    nwb       keypoints -> DIR/<stem>.nwb      (ndx-pose; extra `nwb`)
    dlc-h5    keypoints -> DIR/<stem>.h5       (DeepLabCut predictions, pandas table; extra `dlc`)
    dlc-csv   keypoints -> DIR/<stem>.csv      (DeepLabCut's 3 header rows)
    proc      _svd.npz  -> DIR/<video>_proc.npy (the original Facemap's GUI file), with the
              pupil, blink and running traces of <video>_roi.npz beside it when there is one

Keypoint inputs are any file jfacemap reads (`_FacemapPose.h5`, DeepLabCut
.h5/.csv); <stem> is the input's name without `_FacemapPose`. The work is in
`jfacemap.io.pose_export` and `jfacemap.encode.proc_export`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from jfacemap.errors import JfacemapError

FORMATS = ("nwb", "dlc-h5", "dlc-csv", "proc")


def _session_start(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError as err:
        raise JfacemapError(f"--session-start {text!r}: not an ISO 8601 time (e.g. 2024-05-01T09:30:00+00:00)") from err


def export(
    format_: Annotated[str, typer.Argument(metavar="FORMAT", help="nwb, dlc-h5, dlc-csv or proc.")],
    inputs: Annotated[list[Path], typer.Argument(
        metavar="INPUT...", help="Keypoint files (_FacemapPose.h5, DeepLabCut .h5/.csv); _svd.npz files for proc.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", metavar="FOLDER", help="Folder for the outputs (default: beside each input).")] = None,
    scorer: Annotated[str, typer.Option("--scorer", help="Scorer (model) name: DeepLabCut's scorer column, NWB's scorer.")] = "jfacemap",
    fps: Annotated[Optional[float], typer.Option("--fps", help="nwb: frame rate of the keypoints (default: the video's).")] = None,
    times: Annotated[Optional[Path], typer.Option("--times", metavar="FILE", help="nwb: frame times (s), .npy; one INPUT.")] = None,
    video: Annotated[Optional[Path], typer.Option("--video", metavar="FILE", help="nwb: the source video (default: <stem>.mp4/.avi/.mkv/.mov beside the INPUT); one INPUT.")] = None,
    append_to: Annotated[Optional[Path], typer.Option("--append-to", metavar="FILE", help="nwb: add to this existing NWB file of the same session; one INPUT.")] = None,
    session_start: Annotated[Optional[str], typer.Option("--session-start", metavar="TIME", help="nwb: session start of a new file, ISO 8601 (default: now, UTC).")] = None,
) -> None:
    """Write each INPUT as FORMAT: nwb, dlc-h5, dlc-csv (keypoints) or proc (_svd.npz -> Facemap _proc.npy)."""
    if format_ not in FORMATS:
        raise JfacemapError(f"FORMAT must be one of {', '.join(FORMATS)}, got {format_!r}")
    if out is not None and out.exists() and not out.is_dir():
        raise JfacemapError(f"{out}: --out must be a folder")
    per_input = {"--times": times, "--video": video, "--append-to": append_to}
    given = [flag for flag, value in per_input.items() if value is not None]
    if given and len(inputs) > 1:
        raise JfacemapError(f"{', '.join(given)} name{'s' if len(given) == 1 else ''} one file: give one INPUT")
    nwb_only = given + [flag for flag, value in (("--fps", fps), ("--session-start", session_start)) if value is not None]
    if nwb_only and format_ != "nwb":
        raise JfacemapError(f"{', '.join(nwb_only)}: only for the nwb format")
    for path in inputs:  # every input checked before anything is written
        if not path.is_file():
            raise JfacemapError(f"{path}: no such file")
    if format_ == "proc":
        from jfacemap.encode.proc_export import export_proc, proc_name

        targets = [(out or path.parent) / proc_name(path) for path in inputs]
        write = export_proc
    else:
        from jfacemap.io.pose_export import export_pose, export_target

        targets = [append_to or export_target(format_, path, out) for path in inputs]
        start = _session_start(session_start)

        def write(path: Path, folder: Path | None) -> Path:
            return export_pose(format_, path, folder, scorer=scorer, fps=fps, times=times, video=video,
                               append_to=append_to, session_start=start)
    clash = {t for t in targets if targets.count(t) > 1}
    if clash:
        raise JfacemapError(f"{sorted(clash)[0]}: two inputs would write this file; use separate --out folders")
    for path in inputs:
        typer.echo(f"{format_:<9s}  {write(path, out)}")
