"""Neural recordings in the forms labs have them, read without unpickling anything.

- `.npz` with `spks` (neurons x time) and optional `xpos`, `ypos` (um) and
  `timestamps` (s, one per neural frame);
- a bare `.npy` array (neurons x time);
- Suite2p output: a `plane*` folder (or its `spks.npy`) with `stat.npy`
  beside it; positions are the ROI medians (`stat[i]["med"]`, pixels, times
  `um_per_pixel`), and `iscell.npy`, when present, keeps only the cells.

Suite2p's `stat.npy` is a pickled object array. It is read with an
unpickler that only rebuilds numpy arrays, scalars and plain containers, so
a crafted file cannot run code.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jfacemap.errors import JfacemapError
from jfacemap.io.timestamps import check_timestamps

__all__ = ["NeuralData", "NeuralFileError", "read_neural"]


class NeuralFileError(JfacemapError):
    """A neural data file is missing or malformed; the message is one line naming the file."""


@dataclass(frozen=True)
class NeuralData:
    """A neural recording.

    spks: (n_neurons, n_frames) float32 activity (deconvolved or dF/F).
    xpos, ypos: (n_neurons,) positions in um, or None when the file has none.
    timestamps: (n_frames,) seconds, or None (give a frame rate instead).
    source: the file it came from.
    """

    spks: np.ndarray
    xpos: np.ndarray | None
    ypos: np.ndarray | None
    timestamps: np.ndarray | None
    source: Path

    @property
    def n_neurons(self) -> int:
        return int(self.spks.shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.spks.shape[1])


# numpy's pickles of object arrays need these (module names moved in numpy 2).
_SAFE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("builtins", "slice"),
}


# Whatever a malformed pickle can raise while being decoded.
PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
                 AttributeError, OverflowError)


class ArrayOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays, numpy scalars and dtypes, and plain containers, numbers and strings
    (which need no global); refuses every other global, so a pickle cannot import or run code."""

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_object_npy(path: str | os.PathLike, error: type[JfacemapError] = NeuralFileError) -> np.ndarray:
    """An object-dtype .npy (like Suite2p's stat.npy or Facemap's _proc.npy) through the restricted
    unpickler; `error` (one line naming the file) when it is not a .npy or holds anything else."""
    p = Path(path)
    with open(p, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(version, np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f)
        except ValueError as err:
            raise error(f"{p}: not a .npy file ({err})") from err
        if dtype != object:
            return np.load(p, allow_pickle=False)
        try:
            array = ArrayOnlyUnpickler(io.BytesIO(f.read())).load()
        except PICKLE_ERRORS as err:
            raise error(f"{p}: cannot read it safely ({err})") from err
    return np.asarray(array, dtype=object).reshape(shape)


def _spks_array(array: np.ndarray, p: Path) -> np.ndarray:
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise NeuralFileError(f"{p}: spks must be a numeric array, got dtype {array.dtype}")
    if array.ndim != 2:
        raise NeuralFileError(f"{p}: spks must be 2-D (neurons x time), got shape {array.shape}")
    if min(array.shape) < 1:
        raise NeuralFileError(f"{p}: spks is empty, shape {array.shape}")
    array = np.asarray(array, np.float32)
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise NeuralFileError(f"{p}: {int(bad.sum())} NaN/inf values in spks (neurons {_few(rows)})")
    return array


def _few(indices: np.ndarray, n: int = 5) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:n])
    return shown + (f", ... ({len(indices)} in all)" if len(indices) > n else "")


def _vector(value, n: int, name: str, p: Path, what: str) -> np.ndarray:
    v = np.asarray(value, np.float64).ravel()
    if v.shape != (n,):
        raise NeuralFileError(f"{p}: {name} has {v.size} values but spks has {n} {what}")
    if not np.isfinite(v).all():
        raise NeuralFileError(f"{p}: {name} has NaN/inf values")
    return v


