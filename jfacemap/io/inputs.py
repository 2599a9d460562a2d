"""The first check on any input file, with the one-line messages every reader shares."""

from __future__ import annotations

import os
from pathlib import Path

from jfacemap.errors import JfacemapError

# Keypoint files by suffix: Facemap or DeepLabCut .h5, DeepLabCut .csv, NWB with ndx-pose.
KEYPOINT_SUFFIXES = (".h5", ".hdf5", ".csv", ".nwb")


def existing_file(path: str | os.PathLike, kind: str, error: type[Exception] = JfacemapError) -> Path:
    """`path` as a Path if it is a non-empty file; else `error("<path>: <problem>")`.

    kind: what the file should be ("video", "image"), for the folder message.
    """
    p = Path(path)
    if not p.exists():
        raise error(f"{p}: no such file")
    if p.is_dir():
        raise error(f"{p}: is a folder, not {'an' if kind[0] in 'aeiou' else 'a'} {kind}")
    if p.stat().st_size == 0:
        raise error(f"{p}: empty file")
    return p
