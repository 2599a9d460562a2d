"""Keypoint files: Facemap's `_FacemapPose.h5` and DeepLabCut's label/prediction CSV
(DeepLabCut's .h5 is read by `jfacemap.io.dlc_h5`).

A keypoint array is (frames, keypoints, 3): x, y in pixels (x right, y
down, image origin at the top-left pixel), and likelihood in [0, 1]; NaN where
a keypoint is absent. Arrays returned for tracking are float32; `LabelTable`
keeps float64 so a CSV's values survive a read/write round trip exactly.
"""

from __future__ import annotations

import csv
import io
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Sequence

import h5py
import numpy as np

from jfacemap.errors import JfacemapError
from jfacemap.io.atomic import atomic_path, write_text_atomic
from jfacemap.io.images import ImageError, read_image
from jfacemap.skeleton import FACEMAP_BODYPARTS

__all__ = [
    "KeypointFileError", "facemap_pose_path", "write_facemap_pose", "read_facemap_pose",
    "LabelTable", "read_dlc_csv", "write_dlc_csv", "load_label_images", "load_label_frames",
    "read_keypoints", "validate_bodyparts",
]

_GROUP = "Facemap"


class KeypointFileError(JfacemapError):
    """A keypoint or label file is malformed; the message is one line naming the file."""


def _check_keypoints(keypoints: np.ndarray, bodyparts: Sequence[str], where: object) -> np.ndarray:
    kp = np.asarray(keypoints)
    if kp.ndim != 3 or kp.shape[2] != 3 or kp.shape[1] != len(bodyparts):
        raise ValueError(f"{where}: keypoints must be (frames, {len(bodyparts)}, 3) for "
                         f"{len(bodyparts)} bodyparts, got shape {kp.shape}")
    if len(set(bodyparts)) != len(bodyparts):
        dup = sorted({b for b in bodyparts if list(bodyparts).count(b) > 1})
        raise KeypointFileError(f"{where}: duplicate bodyparts {', '.join(dup)}")
    return kp


# --- Facemap h5 -------------------------------------------------------------


def facemap_pose_path(video_path: str | os.PathLike) -> Path:
    """`<video stem>_FacemapPose.h5` beside the video, where Facemap puts its keypoints."""
    video = Path(video_path)
    return video.with_name(f"{video.stem}_FacemapPose.h5")


def write_facemap_pose(
    path: str | os.PathLike, keypoints: np.ndarray, bodyparts: Sequence[str], source: str | None = None
) -> Path:
    """Write (T, K, 3) keypoints as h5 groups `Facemap/<bodypart>/{x, y, likelihood}`, atomically.

    Each dataset is float32 (T,). The group's `bodyparts` attribute records the
    order, which h5 itself does not keep (it lists groups alphabetically);
    `source` (e.g. GROUND_TRUTH) says where the keypoints came from.
    """
    bodyparts = [str(b) for b in bodyparts]
    kp = _check_keypoints(keypoints, bodyparts, path).astype(np.float32)
    bad = [b for b in bodyparts if "/" in b or b in ("", ".")]
    if bad:
        raise JfacemapError(f"{path}: bodypart names cannot be h5 group names: {bad}")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        group = f.create_group(_GROUP)
        group.attrs["bodyparts"] = np.array(bodyparts, dtype=h5py.string_dtype())
        if source is not None:
            group.attrs["source"] = source
        for k, name in enumerate(bodyparts):
            part = group.create_group(name)
            for c, coord in enumerate(("x", "y", "likelihood")):
                part.create_dataset(coord, data=kp[:, k, c])
    return Path(path)


GROUND_TRUTH = "ground truth (jfacemap synth)"


def read_pose_source(path: str | os.PathLike) -> str | None:
    """The `source` a Facemap pose file was written with, or None (also for unreadable files)."""
    try:
        with h5py.File(path, "r") as f:
            value = f[_GROUP].attrs.get("source") if _GROUP in f else None
    except OSError:
        return None
    return None if value is None else str(value)


def _default_order(names: Sequence[str]) -> list[str]:
    known = [b for b in FACEMAP_BODYPARTS if b in names]
    return known + sorted(b for b in names if b not in FACEMAP_BODYPARTS)


def open_h5(path: str | os.PathLike) -> tuple[Path, h5py.File]:
    """(path, the open HDF5 file to read); KeypointFileError naming the file if it is missing or not HDF5."""
    p = Path(path)
    if not p.is_file():
        raise KeypointFileError(f"{p}: no such file")
    try:
        return p, h5py.File(p, "r")
    except OSError as err:
        raise KeypointFileError(f"{p}: not an HDF5 file") from err