def _read_npz(p: Path) -> NeuralData:
    try:
        with np.load(p, allow_pickle=False) as z:
            if "spks" not in z.files:
                raise NeuralFileError(f"{p}: no 'spks' array (found: {', '.join(z.files) or 'nothing'})")
            spks = _spks_array(z["spks"], p)
            n, t = spks.shape
            xpos = _vector(z["xpos"], n, "xpos", p, "neurons") if "xpos" in z.files else None
            ypos = _vector(z["ypos"], n, "ypos", p, "neurons") if "ypos" in z.files else None
            times = (check_timestamps(np.ravel(z["timestamps"]), f"{p}: timestamps", n=t, what="frame of spks",
                                      error=NeuralFileError) if "timestamps" in z.files else None)
    except (OSError, EOFError) as error:
        raise NeuralFileError(f"{p}: cannot read it as .npz ({error})") from error
    except ValueError as error:
        if isinstance(error, NeuralFileError):
            raise
        raise NeuralFileError(f"{p}: cannot read it as .npz ({error})") from error
    if (xpos is None) != (ypos is None):
        raise NeuralFileError(f"{p}: has {'xpos' if xpos is not None else 'ypos'} without the other")
    return NeuralData(spks, xpos, ypos, times, p)


def _load_npy(p: Path) -> np.ndarray:
    try:
        return np.load(p, allow_pickle=False, mmap_mode="r")
    except ValueError as error:
        raise NeuralFileError(f"{p}: cannot read it as a numeric .npy ({error})") from error
    except OSError as error:
        raise NeuralFileError(f"{p}: cannot read it ({error.strerror or error})") from error


def _read_suite2p(folder: Path, um_per_pixel: float) -> NeuralData:
    spks_path = folder / "spks.npy"
    spks = _spks_array(_load_npy(spks_path), spks_path)
    stat_path = folder / "stat.npy"
    stat = load_object_npy(stat_path)
    if stat.shape != (spks.shape[0],):
        raise NeuralFileError(f"{stat_path}: {stat.size} ROIs but spks.npy has {spks.shape[0]} rows")
    try:
        med = np.array([np.asarray(s["med"], np.float64)[:2] for s in stat])  # (y, x) pixels
    except (KeyError, TypeError, IndexError) as err:
        raise NeuralFileError(f"{stat_path}: ROIs without a 'med' (median y, x) entry") from err
    keep = np.ones(len(stat), bool)
    iscell_path = folder / "iscell.npy"
    if iscell_path.exists():
        iscell = np.asarray(_load_npy(iscell_path))
        iscell = iscell[:, 0] if iscell.ndim == 2 else iscell
        if iscell.shape != (len(stat),):
            raise NeuralFileError(f"{iscell_path}: {iscell.shape[0]} rows but spks.npy has {len(stat)}")
        keep = iscell > 0.5
        if not keep.any():
            raise NeuralFileError(f"{iscell_path}: no ROI is marked as a cell")
    return NeuralData(np.ascontiguousarray(spks[keep]), med[keep, 1] * um_per_pixel, med[keep, 0] * um_per_pixel,
                      None, spks_path)


def read_neural(path: str | os.PathLike, um_per_pixel: float = 1.0) -> NeuralData:
    """Read a neural recording (.npz, bare .npy, or a Suite2p folder / its spks.npy).

    um_per_pixel: Suite2p positions are in pixels; this scales them to um.
    Raises NeuralFileError (one line naming the file) on anything malformed:
    missing file, wrong shapes, NaN/inf, positions or timestamps that do not
    match the number of neurons or frames.
    """
    p = Path(path)
    if not p.exists():
        raise NeuralFileError(f"{p}: no such file or folder")
    if p.is_dir():
        if not (p / "spks.npy").exists():
            raise NeuralFileError(f"{p}: a folder without spks.npy (expected Suite2p output)")
        return _read_suite2p(p, um_per_pixel)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return _read_npz(p)
    if suffix == ".npy":
        if p.name == "spks.npy" and (p.parent / "stat.npy").exists():
            return _read_suite2p(p.parent, um_per_pixel)
        return NeuralData(_spks_array(_load_npy(p), p), None, None, None, p)
    raise NeuralFileError(f"{p}: unknown neural file type {suffix or '(none)'}; expected .npz, .npy or a Suite2p folder")
