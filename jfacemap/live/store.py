"""An append-only h5 log of live keypoints, readable while it grows and intact after a kill.

Layout (one row per tracked frame, rows in the order tracked):

    keypoints   (n, K, 3) float32   x, y in frame pixels, likelihood
    frame_index (n,) int64          the source's frame number (gaps: dropped frames); fill -1
    arrival_s   (n,) float64        when the frame arrived, seconds since the source started
    tracked_s   (n,) float64        when its keypoints were ready, same clock
    attrs: bodyparts, frame_shape, fps, source; after a clean close also
           frames_seen, dropped (count), complete = True

HDF5 single-writer / multiple-reader mode (`libver="latest"`, `swmr_mode`):
rows are buffered and written every `flush_every` frames, then flushed, so a
reader (`read_keypoint_log`, which opens with `swmr=True`) sees whole
flushes, and a writer killed at any moment leaves a file that opens with
every row flushed before the kill. The datasets are resized one after the
other, so a reader can meet a row whose data is not written yet: it reads
up to the shortest dataset and stops at the first frame_index of -1.
A killed writer leaves the file marked open; `swmr=True` reads it as it is
(plain `h5py.File(path)` refuses until HDF5's `h5clear -s` clears the mark).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

_ROW_FIELDS = ("frame_index", "arrival_s", "tracked_s")


class KeypointLog:
    """Append rows (frame index, arrival time, tracked time, (K, 3) keypoints) to a new h5 file."""

    def __init__(self, path: str | os.PathLike, bodyparts: Sequence[str], *, flush_every: int = 8,
                 attrs: dict | None = None):
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        self.path = Path(path)
        k = len(bodyparts)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = h5py.File(self.path, "w", libver="latest")
        self.file.attrs["bodyparts"] = [str(b) for b in bodyparts]
        for key, value in (attrs or {}).items():
            self.file.attrs[key] = value
        chunk = max(64, flush_every)
        self._data = {
            "keypoints": self.file.create_dataset("keypoints", (0, k, 3), np.float32, maxshape=(None, k, 3),
                                                  chunks=(chunk, k, 3), fillvalue=np.nan),
            "frame_index": self.file.create_dataset("frame_index", (0,), np.int64, maxshape=(None,),
                                                    chunks=(chunk,), fillvalue=-1),
            "arrival_s": self.file.create_dataset("arrival_s", (0,), np.float64, maxshape=(None,),
                                                  chunks=(chunk,), fillvalue=np.nan),
            "tracked_s": self.file.create_dataset("tracked_s", (0,), np.float64, maxshape=(None,),
                                                  chunks=(chunk,), fillvalue=np.nan),
        }
        self.file.swmr_mode = True  # from here on: no new objects or attributes, readers may open
        self._buf = {"keypoints": np.zeros((flush_every, k, 3), np.float32),
                     **{f: np.zeros(flush_every, self._data[f].dtype) for f in _ROW_FIELDS}}
        self._fill = 0
        self.rows = 0  # rows on disk (flushed)

    def append(self, frame_index: int, arrival_s: float, tracked_s: float, keypoints: np.ndarray) -> None:
        """Add one row; written and flushed when `flush_every` rows are buffered."""
        i = self._fill
        self._buf["frame_index"][i], self._buf["arrival_s"][i], self._buf["tracked_s"][i] = \
            frame_index, arrival_s, tracked_s
        self._buf["keypoints"][i] = keypoints
        self._fill += 1
        if self._fill == len(self._buf["frame_index"]):
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows and flush them to disk (readers see them after this)."""
        n = self._fill
        if not n:
            return
        # frame_index last: a reader trusts a row once its frame_index is there (not -1)
        for name in ("keypoints", "arrival_s", "tracked_s", "frame_index"):
            data = self._data[name]
            data.resize(self.rows + n, axis=0)
            data[self.rows :] = self._buf[name][:n]
        self.file.flush()
        self.rows += n
        self._fill = 0

    def close(self, summary: dict | None = None) -> None:
        """Flush, close, and record `summary` (e.g. frames_seen, dropped) as attributes with complete = True."""
        if self.file is None:
            return
        self.flush()
        self.file.close()
        self.file = None
        try:  # attributes cannot change in SWMR mode: reopen, unless a reader holds the file
            with h5py.File(self.path, "r+", libver="latest") as f:
                for key, value in (summary or {}).items():
                    f.attrs[key] = value
                f.attrs["complete"] = True
        except OSError:
            pass

    def __enter__(self) -> "KeypointLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_keypoint_log(path: str | os.PathLike) -> dict:
    """The rows flushed so far of a log being written, killed, or complete.

    Returns {"keypoints": (n, K, 3) float32, "frame_index": (n,) int64, "arrival_s", "tracked_s":
    (n,) float64, "bodyparts": [K names], "complete": bool, and the other attributes}.
    """
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        n = min(f[name].shape[0] for name in ("keypoints", *_ROW_FIELDS))
        index = np.asarray(f["frame_index"][:n], np.int64)
        missing = np.flatnonzero(index < 0)
        n = int(missing[0]) if len(missing) else n
        out = {name: np.asarray(f[name][:n]) for name in ("keypoints", *_ROW_FIELDS)}
        attrs = {key: f.attrs[key] for key in f.attrs}
    out["bodyparts"] = [b.decode() if isinstance(b, bytes) else str(b) for b in attrs.pop("bodyparts")]
    out["complete"] = bool(attrs.pop("complete", False))
    return {**attrs, **out}
