"""Writing grayscale videos through the ffmpeg binary that imageio-ffmpeg ships (see `jfacemap.io.video`)."""

from __future__ import annotations

import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import imageio_ffmpeg
import numpy as np

from jfacemap.io.atomic import atomic_path
from jfacemap.io.video_errors import VideoError, last_line as _last_line

__all__ = ["VideoWriter", "write_video"]


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
        except BrokenPipeError as err:
            raise VideoError(f"{self.path}: ffmpeg stopped: {self._ffmpeg_said()}") from err
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
