"""DeepLabCut predictions as DeepLabCut itself writes them: a pandas table in HDF5.

`write_dlc_h5` saves `DataFrame.to_hdf(key="df_with_missing", format="table")`
with columns a (scorer, bodyparts, coords) MultiIndex, coords x, y,
likelihood, and rows the frame numbers: what `pandas.read_hdf(path)`,
DeepLabCut's tools and movement's DeepLabCut loader read. Writing that layout
without pandas and PyTables would mean forging PyTables' pickled attributes, so
they are the optional extra `dlc`. (Reading needs neither: `jfacemap.io.dlc_h5`.)
The CSV twin is `jfacemap.io.keypoints.write_dlc_csv`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from jfacemap.io.atomic import atomic_path
from jfacemap.io.extras import require
from jfacemap.io.keypoints import LabelTable

__all__ = ["DLC_KEY", "dlc_dataframe", "write_dlc_h5"]

DLC_KEY = "df_with_missing"
COORDS = ("x", "y", "likelihood")
LEVELS = ("scorer", "bodyparts", "coords")


def dlc_dataframe(keypoints: np.ndarray, bodyparts: Sequence[str], scorer: str = "jfacemap",
                  index: Sequence[int] | None = None):
    """(T, K, 3) x, y (pixels), likelihood -> DeepLabCut's predictions DataFrame (float64, NaN kept).

    index: the T frame numbers (default 0..T-1). Needs pandas (extra `dlc`).
    """
    pd = require("pandas", "dlc", "a DeepLabCut table")
    table = LabelTable(list(range(len(keypoints))) if index is None else list(index), list(bodyparts),
                       np.asarray(keypoints), scorer, with_likelihood=True)  # checks shapes and duplicates
    columns = pd.MultiIndex.from_tuples([(scorer, b, c) for b in table.bodyparts for c in COORDS], names=LEVELS)
    frames = pd.Index(np.array(table.frame_indices() or range(len(table.index)), np.int64))
    flat = table.keypoints.reshape(len(table.index), len(table.bodyparts) * len(COORDS))
    return pd.DataFrame(flat, index=frames, columns=columns)


def write_dlc_h5(path: str | os.PathLike, keypoints: np.ndarray, bodyparts: Sequence[str],
                 scorer: str = "jfacemap", index: Sequence[int] | None = None) -> Path:
    """Write (T, K, 3) keypoints as a DeepLabCut predictions .h5, atomically (see the module docstring).

    Needs pandas and PyTables (extra `dlc`); MissingExtraError says how to install them.
    """
    frame = dlc_dataframe(keypoints, bodyparts, scorer, index)
    require("tables", "dlc", "a DeepLabCut .h5")
    with atomic_path(path) as tmp:
        frame.to_hdf(tmp, key=DLC_KEY, format="table", mode="w")
    return Path(path)