def read_facemap_pose(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """(keypoints (T, K, 3) float32, bodyparts) from a Facemap pose h5 file.

    Order: the `bodyparts` attribute if the file has one (ours do), else
    Facemap's own order for the names it knows, then the rest alphabetically.
    """
    p, f = open_h5(path)
    with f:
        if _GROUP not in f:
            raise KeypointFileError(f"{p}: no '{_GROUP}' group (top level has: "
                                    f"{', '.join(f.keys()) or 'nothing'})")
        group = f[_GROUP]
        if "bodyparts" in group.attrs:
            names = [b.decode() if isinstance(b, bytes) else str(b) for b in group.attrs["bodyparts"]]
        else:
            names = _default_order(list(group.keys()))
        columns = []
        for name in names:
            for coord in ("x", "y", "likelihood"):
                key = f"{name}/{coord}"
                if key not in group:
                    raise KeypointFileError(f"{p}: missing dataset {_GROUP}/{key}")
                columns.append(np.asarray(group[key], dtype=np.float32).reshape(-1))
    lengths = sorted({len(c) for c in columns})
    if len(lengths) > 1:
        raise KeypointFileError(f"{p}: datasets differ in length ({lengths})")
    n = lengths[0] if lengths else 0
    kp = np.stack(columns, axis=1).reshape(n, len(names), 3) if columns else np.zeros((0, 0, 3), np.float32)
    return kp, names


# --- DeepLabCut CSV ----------------------------------------------------------


@dataclass
class LabelTable:
    """Labelled (or predicted) keypoints of N images, DeepLabCut style.

    index: N image paths relative to a project folder (or frame indices as
    text); keypoints: (N, K, 3) float64 x, y, likelihood, likelihood 1 where
    a label has no likelihood column and NaN where the keypoint is absent;
    with_likelihood: whether the source had a likelihood column.
    """

    index: list[str]
    bodyparts: list[str]
    keypoints: np.ndarray
    scorer: str = "jfacemap"
    source: Path | None = None
    with_likelihood: bool = False

    def __post_init__(self) -> None:
        self.index = [str(i) for i in self.index]
        self.bodyparts = [str(b) for b in self.bodyparts]
        self.keypoints = _check_keypoints(self.keypoints, self.bodyparts, self.source or "labels")
        self.keypoints = self.keypoints.astype(np.float64)
        if len(self.index) != len(self.keypoints):
            raise ValueError(f"{self.source or 'labels'}: {len(self.index)} index entries for "
                             f"{len(self.keypoints)} rows of keypoints")

    @property
    def labelled(self) -> np.ndarray:
        """(N, K) bool: both x and y present."""
        return np.isfinite(self.keypoints[..., :2]).all(axis=-1)

    def frame_indices(self) -> list[int] | None:
        """The index as integers if every entry is one (rows are video frames), else None."""
        try:
            return [int(i) for i in self.index]
        except ValueError:
            return None


def _number(cell: str, p: Path, row: int, col: int, header: str) -> float:
    if cell.strip() == "":
        return math.nan
    try:
        return float(cell)
    except ValueError as err:
        raise KeypointFileError(f"{p}: row {row}, column {col + 1} ({header}): "
                                f"{cell!r} is not a number") from err


def read_dlc_csv(path: str | os.PathLike) -> LabelTable:
    """A DeepLabCut CSV (header rows scorer / bodyparts / coords; coords x,y or x,y,likelihood).

    Also reads the newer layout whose image path is split over several
    leading columns (`labeled-data,<video>,<img>`), joining them with '/'.
    An empty cell is NaN.
    """
    p = Path(path)
    if not p.is_file():
        raise KeypointFileError(f"{p}: no such file")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:  # e.g. saved by a Windows spreadsheet in a legacy code page
        text = p.read_text(encoding="latin-1")
    rows = list(csv.reader(io.StringIO(text)))
    heads = [r[0].strip().lower() if r else "" for r in rows[:3]]
    if heads[:2] == ["scorer", "individuals"]:
        raise KeypointFileError(f"{p}: multi-animal DeepLabCut CSV (an 'individuals' row) "
                                "is not supported")
    if heads != ["scorer", "bodyparts", "coords"]:
        raise KeypointFileError(f"{p}: not a DeepLabCut CSV: the first cells of the first three "
                                f"rows must be scorer, bodyparts, coords; found {heads}")
    width = len(rows[0])
    # Index columns: the first, plus those left empty in every header row.
    n_idx = 1
    while n_idx < width and all(len(r) > n_idx and not r[n_idx].strip() for r in rows[:3]):
        n_idx += 1
    for r_no, row in enumerate(rows[1:], start=2):
        if len(row) != width and any(c.strip() for c in row):
            raise KeypointFileError(f"{p}: row {r_no} has {len(row)} cells, the header has {width}")
    scorer = rows[0][n_idx] if width > n_idx else ""
    bodyparts: list[str] = []
    coords: dict[str, list[str]] = {}
    for col in range(n_idx, width):
        bp, coord = rows[1][col].strip(), rows[2][col].strip()
        if not bodyparts or bodyparts[-1] != bp:
            if bp in coords:
                raise KeypointFileError(f"{p}: bodypart {bp!r} appears twice")
            bodyparts.append(bp)
            coords[bp] = []
        coords[bp].append(coord)
    allowed = [["x", "y"], ["x", "y", "likelihood"]]
    for bp, c in coords.items():
        if c not in allowed or c != coords[bodyparts[0]]:
            raise KeypointFileError(f"{p}: coords must be x,y or x,y,likelihood for every "
                                    f"bodypart alike; {bp!r} has {','.join(c)}")
    with_likelihood = bool(bodyparts) and len(coords[bodyparts[0]]) == 3
    data = [(r_no, r) for r_no, r in enumerate(rows[3:], start=4) if any(c.strip() for c in r)]
    n_coord = 3 if with_likelihood else 2
    index, flat = [], np.full((len(data), len(bodyparts) * n_coord), np.nan)
    for i, (r_no, row) in enumerate(data):
        index.append("/".join(c.strip() for c in row[:n_idx] if c.strip()))
        try:
            flat[i] = [float(c) if c.strip() else math.nan for c in row[n_idx:]]
        except ValueError:  # find the culprit for the message
            for col in range(n_idx, width):
                _number(row[col], p, r_no, col, f"{rows[1][col]} {rows[2][col]}")
    values = np.full((len(data), len(bodyparts), 3), np.nan)
    values[:, :, :n_coord] = flat.reshape(len(data), len(bodyparts), n_coord)
    if not with_likelihood:
        both = np.isfinite(values[..., :2]).all(axis=-1)
        values[..., 2] = np.where(both, 1.0, np.nan)
    return LabelTable(index, bodyparts, values, scorer, p, with_likelihood)


def _cell(v: float) -> str:
    # repr is the shortest text that reads back as the same float64.
    return "" if math.isnan(v) else repr(float(v))


def write_dlc_csv(
    path: str | os.PathLike, table: LabelTable | np.ndarray, bodyparts: Sequence[str] | None = None,
    index: Sequence[str | int] | None = None, scorer: str = "jfacemap",
    with_likelihood: bool | None = None,
) -> Path:
    """Write a DeepLabCut CSV, atomically, from a LabelTable or (N, K, 3) keypoints.

    With arrays, `bodyparts` is required and `index` defaults to frame
    numbers 0..N-1. `with_likelihood` defaults to the table's own
    (False for arrays): x,y labels or x,y,likelihood predictions. NaN cells
    are left empty; floats are written at full (repr) precision.
    """
    if not isinstance(table, LabelTable):
        if bodyparts is None:
            raise ValueError(f"{path}: writing an array needs its bodyparts")
        kp = np.asarray(table)
        table = LabelTable(list(range(len(kp))) if index is None else list(index),
                           list(bodyparts), kp, scorer)
    likelihood = table.with_likelihood if with_likelihood is None else with_likelihood
    coords = ("x", "y", "likelihood") if likelihood else ("x", "y")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["scorer"] + [table.scorer] * (len(table.bodyparts) * len(coords)))
    writer.writerow(["bodyparts"] + [b for b in table.bodyparts for _ in coords])
    writer.writerow(["coords"] + list(coords) * len(table.bodyparts))
    n_cols = len(table.bodyparts) * len(coords)
    flat = table.keypoints[:, :, : len(coords)].reshape(len(table.index), n_cols)
    for name, row in zip(table.index, flat):
        writer.writerow([name] + [_cell(v) for v in row])
    write_text_atomic(path, out.getvalue())
    return Path(path)


