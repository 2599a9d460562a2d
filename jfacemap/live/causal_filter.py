"""Causal outlier rejection for live keypoints: `CausalOutlierFilter`, one (K, 3) frame at a time.

    filt = CausalOutlierFilter(n_keypoints=K, fps=50.0)      # the offline filter's defaults
    filtered, flagged = filt(keypoints, frame_index)         # (K, 3) float32, (K,) bool

The offline rules of `jfacemap.track.filter` (SPEC section 2), in the form
that sees only the current and earlier frames. Keyword arguments and their
defaults are `outlier_report`'s (read from its signature, so the two cannot
drift apart):

  1. likelihood: likelihood minus a *trailing* Gaussian baseline (the past
     half of the offline kernel: s.d. `likelihood_baseline_s` = 4 s, truncated
     at 4 s.d., previous frames only) below `likelihood_threshold_sd` = -8 x
     the s.d. of all earlier residuals (offline: the centred baseline, and
     the s.d. over the whole recording). The s.d. needs `warmup_s` (1 s) of
     residuals before the rule flags anything.
  2. jump: more than `max_jump_px` = 25 px from the last accepted position
     (not missing, not a rule-1 or rule-2 outlier), a run of jumps longer
     than `jump_hold_s` = 1 s becoming the new reference. The offline rule is
     already causal; this is it, frame by frame.
  3. median: more than `max_median_dev_px` = 25 px from the median of the
     points not flagged by rules 1-2 in the past half of the offline
     window (`median_window_s` = 1 s centred offline: the previous 0.5 s,
     25 frames at 50 Hz). Why half, as for rule 1: a trailing median lags a
     keypoint that moves steadily by half its length, and the whole 1 s
     behind would flag clean motion faster than 25 px / 0.5 s = 50 px/s
     (0.2 % of the points of tests/test_filter.py's clean traces, against
     none offline); the past half moves that limit to 100 px/s and flags
     none of them.
  Missing points (x or y NaN) are flagged too, as offline.

Output: at a flagged point x, y become the last unflagged x, y of that
keypoint (NaN before there is one); the likelihood column is always the
tracker's, as `fill_outliers` leaves it, so a caller can still see how sure
the network was. Frame indices with gaps (dropped frames) advance the clock:
windows are in frames of the source, not calls.

Memory is fixed at construction: ring buffers of (16 s x fps, K) likelihoods
and (0.5 s x fps, K, 2) positions; each frame costs two matrix-vector products
and one sort of the median window.
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from jfacemap.track.filter import gaussian_half_kernel, nan_median, outlier_report, point_distance, window_frames

__all__ = ["CausalOutlierFilter", "RULE_DEFAULTS"]

RULE_DEFAULTS = {name: p.default for name, p in inspect.signature(outlier_report).parameters.items()
                 if p.default is not inspect.Parameter.empty}
RULES = ("missing", "likelihood", "jump", "median")


class CausalOutlierFilter:
    """Flag and hold outliers frame by frame with the offline filter's rules (module doc).

    Args:
      n_keypoints: K.
      fps: the source's frame rate (windows are in seconds).
      warmup_s: residuals of rule 1 needed before it flags (its s.d. is not known before).
      **rules: `outlier_report`'s keyword arguments (likelihood_baseline_s, likelihood_threshold_sd,
        max_jump_px, max_median_dev_px, median_window_s, jump_hold_s, metric).
    """

    def __init__(self, n_keypoints: int, fps: float, *, warmup_s: float = 1.0, **rules):
        unknown = sorted(set(rules) - set(RULE_DEFAULTS))
        if unknown:
            raise TypeError(f"unknown outlier rule {', '.join(unknown)}; known: {', '.join(RULE_DEFAULTS)}")
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be positive and finite, got {fps}")
        self.rules = {**RULE_DEFAULTS, **rules}
        self.n_keypoints, self.fps = int(n_keypoints), float(fps)
        K = self.n_keypoints
        r = self.rules
        point_distance(np.zeros(2), r["metric"])  # a bad metric fails here, not on the first frame

        # Rule 1: weights of lags 1..R (the current frame is not its own baseline). Slot i of the
        # ring holds frame t - lag; _lik_w[R - p : 2R - p] lines the weights up with the slots
        # when frame t is at slot p = t % R, without rolling an array every frame.
        lag_w = gaussian_half_kernel(r["likelihood_baseline_s"] * fps)[1:]
        if not lag_w.size:
            lag_w = np.ones(1)  # a baseline shorter than a frame: the previous frame
        R = lag_w.size
        lags = (R - np.arange(2 * R)) % R
        self._lik_w = lag_w[np.where(lags == 0, R, lags) - 1]
        self._lik = np.zeros((R, K))  # likelihoods, 0 where invalid
        self._lik_ok = np.zeros((R, K))  # 1 where valid
        self._res_n = np.zeros(K)  # running count, mean and sum of squares of rule-1 residuals (Welford)
        self._res_mean = np.zeros(K)
        self._res_m2 = np.zeros(K)
        self._lik_max = np.zeros(K)  # largest |likelihood| so far: the constant-trace guard's scale
        self._warmup = max(2, int(round(warmup_s * fps)))
        # Rule 2
        self._hold = max(1, int(round(r["jump_hold_s"] * fps)))
        self._ref = np.full((K, 2), np.nan)  # last accepted position
        self._run_start = np.full(K, -1, np.int64)  # frame of the current run of jumps, -1 for none
        # Rule 3: the previous W positions not flagged by rules 1-2 (NaN otherwise), W the past
        # half of the offline centred window
        self._med = np.full((max(1, window_frames(r["median_window_s"], fps) // 2), K, 2), np.nan)

        self._last_good = np.full((K, 2), np.nan)
        self._t = -1
        self.frames = 0
        self.counts = dict.fromkeys(("mask", *RULES), 0)

    def __call__(self, keypoints: np.ndarray, index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One frame: keypoints (K, 3) x, y (pixels), likelihood; index: its frame number in the
        source (default: the previous one + 1). Returns (filtered (K, 3) float32, flagged (K,) bool)."""
        kp = np.asarray(keypoints)
        if kp.shape != (self.n_keypoints, 3):
            raise ValueError(f"keypoints must be ({self.n_keypoints}, 3), got {kp.shape}")
        t = self._t + 1 if index is None else int(index)
        if t <= self._t:
            raise ValueError(f"frame {t} after frame {self._t}: frames must come in order")
        self._skip(t)
        self._t = t
        xy, lik = kp[:, :2].astype(np.float64), kp[:, 2].astype(np.float64)
        missing = ~np.isfinite(xy).all(axis=-1)
        r = self.rules

        # Rule 1: residual against the trailing baseline, judged by the s.d. of earlier residuals.
        p = t % len(self._lik)
        w = self._lik_w[len(self._lik) - p: 2 * len(self._lik) - p]
        with np.errstate(invalid="ignore", divide="ignore"):
            res = lik - (w @ self._lik) / (w @ self._lik_ok)  # NaN without a baseline or a likelihood
        sd = np.sqrt(self._res_m2 / np.maximum(self._res_n, 1))
        self._lik_max = np.fmax(self._lik_max, np.abs(lik))
        active = (self._res_n >= self._warmup) & (sd > 1e-9 * np.maximum(1.0, self._lik_max))
        lik_out = active & (np.nan_to_num(res, nan=np.inf) < r["likelihood_threshold_sd"] * sd) & ~missing
        ok = np.isfinite(res)  # every residual counts, outliers too, as offline
        self._res_n += ok
        delta = np.where(ok, res - self._res_mean, 0.0)
        self._res_mean += delta / np.maximum(self._res_n, 1)
        self._res_m2 += np.where(ok, delta * (res - self._res_mean), 0.0)
        valid = np.isfinite(lik)
        self._lik[p], self._lik_ok[p] = np.where(valid, lik, 0.0), valid

        # Rule 2: distance from the last accepted position; a run older than the hold is accepted.
        usable = ~missing & ~lik_out
        in_run = self._run_start >= 0
        expired = in_run & (t - self._run_start >= self._hold)
        with np.errstate(invalid="ignore"):
            far = np.nan_to_num(point_distance(xy - self._ref, r["metric"]), nan=0.0) > r["max_jump_px"]
        jump = usable & far & ~expired
        accept = usable & ~jump
        self._ref[accept] = xy[accept]
        self._run_start[accept] = -1
        self._run_start[jump & ~in_run] = t

        # Rule 3: distance from the median of the previous window of points passing rules 1-2.
        med = nan_median(self._med, axis=0)
        with np.errstate(invalid="ignore"):
            median = (np.nan_to_num(point_distance(xy - med, r["metric"]), nan=0.0)
                      > r["max_median_dev_px"]) & ~missing
        self._med[t % len(self._med)] = np.where(accept[:, None], xy, np.nan)

        flagged = missing | lik_out | jump | median
        out = kp.astype(np.float32, copy=True)
        out[flagged, :2] = self._last_good[flagged]
        self._last_good[~flagged] = xy[~flagged]
        self.frames += 1
        for name, mask in zip(("mask", *RULES), (flagged, missing, lik_out, jump, median)):
            self.counts[name] += int(mask.sum())
        return out, flagged

    def _skip(self, t: int) -> None:
        """Empty the ring slots of frames the filter never saw (dropped) before frame t."""
        gap = t - self._t - 1
        if gap <= 0 or self._t < 0:
            return
        for ring, empty in ((self._lik, 0.0), (self._lik_ok, 0.0), (self._med, np.nan)):
            if gap >= len(ring):
                ring[:] = empty
            else:
                ring[np.arange(self._t + 1, t) % len(ring)] = empty

    @property
    def fractions(self) -> dict[str, float]:
        """Fraction of all frames x K points flagged so far, per rule and in all ("mask"), as
        `OutlierReport.fractions`."""
        n = max(self.frames * self.n_keypoints, 1)
        return {name: count / n for name, count in self.counts.items()}
