"""The ROI traces (pupil, blink, running) under a few keypoint traces, on one time axis."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jfacemap.figures import pyplot
from jfacemap.figures.axes import window_label
from jfacemap.figures.session import save_figure


def plot_roi_traces(roi: dict[str, np.ndarray], fps: float, path: str | os.PathLike, seconds: float = 20.0,
                    keypoints: np.ndarray | None = None, bodyparts: list[str] | None = None,
                    truth: dict[str, np.ndarray] | None = None) -> Path:
    """Keypoint y traces (T, K, 3 px; up to 4 rows), then pupil area, blink and running dx, dy.

    roi: the arrays of a `<video>_roi.npz` (any of pupil_area (T,), blink (T,)
    with blink_events (E, 2), running (T, 2)). truth: the same names, drawn in
    grey beneath (e.g. a synthetic session's `roi_*` latents, prefix dropped).
    """
    plt = pyplot()
    truth = truth or {}
    n_total = next(len(v) for k, v in roi.items() if k in ("pupil_area", "blink", "running"))
    n_show = int(min(n_total, seconds * fps))
    t = np.arange(n_show) / fps
    rows: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    if keypoints is not None:
        names = list(bodyparts or [f"keypoint {k}" for k in range(keypoints.shape[1])])
        for k, name in list(enumerate(names))[:4]:
            rows.append((f"{name} y (px)", keypoints[:n_show, k, 1], None))
    if "pupil_area" in roi:
        rows.append(("pupil area (px²)", roi["pupil_area"][:n_show], truth.get("pupil_area")))
    if "blink" in roi:
        rows.append(("blink (open ~1)", roi["blink"][:n_show], None))
    if "running" in roi:
        ref = truth.get("running")
        for c, axis in enumerate("xy"):
            rows.append((f"running d{axis} (px/frame)", roi["running"][:n_show, c], None if ref is None else ref[:, c]))
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 0.9 * len(rows) + 0.8), sharex=True, squeeze=False,
                             layout="constrained")
    for ax, (label, trace, ref) in zip(axes[:, 0], rows):
        if ref is not None:
            ax.plot(t, np.asarray(ref)[:n_show], color="0.65", lw=1.8)
        ax.plot(t, trace, lw=0.8, color="k")
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
        if label.startswith("blink") and "blink_events" in roi:
            for on, off in np.asarray(roi["blink_events"]):
                if on < n_show:
                    ax.axvspan(on / fps, (off + 1) / fps, color="tab:red", alpha=0.25, lw=0)
    axes[-1, 0].set_xlabel("time (s)")
    grey = ", truth in grey" if truth else ""
    fig.suptitle(f"ROI traces{grey} (blinks shaded), {window_label(n_show, n_total, 1 / fps)}", fontsize=10)
    return save_figure(fig, path)
