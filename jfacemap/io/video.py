"""Grayscale video in and out through the ffmpeg binary that imageio-ffmpeg ships.

Frames are (H, W) uint8, batches (B, H, W) uint8, in the stored orientation
(`-noautorotate`), numbered in the order ffmpeg decodes and shows them.
Three ffmpeg habits shape this module:

- Container metadata (duration, nb_frames) lies for truncated files, so frame
  counts come from decoding (or, with `exact=False`, from counting packets).
- Pipe output defaults to constant frame rate: ffmpeg silently duplicates or
  drops frames where timestamps jump. Every read passes `-fps_mode
  passthrough`, one output frame per decoded frame.
- Seeking is by time, and mp4 seeks by decode time. Frame k is found through
  the packets' presentation times (`-c copy -f framecrc`, no decoding): seek
  just before the last keyframe at or before k, let ffmpeg's accurate seek
  drop what precedes it, skip the rest here. Where that is unsafe (no
  timestamps, as in AVI with B-frames; MPEG-TS, whose seeks land late; any
  demuxing error) reads decode from frame 0 and skip.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import imageio_ffmpeg
import numpy as np

from jfacemap.io.atomic import atomic_path
from jfacemap.io.inputs import existing_file

__all__ = ["VideoError", "VideoInfo", "video_info", "iter_chunks", "read_frames",
           "VideoWriter", "write_video"]

# A new ffmpeg process plus a seek costs about as much as decoding this many
# frames; `read_frames` keeps decoding across smaller gaps.
_SEEK_COST_FRAMES = 48
# Demuxers whose seeks land on a keyframe at or before the asked time.
_SEEKABLE = {"mov", "mp4", "matroska", "webm", "avi"}


class VideoError(ValueError):
    """A video cannot be read or written; the message is one line naming the file."""


@dataclass(frozen=True)
class VideoInfo:
    """`n_frames` decodable frames of `height` x `width` px at `fps` Hz (average rate)."""

    path: Path
    n_frames: int
    height: int
    width: int
    fps: float


def _checked(path: str | Path) -> Path:
    return existing_file(path, "video", VideoError)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


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


def video_info(path: str | Path, exact: bool = True) -> VideoInfo:
    """Frame count, size and frame rate of the video at `path`.

    `exact=True` decodes every frame inside ffmpeg (no pixels are piped) and
    counts what decodes: the number `iter_chunks` yields. `exact=False` counts
    packets without decoding, ~20x faster: the same for intact files and for
    files cut short (the cut packet is discarded), but a packet that is
    complete yet fails to decode still counts.
    """
    p = _checked(path)
    mode = ["-fps_mode", "passthrough"] if exact else ["-c", "copy"]
    res = _run(p, ["-stats", *_input_args(p), *mode, "-f", "null", "-"])
    height, width, fps = _parse_stream(p, res.stderr)
    counts = re.findall(r"frame=\s*(\d+)", res.stderr)
    if not counts or int(counts[-1]) == 0:
        raise VideoError(f"{p}: contains no decodable frames")
    return VideoInfo(p, int(counts[-1]), height, width, fps)


@dataclass(frozen=True)
class _Index:
    """Packet timing: frame k is shown at times[k] s; keys are keyframe indices (sorted)."""

    times: np.ndarray
    tick: float  # the stream's time base, s
    keys: np.ndarray

    def seek_time(self, k: int) -> float:
        """A time for `-ss` at which ffmpeg's accurate seek keeps frame k but not k-1.

        ffmpeg rounds the seek offset to the stream's time base, so a midpoint
        between frames one tick apart (AVI) can round either way; 0.4 ticks
        before frame k rounds onto it, and >= 2 us survives `-ss`'s
        microsecond resolution for very fine time bases.
        """
        gap = self.times[k] - self.times[k - 1]
        return float(self.times[k] - min(max(0.4 * self.tick, 2e-6), gap / 2))

    def key_before(self, k: np.ndarray | int) -> np.ndarray:
        """Index of the last keyframe at or before frame(s) k."""
        return self.keys[np.maximum(np.searchsorted(self.keys, k, side="right") - 1, 0)]


def _packet_index(p: Path) -> _Index | None:
    """Timing of every video packet, read without decoding; None where seeking is unsafe.

    Unsafe: a container outside _SEEKABLE, a packet without a timestamp, two
    frames at one time, or any demuxing error (a damaged file may hold
    packets that do not decode, which would shift every index after them).
    """
    res = _run(p, ["-loglevel", "level+info", *_input_args(p), "-c", "copy", "-f", "framecrc", "-"])
    fmt = re.search(r"Input #0, ([\w,]+), from", res.stderr)
    if (res.returncode != 0 or "[error]" in res.stderr or "[fatal]" in res.stderr
            or not fmt or not _SEEKABLE & set(fmt.group(1).split(","))):
        return None
    text = res.stdout.decode("ascii", "replace")
    tb = re.search(r"#tb 0: (\d+)/(\d+)", text)
    rows = [[c.strip() for c in ln.split(",")] for ln in text.splitlines()
            if ln and not ln.startswith("#")]
    if not tb or not rows:
        return None
    pts = np.asarray([int(r[2]) for r in rows], dtype=np.int64)
    ticks = np.sort(pts)
    if ticks[0] == np.iinfo(np.int64).min or np.any(np.diff(ticks) <= 0):
        return None
    # framecrc prints a packet's flags (F=) only when they are not just "keyframe".
    key_ticks = np.sort(pts[[not any(c.startswith("F=") for c in r[6:]) for r in rows]])
    keys = np.searchsorted(ticks, key_ticks) if len(key_ticks) else np.zeros(1, np.int64)
    tick = int(tb.group(1)) / int(tb.group(2))
    return _Index(ticks * tick, tick, keys)


def _frames_from(p: Path, start: int, index: _Index | None) -> Iterator[tuple[int, int, bytes]]:
    """(height, width, gray bytes) of frames start, start+1, ... to the end.

    Seeks to the keyframe at or before `start`, not to `start` itself: mp4
    seeks by decode time and would land on the next keyframe, which is
    decoded before (and shown after) the B-frames in front of it.
    """
    seek: list[str] = []
    first = 0
    if start > 0 and index is not None:
        if start >= len(index.times):
            return
        first = int(index.key_before(start))
        if first > 0:
            seek = ["-ss", f"{index.seek_time(first):.6f}"]
    gen = imageio_ffmpeg.read_frames(
        str(p), pix_fmt="gray", bits_per_pixel=8, input_params=[*seek, *_INPUT_OPTIONS],
        output_params=["-map", "0:V:0", "-an", "-sn", "-dn", "-fps_mode", "passthrough"],
    )
    try:
        try:
            meta = next(gen)
        except (OSError, RuntimeError) as err:
            raise _open_failure(p, str(err)) from None
        width, height = meta["size"]
        k = first
        while True:
            try:
                frame = next(gen)
            except StopIteration:
                return
            except RuntimeError as err:
                raise VideoError(f"{p}: decoding failed at frame {k}: {_last_line(str(err))}") from None
            if k >= start:
                yield height, width, frame
            k += 1
    finally:
        gen.close()  # stops ffmpeg when the caller stops early


def iter_chunks(
    path: str | Path, chunk_size: int = 256, start: int = 0, stop: int | None = None
) -> Iterator[np.ndarray]:
    """Frames start..stop-1 as (B, H, W) uint8 chunks, B <= chunk_size, holding one chunk at a time.

    Like slicing the full decoded sequence: `start` past the end gives
    nothing, `stop=None` means the end.
    """
    if chunk_size < 1 or start < 0 or (stop is not None and stop < 0):
        raise ValueError(f"need chunk_size >= 1, start >= 0, stop >= 0; got {chunk_size}, {start}, {stop}")
    p = _checked(path)
    if stop is not None and stop <= start:
        return
    index = _packet_index(p) if start > 0 else None
    wanted = None if stop is None else stop - start
    chunk: np.ndarray | None = None
    fill = got = 0
    for height, width, frame in _frames_from(p, start, index):
        if chunk is None:
            size = chunk_size if wanted is None else min(chunk_size, wanted - got)
            chunk, fill = np.empty((size, height, width), np.uint8), 0
        chunk[fill] = np.frombuffer(frame, np.uint8).reshape(height, width)
        fill, got = fill + 1, got + 1
        if fill == len(chunk):
            yield chunk
            chunk = None
        if got == wanted:
            return
    if chunk is not None:
        yield chunk[:fill]
    if start == 0 and got == 0:
        raise VideoError(f"{p}: contains no decodable frames")


def read_frames(path: str | Path, indices: Iterable[int]) -> np.ndarray:
    """Frames at `indices` (any order, repeats allowed) as (N, H, W) uint8.

    Equal to indexing the full sequential read. Wanted frames share one
    ffmpeg run unless a keyframe lies far enough past the previous one for a
    seek to save decoding. VideoError names the valid range for a bad index.
    """
    p = _checked(path)
    idx = np.asarray(list(indices), dtype=np.int64).reshape(-1)
    if len(idx) == 0:
        info = video_info(p, exact=False)
        return np.zeros((0, info.height, info.width), np.uint8)
    wanted = np.unique(idx)
    if wanted[0] < 0:
        raise _out_of_range(p, int(wanted[0]))
    index = _packet_index(p)
    key_before = np.zeros_like(wanted) if index is None else index.key_before(wanted)
    splits = np.flatnonzero(key_before[1:] > wanted[:-1] + _SEEK_COST_FRAMES) + 1
    found: dict[int, np.ndarray] = {}
    for group in np.split(wanted, splits):
        k, last, need = int(group[0]), int(group[-1]), set(group.tolist())
        for height, width, frame in _frames_from(p, k, index):
            if k in need:
                found[k] = np.frombuffer(frame, np.uint8).reshape(height, width)
            if k == last:
                break
            k += 1
        if last not in found:
            raise _out_of_range(p, last)
    return np.stack([found[i] for i in idx.tolist()])


def _out_of_range(p: Path, index: int) -> VideoError:
    n = video_info(p).n_frames
    return VideoError(f"{p}: frame index {index} out of range; valid indices are 0..{n - 1}")


class VideoWriter:
    """Write (H, W) or (B, H, W) uint8 gray frames at `fps` Hz to a video file, atomically.

    `lossless=True` keeps pixels exact: libx264 at `-qp 0` in 4:0:0 gray
    (mp4, mov, mkv, avi) or `codec="ffv1"` (mkv, avi, mov). Otherwise libx264
    at `crf` in yuv420p, which every player shows but which needs even sizes,
    so odd heights or widths are written in gray instead (padding would
    change the size read back). Size defaults to the first frame's. Frames go
    to a temporary file renamed onto `path` by `close()`; an exception in the
    `with` block deletes it. `extra_args` are extra ffmpeg output options.
    """

    def __init__(
        self, path: str | Path, fps: float, height: int | None = None, width: int | None = None,
        codec: str = "libx264", lossless: bool = False, crf: int = 17,
        pix_fmt: str | None = None, extra_args: Sequence[str] = (),
    ) -> None:
        if not fps > 0:
            raise ValueError(f"{path}: fps must be positive, got {fps}")
        if lossless and codec not in ("libx264", "ffv1"):
            raise ValueError(f"{path}: lossless needs codec libx264 or ffv1, not {codec}")
        self.path, self.fps, self.codec, self.lossless = Path(path), fps, codec, lossless
        self.crf, self.pix_fmt, self.extra_args = crf, pix_fmt, list(extra_args)
        self.height, self.width, self.n_written = height, width, 0
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._proc: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()  # a file, not a pipe: ffmpeg never blocks on it
        self._closed = False

    def _start(self, height: int, width: int) -> None:
        self.height, self.width = height, width
        even = height % 2 == 0 and width % 2 == 0
        pix_fmt = self.pix_fmt or (
            "yuv420p" if self.codec not in ("libx264", "ffv1", "libx265")
            or (self.codec == "libx264" and even and not self.lossless) else "gray")
        if self.codec == "libx264":
            quality = ["-qp", "0"] if self.lossless else ["-crf", str(self.crf)]
        else:
            quality = ["-crf", str(self.crf)] if self.codec == "libx265" else []
        rate = Fraction(self.fps).limit_denominator(100_000)
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
               "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{width}x{height}",
               "-r", str(rate), "-i", "-", "-an", "-c:v", self.codec, "-pix_fmt", pix_fmt,
               *quality, *self.extra_args, str(self._tmp)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=self._log)

    def write(self, frames: np.ndarray) -> None:
        """Append one (H, W) frame or a (B, H, W) batch of uint8 gray frames."""
        if self._closed:
            raise VideoError(f"{self.path}: writer is closed")
        frames = np.asarray(frames)
        frames = frames[None] if frames.ndim == 2 else frames
        if frames.ndim != 3 or frames.dtype != np.uint8:
            raise VideoError(f"{self.path}: frames must be (H, W) or (B, H, W) uint8, "
                             f"got {frames.dtype} {frames.shape}")
        if self._proc is None:
            self._start(self.height or frames.shape[1], self.width or frames.shape[2])
        if frames.shape[1:] != (self.height, self.width):
            raise VideoError(f"{self.path}: frame size {frames.shape[1:]} differs from the "
                             f"video's {(self.height, self.width)}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frames).tobytes())
        except BrokenPipeError:
            raise VideoError(f"{self.path}: ffmpeg stopped: {self._ffmpeg_said()}") from None
        self.n_written += len(frames)

    def _ffmpeg_said(self) -> str:
        self._proc.wait()
        self._log.seek(0)
        return _last_line(self._log.read().decode("utf-8", "replace"))

    def close(self) -> None:
        """Finish the file and move it onto `path`; VideoError if ffmpeg failed or no frame came."""
        if self._closed:
            return
        try:
            if self._proc is None:
                raise VideoError(f"{self.path}: no frames were written")
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass  # ffmpeg already quit; its exit status says why
            if self._proc.wait() != 0:
                raise VideoError(f"{self.path}: ffmpeg could not write the video: {self._ffmpeg_said()}")
        except BaseException as err:
            self._abort(err)
            raise
        self._closed = True
        self._log.close()
        self._atomic.__exit__(None, None, None)

    def _abort(self, err: BaseException) -> None:
        """Stop ffmpeg and delete the temporary file."""
        if self._closed:
            return
        self._closed = True
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._log.close()
        try:
            self._atomic.__exit__(type(err), err, err.__traceback__)
        except BaseException:
            pass  # atomic_path re-raises `err`, which our caller raises anyway

    def __del__(self) -> None:
        # A writer dropped without close() must not leave its temporary file behind.
        if not getattr(self, "_closed", True):
            self._abort(VideoError(f"{self.path}: writer was never closed"))

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
        else:
            self._abort(exc)


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float, **kw) -> Path:
    """Write an iterable of (H, W) frames or (B, H, W) batches to `path`; see `VideoWriter`."""
    with VideoWriter(path, fps, **kw) as writer:
        for batch in frames:
            writer.write(batch)
    return Path(path)
