"""Behaviour time series for the encode and HMM stages, from the files people have.

- keypoints: `_FacemapPose.h5`, a DeepLabCut CSV or .h5, or an ndx-pose .nwb -> x and y of each
  bodypart (the paper's 11 analysis bodyparts, 22 coordinates, when the file
  has them all; else every bodypart). Short NaN gaps (occlusions, filtered
  outliers) are filled by linear interpolation in time; a bodypart that is
  never visible is left out, with a warning.
- movie PCs: a `_svd.npz` written by `jfacemap svd`, or the original Facemap's
  `_proc.npy` (its full-frame `motSVD` / `movSVD`, read without running its pickle).
- ROI measures: a `_roi.npz` written by `jfacemap roi` -> the traces it holds
  (pupil area, x, y; blink; running dx, dy), then the motion PCs of each SVD
  ROI; NaN pupil frames (blinks) filled by interpolation, as keypoint gaps.
- any (time x features) array: `.npy`, or `.npz` with one 2-D array.

Timestamps come from the caller (`times` or `fps`), never from a guessed ratio.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jfacemap.errors import JfacemapError
from jfacemap.io.facemap_proc import is_proc_path, load_proc, proc_pcs
from jfacemap.io.inputs import KEYPOINT_SUFFIXES
from jfacemap.io.keypoints import read_keypoints
from jfacemap.io.timestamps import check_timestamps
from jfacemap.skeleton import ANALYSIS_BODYPARTS

__all__ = ["Behavior", "BehaviorFileError", "UnusableBodypartWarning", "read_behavior", "read_timestamps",
           "keypoint_coordinates"]

SVD_KINDS = ("motion", "movie")


class BehaviorFileError(JfacemapError):
    """A behaviour file or its timestamps are unusable; one line naming the file."""


class UnusableBodypartWarning(UserWarning):
    """A keypoint file's bodypart has no usable value and was left out of the behaviour."""


@dataclass(frozen=True)
class Behavior:
    """values: (T, D) float32; times: (T,) s; names: D column names; kind:
    "keypoints", "motion_pcs", "movie_pcs", "roi" or "array"; source: the file."""

    values: np.ndarray
    times: np.ndarray
    names: tuple[str, ...]
    kind: str
    source: Path


def keypoint_coordinates(keypoints: np.ndarray, bodyparts, where: object = "keypoints",
                         dtype=np.float32) -> tuple[np.ndarray, list[str]]:
    """(T, K, 2 or 3) keypoints -> ((T, 2K') x, y columns as `dtype`, names), using the
    analysis bodyparts when all are present; NaN gaps filled by interpolation (in float64).

    A bodypart never visible (no finite x or y, e.g. a synthetic session's
    hidden paw) is left out with an `UnusableBodypartWarning` naming `where`
    and the bodypart; BehaviorFileError if none is left.
    """
    bodyparts = list(bodyparts)
    use = [bodyparts.index(b) for b in ANALYSIS_BODYPARTS] if set(ANALYSIS_BODYPARTS) <= set(bodyparts) \
        else list(range(len(bodyparts)))
    kp = np.asarray(keypoints, np.float64)
    seen = np.isfinite(kp[:, use, :2]).any(axis=0).all(axis=-1) if len(kp) else np.zeros(len(use), bool)
    if not seen.all():
        hidden = [bodyparts[i] for i, ok in zip(use, seen) if not ok]
        if seen.any():  # warn only when something is left: otherwise the error below says it all
            warnings.warn(f"{where}: left out bodypart{'s' if len(hidden) > 1 else ''} "
                          f"{', '.join(map(repr, hidden))}: never visible (no finite x, y)",
                          UnusableBodypartWarning, stacklevel=2)
        use = [i for i, ok in zip(use, seen) if ok]
        if not use:
            raise BehaviorFileError(f"{where}: no bodypart is ever visible (every x, y is NaN)")
    xy = kp[:, use, :2].reshape(len(kp), -1)
    names = [f"{bodyparts[i]}_{c}" for i in use for c in ("x", "y")]
    return fill_gaps(xy, names, where).astype(dtype, copy=False), names


def fill_gaps(values: np.ndarray, names, where: object) -> np.ndarray:
    """Linear interpolation over NaN runs in each column (edges take the nearest value)."""
    out = np.array(values, np.float64)
    t = np.arange(len(out))
    for j in range(out.shape[1]):
        bad = ~np.isfinite(out[:, j])
        if bad.all():
            raise BehaviorFileError(f"{where}: column {names[j]} has no finite value")
        if bad.any():
            out[bad, j] = np.interp(t[bad], t[~bad], out[~bad, j])
    return out


