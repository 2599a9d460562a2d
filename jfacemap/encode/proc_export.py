"""`jfacemap svd` results in the original Facemap's `_proc.npy` layout, so its GUI and lab scripts open them.

`proc_from_svd` maps a `MovieSVD` onto the dict `facemap.process.run`
saves (layout: `jfacemap.io.facemap_proc`): one video, one camera view, the
full frame first and every --roi as a motion-SVD ROI (rind 1). Masks go
from (n, H', W') to the original's (pixels, n) columns; PCs, singular values
and mean images are copied unchanged. The original's total motion energy
(`motion`) has no counterpart in `_svd.npz` and is left out.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import jfacemap
from jfacemap.encode.movie_pcs import MovieSVD, RegionPCs
from jfacemap.encode.movie_pcs_store import load_movie_svd
from jfacemap.errors import JfacemapError
from jfacemap.io.facemap_proc import PROC_SUFFIX, save_proc

__all__ = ["export_proc", "proc_from_svd", "proc_name"]

SVD_SUFFIX = "_svd.npz"
# The original's colour for motion-SVD ROIs (facemap.roi.colors[1]); its GUI draws the ROI with it.
_MOTION_ROI_COLOR = (0.0, 255.0, 0.0)
# Its ROI kinds (rind) and colours (facemap.roi.colors) for the `jfacemap roi` measures.
_ROI_KINDS = {"pupil": (0, "Pupil", (0.0, 200.0, 50.0)), "blink": (2, "Blink", (40.0, 100.0, 250.0)),
              "running": (3, "Running", (150.0, 50.0, 150.0))}
ROI_SUFFIX = "_roi.npz"


def proc_name(svd_file: str | os.PathLike) -> str:
    """`<video>_proc.npy` for `<video>_svd.npz` (any other name: its stem + `_proc.npy`)."""
    name = Path(svd_file).name
    stem = name[: -len(SVD_SUFFIX)] if name.lower().endswith(SVD_SUFFIX) else Path(name).stem
    return stem + PROC_SUFFIX


def _ellipse(ly: int, lx: int) -> np.ndarray:
    """(ly, lx) bool: the ellipse inscribed in the ROI, as the original's GUI stores for each ROI."""
    y, x = np.mgrid[:ly, :lx]
    return ((y - ly / 2) ** 2 / max(ly / 2, 0.5) ** 2 + (x - lx / 2) ** 2 / max(lx / 2, 0.5) ** 2) <= 1


def _roi_dict(i: int, region: RegionPCs) -> dict:
    x0, x1, y0, y1 = region.box
    return {"rind": 1, "rtype": "motion SVD", "iROI": i, "ivid": 0, "color": _MOTION_ROI_COLOR,
            "yrange": np.arange(y0, y1), "xrange": np.arange(x0, x1), "saturation": 0.0,
            "pupil_sigma": 0, "ellipse": _ellipse(y1 - y0, x1 - x0)}


def _measure_roi_dict(kind: str, index: int, box: np.ndarray) -> dict:
    x0, y0, x1, y1 = (int(v) for v in box)  # `jfacemap roi` boxes are X0,Y0,X1,Y1
    rind, rtype, color = _ROI_KINDS[kind]
    return {"rind": rind, "rtype": rtype, "iROI": index, "ivid": 0, "color": color,
            "yrange": np.arange(y0, y1), "xrange": np.arange(x0, x1), "saturation": 0.0,
            "pupil_sigma": 2.0, "ellipse": _ellipse(y1 - y0, x1 - x0)}


def _add_roi_measures(proc: dict, roi: dict) -> None:
    """Append the pupil, blink and running traces of a `jfacemap roi` output (`roi`: its arrays)
    and their ROI dicts, in the original's units: pupil `com` (T, 2) is (y, x) within the ROI,
    `axdir` (T, 2, 2) holds the major then the minor axis direction as (y, x) columns, `axlen`
    (T, 2) our full axis lengths (px; the original stores Gaussian widths), and the `_smooth`
    copies are the raw traces (the original median-smooths them; jfacemap's traces are not)."""
    rois = proc["rois"] if proc["rois"] is not None else []
    if "pupil_area" in roi:
        x0, y0 = (int(v) for v in roi["pupil_roi"][:2])
        com = np.stack([roi["pupil_center"][:, 1] - y0, roi["pupil_center"][:, 0] - x0], axis=1)
        a = np.asarray(roi["pupil_angle"], np.float64)
        major, minor = np.stack([np.sin(a), np.cos(a)], 1), np.stack([np.cos(a), -np.sin(a)], 1)
        proc["pupil"].append({"area": np.asarray(roi["pupil_area"], np.float64), "com": com,
                              "axdir": np.stack([major, minor], axis=2), "axlen": np.asarray(roi["pupil_axes"]),
                              "area_smooth": np.asarray(roi["pupil_area"], np.float64), "com_smooth": com.copy()})
        rois.append(_measure_roi_dict("pupil", len(rois), roi["pupil_roi"]))
    if "blink" in roi:
        proc["blink"].append(np.asarray(roi["blink"], np.float64))
        rois.append(_measure_roi_dict("blink", len(rois), roi["blink_roi"]))
    if "running" in roi:
        # the original's running traces are (dy, dx); ours are (dx, dy)
        proc["running"].append(np.asarray(roi["running"], np.float64)[:, ::-1].copy())
        rois.append(_measure_roi_dict("running", len(rois), roi["running_roi"]))
    proc["rois"] = rois or None


