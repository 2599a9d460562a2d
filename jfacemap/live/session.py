"""A live session: take the newest frame, track it, log it, hand it to the caller; until the source ends.

    summary = run_live(source, tracker, bodyparts, out="live.h5", on_keypoints=callback)

Each frame taken is tracked once, in order of arrival (the source numbers
them; a frame that arrived while the previous one was being tracked, and was
replaced by a newer one before it was taken, is dropped and listed in the
summary). `on_keypoints(frame_index, keypoints)` runs in the tracking loop
right after each frame: a slow callback delays the next frame (and so drops
frames), it never queues them.

With `outlier_filter` on, each frame's keypoints go through a
`CausalOutlierFilter` (the offline filter's rules, using past frames only)
before the log and the callback see them: both get the filtered keypoints,
and the summary counts the points flagged.

For the session the garbage collector's existing objects are frozen
(`gc.freeze()`): a full collection would otherwise walk every JAX object and
land as a spike of tens of ms inside some frame.
"""

from __future__ import annotations

import gc
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from jfacemap.live.causal_filter import CausalOutlierFilter
from jfacemap.live.sources import _Source
from jfacemap.live.store import KeypointLog
from jfacemap.live.tracker import LiveError, LiveTracker


@dataclass
class LiveSummary:
    """What a live session did. frames_seen: frames the source produced; tracked: frames tracked;
    dropped: indices of frames never tracked (ascending); seconds: wall time of the session;
    latency: tracker.stats() (ms); out: the h5 log, or None; flagged: with the outlier filter on,
    the fraction of tracked points (frames x keypoints) it flagged, per rule and in all ("mask"),
    else None."""

    frames_seen: int
    tracked: int
    dropped: list[int] = field(default_factory=list)
    seconds: float = 0.0
    latency: dict = field(default_factory=dict)
    out: str | None = None
    flagged: dict | None = None

    def line(self) -> str:
        """One line for a person: frames, drops, rate, latency, and the outliers flagged when filtered."""
        lat = self.latency
        where = ""
        if self.dropped:
            shown = ", ".join(map(str, self.dropped[:10])) + (", ..." if len(self.dropped) > 10 else "")
            where = f" (frames {shown})"
        rate = self.tracked / max(self.seconds, 1e-9)
        text = (f"tracked {self.tracked} of {self.frames_seen} frames in {self.seconds:.1f} s ({rate:.1f} frames/s), "
                f"dropped {len(self.dropped)}{where}")
        if lat.get("frames"):
            text += (f"; latency median {lat['median_ms']:.1f} ms, p90 {lat['p90_ms']:.1f}, "
                     f"p99 {lat['p99_ms']:.1f}, max {lat['max_ms']:.1f}")
        if self.flagged is not None:
            f = self.flagged
            rules = ", ".join(f"{name} {100 * f[name]:.2f}%" for name in ("likelihood", "jump", "median", "missing"))
            text += f"; outliers flagged {100 * f['mask']:.2f}% of points ({rules})"
        return text


def run_live(
    source: _Source,
    tracker: LiveTracker,
    bodyparts: Sequence[str],
    out: str | os.PathLike | None = None,
    *,
    on_keypoints: Callable[[int, np.ndarray], object] | None = None,
    flush_every: int = 8,
    outlier_filter: bool | CausalOutlierFilter = False,
) -> LiveSummary:
    """Track every frame `source` delivers until it ends (or Ctrl-C / an error: the log keeps what
    was flushed). Starts the source; closes it and the log.

    Args:
      source: a `VideoClock` or `Camera` (not started).
      tracker: a `LiveTracker` built for `source.frame_shape`.
      bodyparts: the names of the tracker's K keypoints.
      out: the h5 log to write (replaced if it exists), or None for none.
      on_keypoints: fn(frame_index, (K, 3) float32 keypoints) after each frame.
      flush_every: rows per write + flush of the log.
      outlier_filter: True for a `CausalOutlierFilter` with the offline filter's defaults at the
        source's frame rate, or one built with other rules; the log and `on_keypoints` then get
        the filtered keypoints (a flagged point holds its last accepted x, y; likelihood as tracked).
    Returns:
      a LiveSummary.
    """
    if tuple(source.frame_shape) != tracker.frame_shape:
        raise LiveError(f"the source's frames are {source.frame_shape} but the tracker is built for "
                        f"{tracker.frame_shape}")
    if len(bodyparts) != tracker.n_keypoints:
        raise LiveError(f"{len(bodyparts)} bodyparts for a tracker with {tracker.n_keypoints} keypoints")
    filt = outlier_filter if isinstance(outlier_filter, CausalOutlierFilter) else None
    if outlier_filter is True:
        if not (source.fps > 0 and math.isfinite(source.fps)):
            raise LiveError("the source has no frame rate, which the outlier filter needs (its windows are in seconds)")
        filt = CausalOutlierFilter(tracker.n_keypoints, source.fps)
    if filt is not None and filt.n_keypoints != tracker.n_keypoints:
        raise LiveError(f"the outlier filter is for {filt.n_keypoints} keypoints, the tracker has {tracker.n_keypoints}")
    log = None
    if out is not None:
        attrs = {"frame_shape": list(tracker.frame_shape), "fps": float(source.fps),
                 "source": str(getattr(source, "path", getattr(source, "device", "")))}
        if filt is not None:  # the log holds filtered keypoints: say so, and with which rules
            attrs["outlier_filter"] = json.dumps({**filt.rules, "fps": filt.fps})
        log = KeypointLog(out, bodyparts, flush_every=flush_every, attrs=attrs)
    taken: list[int] = []
    last = -1
    gc.collect()
    gc.freeze()
    source.start()
    try:
        while (item := source.take()) is not None:
            index, arrival_s, frame = item
            if index <= last:  # the source's contract; a breach would corrupt the log's order
                raise RuntimeError(f"frame {index} after frame {last}")
            last = index
            keypoints = tracker(frame)
            if filt is not None:
                keypoints, _ = filt(keypoints, index)
            if log is not None:
                log.append(index, arrival_s, time.perf_counter() - source.t0, keypoints)
            taken.append(index)
            if on_keypoints is not None:
                on_keypoints(index, keypoints)
    finally:
        seconds = time.perf_counter() - source.t0
        gc.unfreeze()
        source.close()
        seen = source.produced
        dropped = sorted(set(range(seen)) - set(taken))
        flagged = None if filt is None else filt.fractions
        if log is not None:
            log.close({"frames_seen": seen, "dropped": len(dropped),
                       **({} if flagged is None else {"flagged_fraction": flagged["mask"]})})
    return LiveSummary(seen, len(taken), dropped, seconds, tracker.stats(), None if out is None else str(out),
                       flagged)
