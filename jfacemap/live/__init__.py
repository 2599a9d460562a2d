"""Live tracking: frames as they arrive from a camera or a video played on its clock, one at a time.

  tracker.py   LiveTracker: one pre-compiled batch-1 function, frame -> (K, 3) keypoints, latency stats
  sources.py   frames on a clock: a video at its own frame rate, a V4L2 camera through ffmpeg;
               the newest frame wins, a frame not taken in time is dropped (counted)
  store.py     an h5 log of keypoints (SWMR): readable while it grows, intact after a kill
  causal_filter.py  CausalOutlierFilter: the offline outlier rules on past frames only, frame by frame
  session.py   run_live: source -> tracker -> (filter) -> log + a user callback, until the source ends

    from jfacemap.live import LiveTracker, VideoClock, run_live
    tracker = LiveTracker(model, frame_shape=(H, W))
    summary = run_live(VideoClock("mouse.mp4"), tracker, bodyparts, out="mouse_live.h5",
                       on_keypoints=lambda index, keypoints: ...)
"""

from jfacemap.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "LiveTracker": "tracker", "LiveError": "tracker",
    "VideoClock": "sources", "Camera": "sources", "open_source": "sources",
    "KeypointLog": "store", "read_keypoint_log": "store",
    "LiveSummary": "session", "run_live": "session", "CausalOutlierFilter": "causal_filter",
})
