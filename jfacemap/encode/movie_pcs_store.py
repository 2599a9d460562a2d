"""Movie / motion PCs on disk: `save_movie_svd` / `load_movie_svd`, one .npz per video.

Plain arrays only (loaded with allow_pickle=False, so a file cannot run code):

    format, version                 "jfacemap-movie-svd", 1
    video, n_frames, bin            source video path (str), decoded frames, bin size
    box                             (4,) int64 the full frame, 0 width 0 height
    rois                            (R, 4) int64 x0 x1 y0 y1 frame pixels
    sample_starts, sample_size      the sampled runs the masks came from
    pixel_centred                   bool: frames' pixel means were removed for the masks
    avgframe, avgmotion             (H', W') float32, full frame
    movie_masks, motion_masks       (n, H', W') float32
    movie_pcs, motion_pcs           (T, n) float32
    movie_sv, motion_sv             (n,) float32
    roi<i>_<any of the above 8>     the same for ROI i

A kind that was not computed (--no-movie / --no-motion) has no keys. The
file is written to a temporary name and renamed, never left half-written.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from jfacemap.encode.movie_pcs import KINDS, MovieSVD, RegionPCs
from jfacemap.errors import JfacemapError
from jfacemap.io.atomic import atomic_path
from jfacemap.io.inputs import existing_file

FORMAT = "jfacemap-movie-svd"
VERSION = 1
_REQUIRED = ("version", "video", "n_frames", "bin", "box", "rois", "sample_starts", "sample_size",
             "avgframe", "avgmotion")
_REGION_KEYS = ("avgframe", "avgmotion", *(f"{kind}_{part}" for kind in KINDS for part in ("masks", "pcs", "sv")))


def save_movie_svd(path: str | os.PathLike, result: MovieSVD) -> Path:
    """Write `result` to `path` (.npz, any suffix kept as given), atomically."""
    arrays = {
        "format": np.array(FORMAT), "version": np.array(VERSION), "video": np.array(str(result.video)),
        "n_frames": np.array(result.n_frames), "bin": np.array(result.bin_size),
        "box": np.array(result.full.box, np.int64),
        "rois": np.array([r.box for r in result.rois], np.int64).reshape(-1, 4),
        "sample_starts": np.asarray(result.sample_starts, np.int64), "sample_size": np.array(result.sample_size),
        "pixel_centred": np.array(result.pixel_centred),
    }
    for prefix, region in (("", result.full), *((f"roi{i}_", r) for i, r in enumerate(result.rois))):
        for key in _REGION_KEYS:
            value = getattr(region, key)
            if value is not None:
                arrays[prefix + key] = value
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez adds no suffix
        np.savez(f, **arrays)
    return Path(path)


def load_movie_svd(path: str | os.PathLike) -> MovieSVD:
    """Read a file written by `save_movie_svd`; JfacemapError (one line) for anything else."""
    p = existing_file(path, "movie SVD file")
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise JfacemapError(f"{p}: not a jfacemap movie SVD file ({type(err).__name__})") from err
    if str(arrays.get("format", "")) != FORMAT:
        raise JfacemapError(f"{p}: not a jfacemap movie SVD file (no '{FORMAT}' format marker)")
    if int(arrays["version"]) > VERSION:
        raise JfacemapError(f"{p}: movie SVD format version {int(arrays['version'])} is newer than this "
                            f"jfacemap reads ({VERSION})")
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise JfacemapError(f"{p}: movie SVD file lacks {', '.join(missing)}")
    rois = arrays["rois"].reshape(-1, 4)
    bin_size = int(arrays["bin"])

    def region(prefix: str, box) -> RegionPCs:
        return RegionPCs(tuple(int(v) for v in box), **{k: arrays.get(prefix + k) for k in _REGION_KEYS})

    return MovieSVD(
        video=str(arrays["video"]), n_frames=int(arrays["n_frames"]), bin_size=bin_size,
        full=region("", arrays["box"]), rois=tuple(region(f"roi{i}_", box) for i, box in enumerate(rois)),
        sample_starts=arrays["sample_starts"], sample_size=int(arrays["sample_size"]),
        pixel_centred=bool(arrays.get("pixel_centred", False)),
    )
