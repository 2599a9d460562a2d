"""Grayscale video in and out through the ffmpeg binary that imageio-ffmpeg ships.

Frames are (H, W) uint8, batches (B, H, W) uint8, in the stored orientation
(`-noautorotate`), numbered in presentation order. Frame k is always what
decoding from frame 0 shows k-th; a frame that cannot be decoded keeps its
number (reads raise `VideoError` for it, whole-video reads mark it invalid).
What shapes this module:

- Container metadata lies for truncated files, so counts come from the
  packets (`exact=False`) or from decoding (`exact=True`).
- Pipe output defaults to constant frame rate: every read passes `-fps_mode
  passthrough`, one output frame per decoded frame.
- A "keyframe" is not always a place to start decoding: open-GOP I-frames
  and intra-refresh recovery points need earlier pictures. Reads seek only
  to keyframes shown to be clean (an IDR picture, checked in the bitstream,
  or an intra-only stream) and watch ffmpeg's log; other seeks, and any read
  that meets a decoding error, go through a per-video index of decoded-frame
  checksums (`video_index.frames`, one decoding pass, cached) and every frame
  read after a seek must match it, else the read starts from an earlier
  keyframe. Files without usable timestamps (AVI with B-frames, MPEG-TS) are
  read from frame 0.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import imageio_ffmpeg
import numpy as np

from jfacemap.io import video_index
from jfacemap.io.video_errors import VideoError
from jfacemap.io.inputs import existing_file
from jfacemap.io.video_writer import VideoWriter, write_video  # re-exported: one entry point for video

__all__ = ["VideoError", "VideoInfo", "video_info", "iter_chunks", "read_frames",
           "VideoWriter", "write_video"]

# A new ffmpeg process plus a seek costs about as much as decoding this many
# frames; `read_frames` keeps decoding across smaller gaps.
_SEEK_COST_FRAMES = 48


@dataclass(frozen=True)
class VideoInfo:
    """`n_frames` frame slots of `height` x `width` px at `fps` Hz (average rate).

    A slot is a shown frame the file holds a packet for, decodable or not, so
    frame numbers after a damaged stretch stay right. `undecodable` lists the
    slots that do not decode (or decode concealed); only `exact=True` finds
    them, `exact=False` gives ().
    """

    path: Path
    n_frames: int
    height: int
    width: int
    fps: float
    undecodable: tuple[int, ...] = ()


def _checked(path: str | Path) -> Path:
    return existing_file(path, "video", VideoError)


def _open_failure(p: Path, stderr: str) -> VideoError:
    """ffmpeg's complaint about opening `p` as a one-line VideoError."""
    if "matches no streams" in stderr or "does not contain any stream" in stderr:
        return VideoError(f"{p}: has no video stream")
    if "Permission denied" in stderr:
        return VideoError(f"{p}: permission denied")
    if "moov atom not found" in stderr:
        return VideoError(f"{p}: not a video (ffmpeg could not decode it: no 'moov' index, "
                          "so not an mp4/mov, or one cut short while recording)")
    return VideoError(f"{p}: not a video (ffmpeg could not decode it)")


def _run(p: Path, args: Sequence[str]) -> subprocess.CompletedProcess:
    """Run ffmpeg on `p`; stderr comes back as text. VideoError if it could not open `p`."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
    res = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    res.stderr = res.stderr.decode("utf-8", "replace")
    if res.returncode != 0 and "Output #0" not in res.stderr:
        raise _open_failure(p, res.stderr)
    return res


# -noautorotate keeps the stored pixels; +discardcorrupt drops a frame cut
# off by truncation (AVI would otherwise decode it half grey).
_INPUT_OPTIONS = ["-noautorotate", "-fflags", "+discardcorrupt"]


def _input_args(p: Path) -> list[str]:
    # 0:V is "video, not cover art".
    return [*_INPUT_OPTIONS, "-i", str(p), "-map", "0:V:0", "-an", "-sn", "-dn"]


def _parse_stream(p: Path, stderr: str) -> tuple[int, int, float]:
    """(height, width, fps) of the first video stream in ffmpeg's input header."""
    for line in stderr.split("Output #0")[0].splitlines():
        m = re.search(r"Stream #0:\d+.*?: Video: (.*)", line)
        size = m and re.search(r"[ ,](\d+)x(\d+)[ ,\n]", m.group(1) + "\n")
        if size and "attached pic" not in line:
            rates = {kind: float(v) * (1000 if k else 1)
                     for v, k, kind in re.findall(r"([\d.]+)(k?) (fps|tbr)", line)}
            fps = rates.get("fps") or rates.get("tbr") or float("nan")
            return int(size.group(2)), int(size.group(1)), fps
    raise VideoError(f"{p}: has no video stream")


