"""ROI measures, as Facemap's: pupil, blink and running from rectangles of the video.

  box.py       ROI rectangles (x0, y0, x1, y1, ends exclusive): parsing, checks, crops
  pupil.py     pupil area, centre, axes, angle per frame (dark or bright pupil)
  ellipse.py   direct least-squares ellipse fits, many point sets at once
  blink.py     blink trace (the eye's summed darkness) and blink events
  running.py   (dx, dy) between consecutive frames by phase correlation (jitted, sub-pixel)
  pipeline.py  a whole video: every ROI asked, chunk by chunk, resumable
  scores.py    accuracy against a known truth (synthetic sessions)

    from jfacemap.roi import RoiRequest, measure_pupil, pupil_threshold, measure_running, roi_video
    threshold = pupil_threshold(sample_frames, box)
    trace = measure_pupil(frames, box, threshold)      # .area (T,), .center (T, 2), .axes, .angle
    shifts = measure_running(frames, box)             # (T, 2) dx, dy px / frame
    arrays = roi_video("mouse.mp4", RoiRequest(pupil=(30, 90, 95, 140), running=(12, 199, 102, 248)))

Every function over frames is pure over a chunk (T, H, W) uint8; the
per-video levels (pupil threshold, eye level) come from a sample of frames.
The SVD of ROIs is the streamed movie / motion SVD of `jfacemap.encode`
(`movie_svd(video, rois=...)`); `jfacemap roi --svd-roi` runs it.
"""

from jfacemap.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "Box": "box", "RoiError": "box", "parse_box": "box", "check_box": "box",
    "PupilSettings": "pupil", "PupilTrace": "pupil", "pupil_threshold": "pupil", "measure_pupil": "pupil",
    "fit_ellipse": "ellipse", "fit_ellipses": "ellipse",
    "eye_level": "blink", "blink_trace": "blink", "normalise_blink": "blink", "blink_events": "blink",
    "phase_shifts": "running", "measure_running": "running",
    "RoiRequest": "pipeline", "roi_video": "pipeline", "roi_path": "pipeline", "check_request": "pipeline",
    "roi_accuracy": "scores",
})
