"""One frame in, its keypoints out, at a steady latency: `LiveTracker`.

    tracker = LiveTracker(model, frame_shape=(H, W), bbox=None)   # compiles and warms up here
    keypoints = tracker(frame)       # (H, W) uint8 -> (K, 3) float32 x, y (frame pixels), likelihood
    tracker.stats()                  # {"frames", "median_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms"}

It is `jfacemap.track.inference.make_predict_fn` (the same pre-processing,
network and decoding as `track_video`) compiled ahead of time for batch 1,
so no call ever traces or compiles, and warmed up in the constructor (the
first calls of a compiled XLA program are slower: page faults, thread-pool
start). Each frame is copied into one reused (1, H, W) staging buffer.
"""

from __future__ import annotations

import time
from typing import Sequence

import jax
import numpy as np

from jfacemap.errors import JfacemapError
from jfacemap.nets.unet import FacemapUNet
from jfacemap.track.inference import make_predict_fn


class LiveError(JfacemapError):
    """Bad input to live tracking (a frame of the wrong shape, a missing source); one line."""


class LiveTracker:
    """A batch-1 tracker compiled for (H, W) uint8 frames; call it with one frame at a time.

    Args:
      model: the tracker network (its current weights are captured).
      frame_shape: (H, W) of every frame, pixels.
      bbox: (x0, x1, y0, y1) crop box in frame pixels; None = whole frame.
      warmup: untimed calls made in the constructor.
      flip_average: average every frame's outputs with its mirror image's (offline tracking
        does it for the frames a model that asks for it is unsure of: model.json `flip_average`).
        Off by default here: live tracking is bound by latency, it doubles the network time of
        a frame, and a gate would make the latency vary from frame to frame.
    """

    def __init__(self, model: FacemapUNet, frame_shape: Sequence[int], bbox: Sequence[float] | None = None,
                 *, warmup: int = 5, flip_average: bool = False):
        shape = tuple(int(n) for n in frame_shape)
        if len(shape) != 2 or min(shape) < 1:
            raise LiveError(f"frame_shape must be (H, W) with H, W >= 1, got {tuple(frame_shape)}")
        self.frame_shape = shape
        self.n_keypoints = model.n_keypoints
        # one device: a single frame cannot be split (JfacemapError for a bbox outside the frame)
        predict = make_predict_fn(model, bbox, shape, devices=jax.local_devices()[:1], flip_average=flip_average)
        self.geometry = predict.geometry
        self._run = predict.compiled((1, *shape), np.uint8)
        self._frame = np.zeros((1, *shape), np.uint8)  # the staging buffer every call reuses
        self._latency_ms = np.zeros(4096)  # grows by doubling; never per frame
        self._n = 0
        for _ in range(warmup):
            np.asarray(self._run(self._frame))

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """(H, W) uint8 frame -> (K, 3) float32: x, y in frame pixels, likelihood in [0, 1]."""
        if getattr(frame, "shape", None) != self.frame_shape or getattr(frame, "dtype", None) != np.uint8:
            raise LiveError(f"a frame must be {self.frame_shape} uint8, got "
                            f"{getattr(frame, 'shape', type(frame).__name__)} {getattr(frame, 'dtype', '')}".rstrip())
        start = time.perf_counter()
        self._frame[0] = frame
        keypoints = np.asarray(self._run(self._frame))[0]  # np.asarray waits for the result
        self._record((time.perf_counter() - start) * 1e3)
        return keypoints

    def _record(self, ms: float) -> None:
        if self._n == len(self._latency_ms):
            self._latency_ms = np.concatenate([self._latency_ms, np.zeros_like(self._latency_ms)])
        self._latency_ms[self._n] = ms
        self._n += 1

    @property
    def latencies_ms(self) -> np.ndarray:
        """(frames,) float64: each call's latency in ms, frame copy to keypoints on the host."""
        return self._latency_ms[: self._n].copy()

    def stats(self) -> dict:
        """Latency over the calls so far (warm-up excluded): frames, and median, p90, p99, max, mean in ms."""
        ms = self._latency_ms[: self._n]
        if not len(ms):
            return {"frames": 0, "median_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return {"frames": int(self._n), "median_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
                "max_ms": float(ms.max()), "mean_ms": float(ms.mean())}

    def reset_stats(self) -> None:
        """Forget the latencies recorded so far."""
        self._n = 0