def _probe(p: Path) -> tuple[video_index.Packets | None, tuple[int, int, float]]:
    """The packet index (None: no usable timing) and (height, width, fps); cached per file version."""
    index, log = video_index.packets(p, _run)
    return index, _parse_stream(p, log)


def video_info(path: str | Path, exact: bool = True) -> VideoInfo:
    """Frame count, size and frame rate of the video at `path`.

    `exact=False` counts packets without decoding (~20x faster): right for
    intact files and for files cut short (the cut packet is discarded).
    `exact=True` decodes every frame inside ffmpeg (no pixels are piped) and
    also finds the frames that do not decode (`undecodable`); its count is
    the number of frames `iter_chunks` yields. Where timestamps are unusable
    (no slots to keep), it counts the frames that decode.
    """
    p = _checked(path)
    index, (height, width, fps) = _probe(p)
    if index is not None and index.seekable:
        frames = video_index.frames(p, _run, index) if exact else None
        if frames is not None or not exact:
            if not (frames.outputs.any() if frames is not None else index.n):
                raise VideoError(f"{p}: contains no decodable frames")
            return VideoInfo(p, index.n, height, width, fps, frames.undecodable if frames else ())
    mode = ["-fps_mode", "passthrough"] if exact else ["-c", "copy"]
    res = _run(p, ["-stats", *_input_args(p), *mode, "-f", "null", "-"])
    counts = re.findall(r"frame=\s*(\d+)", res.stderr)
    if not counts or int(counts[-1]) == 0:
        raise VideoError(f"{p}: contains no decodable frames")
    return VideoInfo(p, int(counts[-1]), height, width, fps)


class _Untrusted(Exception):
    """A fast read met a decoding error (or lost frames) before slot `slot`."""

    def __init__(self, slot: int):
        super().__init__(slot)
        self.slot = slot


