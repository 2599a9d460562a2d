"""Labelled frames for training and evaluation, from the files people already have.

    images, keypoints, bodyparts, table = load_labelled_frames("CollectedData.csv")

Formats (chosen by content, not only by extension):
- DeepLabCut CSV whose rows name images (read relative to the project
  folder, see `load_label_images`) or are frame indices of `video`.
- Facemap pose h5 (`Facemap/<bodypart>/{x, y, likelihood}`): row t is frame
  t of `video`, or of the file's own `frame_indices` dataset if it has one;
  images may also be stored in the file as an `images` (N, H, W) uint8
  dataset. Rows with no labelled keypoint are skipped.
- DeepLabCut h5 (a pandas DataFrame, told from Facemap's by content): rows
  name images like the CSV, read by `jfacemap.io.dlc_h5` without pandas and
  without running the file's pickles; if it cannot be read, the error points
  to the CSV that DeepLabCut saves beside it.

Keypoints are (N, K, 3) float32 x, y in the images' own pixels and
likelihood; NaN where a keypoint is not labelled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from jfacemap.io.dlc_h5 import read_dlc_h5
from jfacemap.io.keypoints import (
    KeypointFileError,
    LabelTable,
    load_label_frames,
    load_label_images,
    read_dlc_csv,
    read_facemap_pose,
    validate_bodyparts,
)

__all__ = ["load_labelled_frames", "align_bodyparts", "LabelError"]


class LabelError(KeypointFileError):
    """Labels cannot be used; the message is one line naming the file."""


def align_bodyparts(
    keypoints: np.ndarray, found: Sequence[str], expected: Sequence[str], path: str | os.PathLike | None = None
) -> np.ndarray:
    """(N, len(found), 3) -> (N, len(expected), 3) in `expected`'s order, NaN for
    bodyparts the labels lack. One-line error naming `path` and any label
    bodypart `expected` does not know."""
    validate_bodyparts(found, expected, path)
    kp = np.asarray(keypoints, np.float32)
    out = np.full((kp.shape[0], len(expected), 3), np.nan, np.float32)
    position = {name: i for i, name in enumerate(found)}
    for j, name in enumerate(expected):
        if name in position:
            out[:, j] = kp[:, position[name]]
    return out


def load_labelled_frames(
    labels_path: str | os.PathLike,
    video: str | os.PathLike | None = None,
    bodyparts: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str], LabelTable]:
    """Read a labels file and the frames it labels.

    Args:
      labels_path: DeepLabCut CSV or h5, or Facemap pose h5 (see module docstring).
      video: the video the rows' frame indices refer to, where they do.
      bodyparts: a model's skeleton: the keypoints are reordered to it (NaN
        for bodyparts the labels lack); a label bodypart not in it is an error.
    Returns:
      (images (N, H, W) uint8, keypoints (N, K, 3) float32, bodyparts (K), table).
    """
    p = Path(labels_path)
    if not p.is_file():
        raise LabelError(f"{p}: no such file")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        table = read_dlc_csv(p)
        images = _frames_for(table, p, video)
    elif suffix in (".h5", ".hdf5"):
        table, images = _read_h5_labels(p, video)
    else:
        raise LabelError(f"{p}: unknown labels file type {suffix or '(none)'}; expected a "
                         "DeepLabCut .csv or .h5 or a Facemap .h5")
    if len(table.index) == 0:
        raise LabelError(f"{p}: no labelled frames")
    keypoints = table.keypoints.astype(np.float32)
    names = list(table.bodyparts)
    if bodyparts is not None:
        keypoints = align_bodyparts(keypoints, names, bodyparts, p)
        names = [str(b) for b in bodyparts]
    if not np.isfinite(keypoints[..., :2]).all(axis=-1).any():
        raise LabelError(f"{p}: no keypoint is labelled in any frame")
    return images, keypoints, names, table


def _frames_for(table: LabelTable, p: Path, video: str | os.PathLike | None) -> np.ndarray:
    if table.frame_indices() is None:
        if video is not None:
            raise LabelError(f"{p}: rows name image files, so no video is needed (got {video})")
        return load_label_images(table)
    if video is None:
        raise LabelError(f"{p}: rows are frame indices; give the video they index (video)")
    return load_label_frames(table, video)


def _read_h5_labels(p: Path, video: str | os.PathLike | None) -> tuple[LabelTable, np.ndarray]:
    try:
        with h5py.File(p, "r") as f:
            top = list(f.keys())
            images = np.asarray(f["images"]) if "images" in f else None
            indices = np.asarray(f["frame_indices"]).astype(np.int64).reshape(-1) if "frame_indices" in f else None
            pandas = any("pandas_type" in f[k].attrs for k in top if isinstance(f[k], h5py.Group))
    except OSError as err:
        raise LabelError(f"{p}: not an HDF5 file") from err
    if "Facemap" not in top:
        if pandas:
            try:
                table = read_dlc_h5(p)
            except KeypointFileError as error:
                sibling = p.with_suffix(".csv")
                hint = f"; the CSV beside it ({sibling}) may be read instead" if sibling.is_file() else ""
                raise LabelError(f"{error}{hint}") from error
            return table, _frames_for(table, p, video)
        raise LabelError(f"{p}: neither Facemap nor DeepLabCut labels (top level has: "
                         f"{', '.join(top) or 'nothing'})")
    keypoints, names = read_facemap_pose(p)
    n = len(keypoints)
    if indices is None:
        indices = np.arange(n)
    if len(indices) != n or (images is not None and len(images) != n):
        raise LabelError(f"{p}: frame_indices/images do not match the {n} rows of keypoints")
    keep = np.flatnonzero(np.isfinite(keypoints[..., :2]).all(-1).any(-1))
    table = LabelTable([int(i) for i in indices[keep]], names, keypoints[keep], source=p, with_likelihood=True)
    if images is not None:
        if images.ndim != 3 or images.dtype != np.uint8:
            raise LabelError(f"{p}: 'images' must be (N, H, W) uint8, got {images.dtype} {images.shape}")
        if video is not None:
            raise LabelError(f"{p}: holds its own images, so no video is needed (got {video})")
        return table, images[keep]
    if video is None:
        raise LabelError(f"{p}: Facemap keypoints label video frames; give the video (video)")
    return table, load_label_frames(table, video)
