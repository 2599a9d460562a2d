"""The original Facemap's `<video>_proc.npy`: its processing results as one pickled dict.

Facemap (1.0.8, `facemap.process.run`) saves `np.save(path, proc)`, a 0-d
object array around a dict whose keys its GUI and lab scripts read:

    filenames                   [[video path]]: videos x camera views
    Ly, Lx                      [height], [width] of each view, pixels
    sbin                        spatial bin size
    avgframe, avgmotion         [(Ly/sbin * Lx/sbin,) float32]: mean frame, mean |frame difference|
    avgframe_reshape, ...       the same as (Ly/sbin, Lx/sbin) images
    motMask, movMask            [(pixels, n) float32] masks: full frame first, then each motion ROI
    motMask_reshape, ...        [(Ly/sbin, Lx/sbin, n), then (ly, lx, n) per ROI]
    motSVD, movSVD              [(frames, n) float32] PCs, in the same order as the masks
    motSv, movSv                [(n,)] singular values
    rois                        [dict per ROI] (rind 0 pupil, 1 motion SVD, 2 blink, 3 running), or None
    pupil, blink, running       [per ROI of that kind]
    fullSVD, save_mat, ...      flags of the run

A kind not computed is an empty list. Reading goes through the project's
restricted unpickler (`jfacemap.io.neural.ArrayOnlyUnpickler`: arrays,
numpy scalars, dicts, lists, tuples, numbers, strings, nothing else), so a
crafted file cannot run code. Written files need numpy >= 1.26 to read
(numpy 2 names its array pickles `numpy._core`; 1.26 has that alias).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jfacemap.errors import JfacemapError
from jfacemap.io.atomic import atomic_path
from jfacemap.io.inputs import existing_file
from jfacemap.io.neural import load_object_npy

__all__ = ["PROC_SUFFIX", "ProcFileError", "is_proc_path", "load_proc", "proc_pcs", "save_proc"]

PROC_SUFFIX = "_proc.npy"
# proc key of each kind of PCs, as `jfacemap svd` names the kinds.
PCS_KEYS = {"motion": "motSVD", "movie": "movSVD"}


class ProcFileError(JfacemapError):
    """A `_proc.npy` is missing, malformed, or lacks what was asked of it; one line naming the file."""


def is_proc_path(path: str | os.PathLike) -> bool:
    """Whether `path` is named like Facemap's processing output (`<video>_proc.npy`)."""
    return Path(path).name.lower().endswith(PROC_SUFFIX)


def save_proc(path: str | os.PathLike, proc: dict) -> Path:
    """`np.save(path, proc)` as the original does (a pickled 0-d object array), atomically."""
    if not isinstance(proc, dict):
        raise TypeError(f"{path}: a _proc.npy holds a dict, got {type(proc).__name__}")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.save adds no suffix
        np.save(f, np.array(proc, dtype=object), allow_pickle=True)
    return Path(path)


def load_proc(path: str | os.PathLike) -> dict:
    """The dict in a `_proc.npy`, decoded by the restricted unpickler; ProcFileError otherwise."""
    p = existing_file(path, "_proc.npy file", ProcFileError)
    array = load_object_npy(p, error=ProcFileError)
    proc = array.item() if array.dtype == object and array.shape == () else None
    if not isinstance(proc, dict):
        raise ProcFileError(f"{p}: not a Facemap _proc.npy (expected a pickled dict, found a "
                            f"{array.dtype} array of shape {array.shape})")
    return proc


def proc_pcs(proc: dict, kind: str = "motion", where: object = "_proc.npy") -> tuple[np.ndarray, int]:
    """((T, n) float64 PCs, region) of `kind` ("motion" or "movie") from a proc dict.

    region 0 is the full frame; when the run had no full-frame SVD (its entry
    is empty) the first motion ROI with PCs is used. ProcFileError when none has.
    """
    if kind not in PCS_KEYS:
        raise ProcFileError(f"{where}: PCs kind must be one of {', '.join(PCS_KEYS)}, got {kind!r}")
    key = PCS_KEYS[kind]
    regions = proc.get(key)
    if not isinstance(regions, (list, tuple)):
        regions = [] if regions is None else [regions]
    for region, pcs in enumerate(regions):
        pcs = np.asarray(pcs)
        if pcs.dtype.kind not in "fiu":
            raise ProcFileError(f"{where}: {key}[{region}] is not numeric ({pcs.dtype})")
        if pcs.ndim == 2 and min(pcs.shape) > 0:
            return pcs.astype(np.float64), region
    raise ProcFileError(f"{where}: no {kind} PCs ({key} is empty; found keys: {', '.join(map(str, proc))})")
