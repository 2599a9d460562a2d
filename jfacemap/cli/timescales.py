"""`jfacemap timescales`: how far into the future each keypoint can be predicted from the recent past.

The keypoints' x, y traces (the 11 analysis bodyparts when the file has them
all, gaps filled; outliers filtered first unless --no-filter) go through
`jfacemap.track.timescales.keypoint_timescales`: a ridge regression per
future lag on exponentially filtered pasts, test variance explained per lag,
and the lag where it halves. Writes timescales.npz and summary.json.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from jfacemap import DEFAULT_FPS
from jfacemap.errors import JfacemapError
from jfacemap.io.atomic import write_npz_atomic, write_text_atomic
from jfacemap.io.jsonable import jsonable
from jfacemap.series import N_SEGMENTS

# Heavy modules (JAX via the track stage) are imported inside the command so `jfacemap --help` stays quick.


def _seconds(value: float) -> str:
    return f"{value:8.2f} s" if math.isfinite(value) else f"{'-':>10s}"


def print_table(names: list[str], timescale_s: np.ndarray) -> None:
    """One row per keypoint: the half-decay timescale of its x and of its y ("-": never halves)."""
    values = dict(zip(names, timescale_s.tolist()))
    bodyparts = list(dict.fromkeys(name.rsplit("_", 1)[0] for name in names))
    width = max(len("keypoint"), *(len(b) for b in bodyparts))
    typer.echo(f"{'keypoint':{width}s}  {'x':>10s}  {'y':>10s}   (half-decay timescale)")
    for b in bodyparts:
        typer.echo(f"{b:{width}s}  {_seconds(values.get(f'{b}_x', math.nan))}  "
                   f"{_seconds(values.get(f'{b}_y', math.nan))}")


def timescales(
    pose: Annotated[Path, typer.Argument(metavar="POSE_FILE", help="Keypoints: a _FacemapPose.h5, or a DeepLabCut .csv or .h5.")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="FOLDER", help="Output folder.")] = Path("timescales"),
    fps: Annotated[float, typer.Option("--fps", help="Frame rate of the keypoints (Hz).")] = DEFAULT_FPS,
    no_filter: Annotated[bool, typer.Option(
        "--no-filter", help="Use the keypoints as they are (gaps still filled); default: replace outliers "
                            "(likelihood drops, jumps) first, as `jfacemap track --filter` does.")] = False,
) -> None:
    """Autoregressive timescales of each keypoint in POSE_FILE: writes timescales.npz and summary.json."""
    from jfacemap.io.behavior import keypoint_coordinates
    from jfacemap.io.keypoints import read_keypoints
    from jfacemap.track.filter import filter_keypoints
    from jfacemap.track.timescales import keypoint_timescales

    if not (math.isfinite(fps) and fps > 0):
        raise JfacemapError(f"--fps must be > 0, got {fps}")
    if out.exists() and not out.is_dir():
        raise JfacemapError(f"{out}: --out must be a folder")
    if not pose.is_file():
        raise JfacemapError(f"{pose}: no such file")
    keypoints, bodyparts = read_keypoints(pose)
    outliers = None
    if not no_filter:
        keypoints, report = filter_keypoints(keypoints, fps)
        outliers = float(report.mask.mean()) if report.mask.size else 0.0
    traces, names = keypoint_coordinates(keypoints, bodyparts, pose, dtype=np.float64)
    result = keypoint_timescales(traces, fps)
    if np.isnan(result.variance_explained).all():
        raise JfacemapError(f"{pose}: {len(traces)} frames ({len(traces) / fps:.1f} s at {fps:g} Hz) are too few "
                            f"to fit the autoregressive model on {N_SEGMENTS} train segments")

    out.mkdir(parents=True, exist_ok=True)
    write_npz_atomic(out / "timescales.npz", lags_s=result.lags_s, variance_explained=result.variance_explained,
                     timescale_s=result.timescale_s, names=np.array(names))
    summary = {"inputs": {"pose": str(pose), "n_frames": int(len(traces)), "fps": float(fps),
                          "filtered": not no_filter, "outlier_fraction": outliers},
               "coordinates": names, "timescale_s": dict(zip(names, result.timescale_s.tolist())),
               "median_timescale_s": float(np.nanmedian(result.timescale_s))
               if np.isfinite(result.timescale_s).any() else None,
               "first_lag_ve": dict(zip(names, result.variance_explained[0].tolist()))}
    write_text_atomic(out / "summary.json", json.dumps(jsonable(summary), indent=2) + "\n")
    print_table(names, result.timescale_s)
    typer.echo(f"outputs   {out}/ (timescales.npz, summary.json)")
