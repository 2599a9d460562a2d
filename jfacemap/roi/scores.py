"""How well ROI traces match a known truth (a synthetic session's `roi_*` latents): the figures
`bench/bench_roi.py` and the demo report."""

from __future__ import annotations

import numpy as np

__all__ = ["event_scores", "trace_correlation", "roi_accuracy"]


def event_scores(found: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """(precision, recall) of (E, 2) onset/offset frame events: a found event counts when it overlaps
    a true one, a true one when a found one overlaps it (NaN when there are none to score)."""
    overlaps = lambda a, b: a[0] <= b[1] and b[0] <= a[1]  # noqa: E731
    precision = float(np.mean([any(overlaps(f, t) for t in true) for f in found])) if len(found) else float("nan")
    recall = float(np.mean([any(overlaps(f, t) for f in found) for t in true])) if len(true) else float("nan")
    return precision, recall


def trace_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r over the frames where both are finite (NaN if fewer than 3 or one is constant)."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() <= 2 or a[ok].std() == 0 or b[ok].std() == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def roi_accuracy(measured: dict, truth: dict) -> dict:
    """Pupil, blink and running accuracy of `measured` (a `_roi.npz`'s arrays) against `truth`
    (`roi_pupil_area` (T,) px^2, `roi_pupil_center` (T, 2) x, y px, `roi_blink` (T,) closed fraction,
    `roi_blink_intervals` (E, 2) frames, `roi_running` (T, 2) px/frame). Centre errors in px, running
    errors in px/frame (frame 0 left out: it has no previous frame)."""
    area, true_area = measured["pupil_area"], truth["roi_pupil_area"]
    both = np.isfinite(area) & np.isfinite(true_area)
    centre_err = np.linalg.norm(measured["pupil_center"][both] - truth["roi_pupil_center"][both], axis=1)
    open_eye = truth["roi_blink"] < 0.05
    precision, recall = event_scores(measured["blink_events"], truth["roi_blink_intervals"])
    run_err = np.abs(measured["running"][1:] - truth["roi_running"][1:])
    return {
        "pupil_area_r": trace_correlation(area, true_area),
        "pupil_area_ratio_median": float(np.median(area[both] / true_area[both])),
        "pupil_center_err_median_px": float(np.median(centre_err)),
        "pupil_center_err_p95_px": float(np.percentile(centre_err, 95)),
        "pupil_found_open_eye": float(np.isfinite(area[open_eye]).mean()),
        "blink_events": int(len(measured["blink_events"])), "blink_true": int(len(truth["roi_blink_intervals"])),
        "blink_precision": precision, "blink_recall": recall,
        "running_err_median_dx": float(np.median(run_err[:, 0])),
        "running_err_median_dy": float(np.median(run_err[:, 1])),
        "running_err_p95": float(np.percentile(run_err, 95)),
    }