def _image_root(table: LabelTable, root: str | os.PathLike | None) -> Path:
    """Folder the index paths are relative to: `root`, else the CSV's folder or an ancestor.

    DeepLabCut keeps CSVs in labeled-data/<video>/ with paths relative to the
    project two folders up; a flat layout keeps them beside the CSV.
    """
    if root is not None:
        return Path(root)
    if table.source is None:
        return Path.cwd()
    # Absolute first: "train.csv" run from inside its folder has no parents to search.
    # Then the real location, for a CSV reached through a symlink.
    sources = dict.fromkeys([Path(os.path.abspath(table.source)), table.source.resolve()])
    folders = [f for src in sources for f in [src.parent, *list(src.parent.parents)[:3]]]
    first = _relative(table.index[0]) if table.index else None
    for folder in folders:
        if first is not None and (folder / first).is_file():
            return folder
    return folders[0]


def _relative(name: str) -> Path:
    # DeepLabCut made on Windows writes backslashes.
    return Path(*PureWindowsPath(name).parts) if "\\" in name else Path(name)


def load_label_images(table: LabelTable, root: str | os.PathLike | None = None) -> np.ndarray:
    """The table's images as (N, H, W) uint8 gray, read relative to `root` (see `_image_root`).

    All images must share one size (the labels are in their pixels);
    ImageError names a missing one, or the first whose size differs.
    """
    if table.frame_indices() is not None and table.index:
        raise ValueError(f"{table.source}: rows are frame indices, not images; "
                         "use load_label_frames(table, video_path)")
    base = _image_root(table, root)
    paths = [base / _relative(name) for name in table.index]
    for row, p in enumerate(paths):
        if not p.is_file():
            raise ImageError(f"{p}: no such file (row {row + 1} of {table.source or 'the labels'})")
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        images = list(pool.map(read_image, paths))
    if not images:
        return np.zeros((0, 0, 0), np.uint8)
    for p, image in zip(paths, images):
        if image.shape != images[0].shape:
            raise ImageError(f"{p}: image is {image.shape[1]}x{image.shape[0]} px but "
                             f"{paths[0].name} is {images[0].shape[1]}x{images[0].shape[0]}; "
                             "label images must share one size")
    return np.stack(images)