def _kind_lists(regions: tuple[RegionPCs, ...], kind: str) -> dict[str, list]:
    """masks (pixels, n), masks as images (H', W', n), PCs (T, n), singular values per region; [] if not computed."""
    masks = [getattr(r, f"{kind}_masks") for r in regions]
    if any(m is None for m in masks):
        return {"Mask": [], "Mask_reshape": [], "SVD": [], "Sv": []}
    return {
        "Mask": [np.ascontiguousarray(m.reshape(len(m), -1).T, np.float32) for m in masks],
        "Mask_reshape": [np.ascontiguousarray(np.moveaxis(m, 0, -1), np.float32) for m in masks],
        "SVD": [np.asarray(getattr(r, f"{kind}_pcs"), np.float32) for r in regions],
        "Sv": [np.asarray(getattr(r, f"{kind}_sv"), np.float32) for r in regions],
    }


def proc_from_svd(result: MovieSVD, save_path: str | None = None, roi: dict | None = None) -> dict:
    """The original's proc dict for `result` (see the module docstring), with the pupil, blink and
    running traces of `roi` (the arrays of a `jfacemap roi` output) when given. Values are plain
    Python numbers, strings, lists, dicts and numpy arrays, so any numpy >= 1.26 unpickles them."""
    x0, x1, y0, y1 = result.full.box
    height, width = y1 - y0, x1 - x0
    lyb, lxb = result.full.avgframe.shape
    regions = result.regions
    proc = {
        "filenames": [[str(result.video)]],
        "save_path": save_path,
        "Ly": [int(height)], "Lx": [int(width)], "sbin": int(result.bin_size),
        "fullSVD": True, "save_mat": False,
        "Lybin": np.array([lyb], np.int32), "Lxbin": np.array([lxb], np.int32),
        "sybin": np.array([0]), "sxbin": np.array([0]), "LYbin": int(lyb), "LXbin": int(lxb),
        "sy": 0, "sx": 0,
        "avgframe": [result.full.avgframe.astype(np.float32).ravel()],
        "avgmotion": [result.full.avgmotion.astype(np.float32).ravel()],
        "avgframe_reshape": result.full.avgframe.astype(np.float32),
        "avgmotion_reshape": result.full.avgmotion.astype(np.float32),
        "rois": [_roi_dict(i, r) for i, r in enumerate(result.rois)] or None,
    }
    for kind, short in (("motion", "mot"), ("movie", "mov")):
        for part, value in _kind_lists(regions, kind).items():
            proc[f"{short}{part}"] = value
    proc.update(pupil=[], blink=[], running=[])
    if roi is not None:
        _add_roi_measures(proc, roi)
    proc["jfacemap"] = {"version": jfacemap.__version__, "n_frames": int(result.n_frames),
                        "pixel_centred": bool(result.pixel_centred)}
    return proc


def export_proc(svd_file: str | os.PathLike, out: str | os.PathLike | None = None,
                roi_file: str | os.PathLike | None = None) -> Path:
    """Write `<out or svd_file's folder>/<video>_proc.npy` from a `_svd.npz`, atomically; its path.
    The pupil, blink and running traces come from `roi_file`, or else from `<video>_roi.npz` beside
    the `_svd.npz` when there is one."""
    result = load_movie_svd(svd_file)
    folder = Path(out) if out is not None else Path(svd_file).parent
    if roi_file is None:
        beside = Path(svd_file).parent / (proc_name(svd_file)[: -len(PROC_SUFFIX)] + ROI_SUFFIX)
        roi_file = beside if beside.is_file() else None
    roi = None
    if roi_file is not None:
        with np.load(roi_file, allow_pickle=False) as z:
            roi = {k: z[k] for k in z.files}
        if int(roi.get("n_frames", result.n_frames)) != result.n_frames:
            raise JfacemapError(f"{roi_file}: {int(roi['n_frames'])} frames, but {svd_file} has {result.n_frames}")
    return save_proc(folder / proc_name(svd_file), proc_from_svd(result, save_path=str(folder), roi=roi))
