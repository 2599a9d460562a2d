"""Frames that arrive on a clock, newest first: a video played at its own rate, or a V4L2 camera.

A source runs a reader thread that puts each frame, as it arrives, into a
one-frame slot; `take()` returns the frame in the slot. A frame still in the
slot when the next one arrives is dropped (its index goes to `dropped`), so
a consumer slower than the source skips frames instead of lagging behind:
what it gets is at most one frame old. Indices count every frame the source
produced (0, 1, ...), so the frames taken are strictly increasing and the
gaps are the dropped ones.

    source = VideoClock("mouse.mp4")        # or Camera("/dev/video0"), or open_source(path)
    source.start()
    while (item := source.take()) is not None:
        index, arrival_s, frame = item      # arrival_s: seconds since start(); frame (H, W) uint8
    source.close()
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from jfacemap.io.video import iter_chunks, video_info
from jfacemap.live.tracker import LiveError

Item = tuple[int, float, np.ndarray]


class _Slot:
    """One frame between a producer and a consumer; putting over an untaken frame drops it."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item: Item | None = None
        self._ended = False
        self._error: BaseException | None = None
        self.dropped: list[int] = []

    def put(self, item: Item) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped.append(self._item[0])
            self._item = item
            self._cond.notify()

    def end(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._ended, self._error = True, error
            self._cond.notify()

    def take(self, timeout: float | None = None) -> Item | None:
        """The newest untaken frame (waits for one); None once the source has ended and all is taken."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._item is not None or self._ended, timeout):
                raise TimeoutError(f"no frame arrived within {timeout} s")
            if self._item is not None:
                item, self._item = self._item, None
                return item
            if self._error is not None:
                raise self._error
            return None


class _Source:
    """A reader thread feeding a `_Slot`; subclasses yield (H, W) uint8 frames from `_frames`,
    each at the moment it arrives."""

    frame_shape: tuple[int, int]
    fps: float

    def __init__(self, max_frames: int | None):
        if max_frames is not None and max_frames < 1:
            raise LiveError(f"max_frames must be >= 1, got {max_frames}")
        self.max_frames = max_frames
        self._slot = _Slot()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.produced = 0
        self.t0 = 0.0

    @property
    def dropped(self) -> list[int]:
        """Indices of the frames that arrived but were never taken (a newer one replaced them)."""
        return list(self._slot.dropped)

    def _frames(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def start(self) -> None:
        """Start the clock (frame 0 arrives now) and the reader thread."""
        self.t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True, name=type(self).__name__)
        self._thread.start()

    def _run(self) -> None:
        frames = self._frames()
        try:
            for frame in frames:
                if self._stop.is_set():
                    break
                self._slot.put((self.produced, time.perf_counter() - self.t0, frame))
                self.produced += 1
                if self.max_frames is not None and self.produced >= self.max_frames:
                    break
            self._slot.end()
        except BaseException as err:  # handed to the consumer, which raises it
            self._slot.end(err)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()  # stops ffmpeg when we stop early

    def take(self, timeout: float | None = None) -> Item | None:
        """(index, arrival_s, frame) of the newest frame not taken yet, waiting for one; None at the end."""
        return self._slot.take(timeout)

    def close(self) -> None:
        """Stop reading (frames not taken yet are not counted as dropped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


class VideoClock(_Source):
    """A video file played at its own frame rate: frame i arrives at start + i / (fps * speed).

    Frames are decoded ahead (in chunks of `chunk_size`) and released on the
    clock, which starts when the first chunk is decoded; if decoding falls behind the clock, frames arrive late (the
    arrival time says when). `speed` > 1 plays faster than real time.
    """

    def __init__(self, path: str | os.PathLike, *, speed: float = 1.0, max_frames: int | None = None,
                 chunk_size: int = 16):
        super().__init__(max_frames)
        self.path = Path(path)
        if not self.path.is_file():
            raise LiveError(f"{path}: no such video file")
        info = video_info(self.path, exact=False)  # VideoError (one line) if unreadable
        if not (info.fps > 0 and math.isfinite(info.fps)):
            raise LiveError(f"{path}: the video has no frame rate to play it at")
        if not speed > 0:
            raise LiveError(f"speed must be > 0, got {speed}")
        self.frame_shape, self.fps, self.speed, self.chunk_size = (info.height, info.width), info.fps, speed, chunk_size

    def _frames(self) -> Iterator[np.ndarray]:
        period = 1.0 / (self.fps * self.speed)
        i = 0
        stop = self.max_frames
        for chunk in iter_chunks(self.path, self.chunk_size, stop=stop):
            if i == 0:  # the clock starts with the first decoded frame: ffmpeg's start-up is not a delay
                self.t0 = time.perf_counter()
            for frame in chunk:
                wait = self.t0 + i * period - time.perf_counter()
                if wait > 0 and self._stop.wait(wait):
                    return
                yield frame
                i += 1


class Camera(_Source):
    """A V4L2 camera (`/dev/videoN`) read through the bundled ffmpeg as gray frames.

    `input_args` go before `-i` (e.g. ["-framerate", "60", "-video_size", "640x480"]).
    """

    def __init__(self, device: str | os.PathLike, *, max_frames: int | None = None,
                 input_args: tuple[str, ...] = ()):
        super().__init__(max_frames)
        self.device = str(device)
        if not Path(device).exists():
            raise LiveError(f"{device}: no such camera device")
        import imageio_ffmpeg

        self._reader = imageio_ffmpeg.read_frames(self.device, pix_fmt="gray", bits_per_pixel=8,
                                                  input_params=["-f", "v4l2", *input_args])
        try:
            meta = next(self._reader)  # ffmpeg's stream description: size, fps
        except (OSError, RuntimeError, StopIteration) as err:
            text = str(err).strip().splitlines()
            raise LiveError(f"{device}: cannot open the camera ({text[-1] if text else type(err).__name__})") from err
        width, height = meta["size"]
        self.frame_shape, self.fps = (int(height), int(width)), float(meta.get("fps") or 0.0)

    def close(self) -> None:
        super().close()
        if self._thread is None:  # never started: stop the ffmpeg that the constructor opened
            self._reader.close()

    def _frames(self) -> Iterator[np.ndarray]:
        shape = self.frame_shape
        try:
            for buf in self._reader:
                yield np.frombuffer(buf, np.uint8).reshape(shape)
        finally:
            self._reader.close()


def open_source(source: str | os.PathLike, *, max_frames: int | None = None, speed: float = 1.0) -> _Source:
    """A `Camera` for a path under /dev/, else a `VideoClock`."""
    if str(source).startswith("/dev/"):
        return Camera(source, max_frames=max_frames)
    return VideoClock(source, max_frames=max_frames, speed=speed)