def load_label_frames(table: LabelTable, video_path: str | os.PathLike) -> np.ndarray:
    """(N, H, W) uint8 frames of `video_path` at the table's integer index."""
    from jfacemap.io.video import read_frames

    frames = table.frame_indices()
    if frames is None:
        raise ValueError(f"{table.source}: rows are image paths, not frame indices; "
                         "use load_label_images(table)")
    return read_frames(video_path, frames)


def read_keypoints(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """(keypoints (T, K, 3) float32, bodyparts) from a Facemap .h5, a DeepLabCut .csv or .h5, or an .nwb.

    An .h5 holding a pandas DataFrame is DeepLabCut's (read by `jfacemap.io.dlc_h5`), or
    an older Facemap's (the same layout, scorer Facemap). An .nwb holds ndx-pose's
    `behavior/PoseEstimation` (`jfacemap.io.nwb_pose`).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        from jfacemap.io.dlc_h5 import is_pandas_h5, read_dlc_h5  # it imports this module

        if is_pandas_h5(p):
            table = read_dlc_h5(p)
            return table.keypoints.astype(np.float32), table.bodyparts
        return read_facemap_pose(p)
    if suffix == ".csv":
        table = read_dlc_csv(p)
        return table.keypoints.astype(np.float32), table.bodyparts
    if suffix == ".nwb":  # as `jfacemap export nwb` writes it (needs the extra `nwb`)
        from jfacemap.io.nwb_pose import read_pose_nwb  # it imports this module

        keypoints, bodyparts, _ = read_pose_nwb(p)
        return keypoints.astype(np.float32), bodyparts
    raise KeypointFileError(f"{p}: unknown keypoint file type {suffix or '(none)'}; "
                            "expected a Facemap .h5, a DeepLabCut .csv or .h5, or an NWB file (ndx-pose)")


def validate_bodyparts(
    found: Sequence[str], expected: Sequence[str], path: str | os.PathLike | None = None
) -> None:
    """KeypointFileError naming `path` and every name in `found` that `expected` lacks."""
    unknown = [b for b in found if b not in set(expected)]
    if unknown:
        raise KeypointFileError(f"{path}: unknown bodyparts {', '.join(map(repr, unknown))}; "
                                f"expected some of: {', '.join(expected)}")