def read_timestamps(path: str | os.PathLike, n: int | None = None, what: str = "frame") -> np.ndarray:
    """(T,) seconds from a .npy (or .npz with one array), checked by `check_timestamps` (one per `what`, n)."""
    p = Path(path)
    try:
        loaded = np.load(p, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                if len(loaded.files) != 1:
                    raise BehaviorFileError(f"{p}: expected one array of timestamps, found {', '.join(loaded.files)}")
                loaded = loaded[loaded.files[0]]
    except FileNotFoundError as err:
        raise BehaviorFileError(f"{p}: no such file") from err
    except (OSError, ValueError, EOFError) as error:
        if isinstance(error, BehaviorFileError):
            raise
        raise BehaviorFileError(f"{p}: cannot read timestamps ({error})") from error
    return check_timestamps(np.ravel(loaded), str(p), n=n, what=what, error=BehaviorFileError)


def _times(n: int, times, fps, p: Path) -> np.ndarray:
    if times is not None:
        if isinstance(times, (str, os.PathLike)):
            return read_timestamps(times, n)
        return check_timestamps(times, f"{p}: times", n=n, error=BehaviorFileError)
    if fps is None:
        raise BehaviorFileError(f"{p}: no timestamps: give the video frame rate (fps) or the timestamps (times)")
    if not fps > 0:
        raise BehaviorFileError(f"{p}: fps must be > 0, got {fps}")
    return np.arange(n) / float(fps)


def _read_svd(p: Path, kind: str) -> tuple[np.ndarray, list[str]]:
    key = f"{kind}_pcs"
    with np.load(p, allow_pickle=False) as z:
        if key not in z.files:
            raise BehaviorFileError(f"{p}: no {key} (found: {', '.join(z.files)})")
        pcs = np.asarray(z[key], np.float64)
    if pcs.ndim != 2:
        raise BehaviorFileError(f"{p}: {key} must be (time, components), got shape {pcs.shape}")
    return pcs, [f"{kind}_pc{i}" for i in range(pcs.shape[1])]


# `jfacemap roi` outputs used as behaviour: (key, column of a 2-D array or None, name)
_ROI_TRACES = (("pupil_area", None, "pupil_area"), ("pupil_center", 0, "pupil_x"), ("pupil_center", 1, "pupil_y"),
               ("blink", None, "blink"), ("running", 0, "running_dx"), ("running", 1, "running_dy"))


def _read_roi(p: Path) -> tuple[np.ndarray, list[str]]:
    columns, names = [], []
    with np.load(p, allow_pickle=False) as z:
        for key, col, name in _ROI_TRACES:
            if key in z.files:
                values = np.asarray(z[key], np.float64)
                columns.append(values if col is None else values[:, col])
                names.append(name)
        for i in range(len(z["svd_roi"]) if "svd_roi" in z.files else 0):
            pcs = np.asarray(z[f"svd{i}_motion_pcs"], np.float64) if f"svd{i}_motion_pcs" in z.files else None
            if pcs is not None:
                columns.extend(pcs.T)
                names.extend(f"roi{i}_motion_pc{j}" for j in range(pcs.shape[1]))
    if not columns:
        raise BehaviorFileError(f"{p}: no ROI trace in it (pupil, blink, running or SVD ROI motion PCs)")
    if len({len(c) for c in columns}) != 1:
        raise BehaviorFileError(f"{p}: its traces differ in length")
    return fill_gaps(np.stack(columns, axis=1), names, p), names


def _read_array(p: Path) -> np.ndarray:
    loaded = np.load(p, allow_pickle=False)
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            arrays = [k for k in loaded.files if loaded[k].ndim == 2]
            if len(arrays) != 1:
                raise BehaviorFileError(f"{p}: expected one 2-D (time x features) array, found {loaded.files}")
            loaded = loaded[arrays[0]]
    return np.asarray(loaded, np.float64)


def read_behavior(path: str | os.PathLike, fps: float | None = None, times=None, svd_kind: str = "motion") -> Behavior:
    """Read a behaviour file (see the module docstring) with its timestamps.

    fps: video frame rate (timestamps = frame / fps) when `times` is None.
    times: (T,) seconds, or a .npy path holding them.
    svd_kind: "motion" or "movie", for `_svd.npz` and `_proc.npy` files.
    """
    p = Path(path)
    if not p.exists():
        raise BehaviorFileError(f"{p}: no such file")
    suffix = p.suffix.lower()
    try:
        if suffix in KEYPOINT_SUFFIXES:
            keypoints, bodyparts = read_keypoints(p)
            values, names = keypoint_coordinates(keypoints, bodyparts, p)
            kind = "keypoints"
        elif p.name.endswith("_svd.npz"):
            if svd_kind not in SVD_KINDS:
                raise BehaviorFileError(f"{p}: svd kind must be one of {', '.join(SVD_KINDS)}, got {svd_kind!r}")
            values, names = _read_svd(p, svd_kind)
            kind = f"{svd_kind}_pcs"
        elif is_proc_path(p):
            if svd_kind not in SVD_KINDS:
                raise BehaviorFileError(f"{p}: svd kind must be one of {', '.join(SVD_KINDS)}, got {svd_kind!r}")
            values, region = proc_pcs(load_proc(p), svd_kind, p)
            names = [f"{svd_kind}{'' if region == 0 else f'_roi{region}'}_pc{i}" for i in range(values.shape[1])]
            kind = f"{svd_kind}_pcs"
        elif p.name.endswith("_roi.npz"):
            values, names = _read_roi(p)
            kind = "roi"
        elif suffix in (".npy", ".npz"):
            values = _read_array(p)
            if values.ndim != 2:
                raise BehaviorFileError(f"{p}: expected a 2-D (time x features) array, got shape {values.shape}")
            names, kind = [f"feature{i}" for i in range(values.shape[1])], "array"
        else:
            raise BehaviorFileError(f"{p}: unknown behaviour file type {suffix or '(none)'}; expected a "
                                    "_FacemapPose.h5, a DeepLabCut .csv/.h5, a _svd.npz, a Facemap _proc.npy, a _roi.npz or a .npy/.npz array")
    except (OSError, EOFError) as error:
        raise BehaviorFileError(f"{p}: cannot read it ({error})") from error
    if kind != "keypoints" and not np.isfinite(values).all():
        raise BehaviorFileError(f"{p}: {int((~np.isfinite(values)).sum())} NaN/inf values")
    if len(values) < 2:
        raise BehaviorFileError(f"{p}: only {len(values)} timepoints")
    return Behavior(values.astype(np.float32), _times(len(values), times, fps, p), tuple(names), kind, p)