class _Decoding:
    """One ffmpeg process piping gray frames from `seek` s on (None: from the start).

    Its log (level+warning) goes to a file, not a pipe, so ffmpeg never
    blocks on it; `trouble()` says whether it reports a damaged frame so far.
    """

    def __init__(self, p: Path, seek: float | None, size: tuple[int, int]):
        self.p, self.nbytes = p, size[0] * size[1]
        self.log = tempfile.TemporaryFile()
        self._seen = 0
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "level+warning",
               *([] if seek is None else ["-ss", f"{seek:.6f}"]), *_input_args(p),
               "-fps_mode", "passthrough", "-pix_fmt", "gray", "-f", "rawvideo", "-"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log,
                                     stdin=subprocess.DEVNULL, bufsize=4 * self.nbytes)

    def frames(self) -> Iterator[bytes]:
        while True:
            buf = self.proc.stdout.read(self.nbytes)
            if len(buf) < self.nbytes:
                return
            yield buf

    def text(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def trouble(self) -> bool:
        """ffmpeg logged an error or a concealed / corrupt frame (checked only when the log grew)."""
        size = os.fstat(self.log.fileno()).st_size
        if size == self._seen:
            return False
        self._seen = size
        return bool(video_index.TROUBLE.search(self.text()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.stdout.close()
        self.proc.wait()
        self.log.close()


def _as_frame(buf: bytes, size: tuple[int, int]) -> np.ndarray:
    return np.frombuffer(buf, np.uint8).reshape(size)


def _slots(p: Path, start: int, stop: int | None) -> Iterator[tuple[int, np.ndarray | None]]:
    """(k, frame k or None where it does not decode) for k = start..stop-1 (stop None: the end)."""
    index, (height, width, _) = _probe(p)
    size = (height, width)
    if index is None or not index.seekable:
        yield from _plain(p, start, stop, size)
        return
    stop = index.n if stop is None else min(stop, index.n)
    if start >= stop:
        return
    try:
        yield from _fast(p, index, start, stop, size)
    except _Untrusted as err:
        yield from _exact(p, index, err.slot, stop, size)


def _plain(p: Path, start: int, stop: int | None, size) -> Iterator[tuple[int, np.ndarray]]:
    """No timestamps to number frames by: decode from frame 0, count what comes out."""
    dec = _Decoding(p, None, size)
    try:
        for k, buf in enumerate(dec.frames()):
            if stop is not None and k >= stop:
                return
            if k >= start:
                yield k, _as_frame(buf, size)
        if dec.proc.wait() != 0 and "Output #0" not in dec.text():
            raise _open_failure(p, dec.text())
    finally:
        dec.close()


def _fast(p: Path, index, start: int, stop: int, size) -> Iterator[tuple[int, np.ndarray]]:
    """Decode from the last clean keyframe (or frame 0), numbering frames as they come.

    Raises _Untrusted at the first slot not known good: the log reports a
    decoding error, frames run out early, or the clean keyframe lies much
    further back than an unverified one (where the checked index may seek).
    """
    keys = index.keys[index.keys <= start]
    clean = keys[index.clean[: len(keys)]]
    first = int(clean[-1]) if len(clean) else 0
    if len(keys) and keys[-1] - first > _SEEK_COST_FRAMES and start - first > 4 * _SEEK_COST_FRAMES:
        raise _Untrusted(start)
    dec = _Decoding(p, index.seek_time(first) if first > 0 else None, size)
    k = first
    try:
        for buf in dec.frames():
            if dec.trouble():
                raise _Untrusted(max(k, start))
            if k >= start:
                yield k, _as_frame(buf, size)
            k += 1
            if k == stop:
                return
        dec.proc.wait()
        raise _Untrusted(max(k, start))  # fewer frames than packets, or a late error
    finally:
        dec.close()


def _exact(p: Path, index, start: int, stop: int, size) -> Iterator[tuple[int, np.ndarray | None]]:
    """Decode from keyframes at or before `start`, every frame checked against the decoded index.

    A seek whose frames differ from the index (the keyframe needs earlier
    pictures) is noted and the read restarts from an earlier keyframe; frame
    0 needs no seek. Frames already given out were checked, so a restart
    continues where the last one stopped.
    """
    frames = video_index.frames(p, _run, index)
    if frames is None:
        yield from _plain(p, start, stop, size)
        return
    k = start
    while k < stop:
        keys = [int(x) for x in index.keys if 0 < x <= k and int(x) not in frames.bad_keys]
        first = keys[-1] if keys else 0
        k = yield from _checked_run(p, index, frames, first, k, stop, size)


def _checked_run(p: Path, index, frames, first: int, k: int, stop: int, size):
    """One ffmpeg run from keyframe `first`, giving slots k..; returns the next slot to give."""
    expected = iter(np.repeat(np.arange(first, frames.n), frames.outputs[first:]))
    dec = _Decoding(p, index.seek_time(first) if first > 0 else None, size)
    try:
        for buf in dec.frames():
            slot = next(expected, None)
            if slot is None or slot >= stop:
                break
            good = frames.valid[slot] and (zlib.adler32(buf, 0) & 0xFFFFFFFF) == frames.checksum[slot]
            if frames.valid[slot] and not good:
                break
            while k < slot:  # slots that produce no frame
                yield k, None
                k += 1
            if slot == k:
                yield k, _as_frame(buf, size) if good else None
                k += 1
        else:
            slot = next(expected, None)
        if slot is None or slot >= stop:  # every slot up to `stop` was given
            while k < stop:
                yield k, None
                k += 1
            return k
    finally:
        dec.close()
    if first == 0:
        raise VideoError(f"{p}: decoding frame {k} gave other pixels than the first time (ffmpeg is not deterministic here)")
    frames.bad_keys.add(first)
    return k


def iter_chunks(
    path: str | Path, chunk_size: int = 256, start: int = 0, stop: int | None = None,
    with_valid: bool = False,
) -> Iterator[np.ndarray] | Iterator[tuple[np.ndarray, np.ndarray]]:
    """Frames start..stop-1 as (B, H, W) uint8 chunks, B <= chunk_size, holding one chunk at a time.

    Like slicing the full decoded sequence: `start` past the end gives
    nothing, `stop=None` means the end. A frame that does not decode is
    all zeros, so later frames keep their numbers; `with_valid=True` yields
    `(chunk, valid)` pairs, valid (B,) bool False for those frames.
    """
    if chunk_size < 1 or start < 0 or (stop is not None and stop < 0):
        raise ValueError(f"need chunk_size >= 1, start >= 0, stop >= 0; got {chunk_size}, {start}, {stop}")
    p = _checked(path)
    if stop is not None and stop <= start:
        return
    chunk: np.ndarray | None = None
    valid = np.zeros(0, bool)
    got = fill = 0
    for _, frame in _slots(p, start, stop):
        if chunk is None:
            n = chunk_size if stop is None else min(chunk_size, stop - start - got)
            shape = (n, *frame.shape) if frame is not None else (n, *_probe(p)[1][:2])
            chunk, valid, fill = np.zeros(shape, np.uint8), np.zeros(n, bool), 0
        if frame is not None:
            chunk[fill], valid[fill] = frame, True
        fill, got = fill + 1, got + 1
        if fill == len(chunk):
            yield (chunk, valid) if with_valid else chunk
            chunk = None
    if chunk is not None:
        yield (chunk[:fill], valid[:fill]) if with_valid else chunk[:fill]
    if start == 0 and got == 0:
        raise VideoError(f"{p}: contains no decodable frames")


def read_frames(path: str | Path, indices: Iterable[int]) -> np.ndarray:
    """Frames at `indices` (any order, repeats allowed) as (N, H, W) uint8.

    Equal to indexing the full sequential read. Wanted frames share one
    ffmpeg run unless a keyframe lies far enough past the previous one for a
    seek to save decoding. VideoError names the valid range for a bad index,
    and the index of a frame that does not decode.
    """
    p = _checked(path)
    idx = np.asarray(list(indices), dtype=np.int64).reshape(-1)
    if len(idx) == 0:
        info = video_info(p, exact=False)
        return np.zeros((0, info.height, info.width), np.uint8)
    wanted = np.unique(idx)
    if wanted[0] < 0:
        raise _out_of_range(p, int(wanted[0]))
    index, _ = _probe(p)
    if index is None or not index.seekable:
        key_before = np.zeros_like(wanted)
    else:
        key_before = index.keys[np.maximum(np.searchsorted(index.keys, wanted, side="right") - 1, 0)]
    splits = np.flatnonzero(key_before[1:] > wanted[:-1] + _SEEK_COST_FRAMES) + 1
    found: dict[int, np.ndarray] = {}
    for group in np.split(wanted, splits):
        need = set(group.tolist())
        for k, frame in _slots(p, int(group[0]), int(group[-1]) + 1):
            if k in need and frame is None:
                raise VideoError(f"{p}: frame {k} cannot be decoded (the video is damaged there)")
            if k in need:
                found[k] = frame
        if int(group[-1]) not in found:
            raise _out_of_range(p, int(group[-1]))
    return np.stack([found[i] for i in idx.tolist()])


def _out_of_range(p: Path, index: int) -> VideoError:
    n = video_info(p).n_frames
    return VideoError(f"{p}: frame index {index} out of range; valid indices are 0..{n - 1}")

