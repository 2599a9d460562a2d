"""Keypoint outlier detection and filling (SPEC section 2)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jfacemap.track.filter import (
    detect_outliers, fill_outliers, filter_keypoints, nan_median_filter, outlier_report, window_frames,
)

FPS = 50.0


def smooth_keypoints(T=6000, K=3, seed=0, noise=0.3):
    """Slow smooth motion (a few px per frame at most), high likelihood with small noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None] / FPS
    freq = rng.uniform(0.05, 0.25, K)
    kp = np.empty((T, K, 3), np.float32)
    kp[..., 0] = 200 + 30 * np.sin(2 * np.pi * freq * t) + rng.normal(0, noise, (T, K))
    kp[..., 1] = 150 + 20 * np.cos(2 * np.pi * freq * t * 0.7) + rng.normal(0, noise, (T, K))
    kp[..., 2] = 0.9 + rng.normal(0, 0.01, (T, K))
    return kp


def test_window_frames():
    assert window_frames(1.0, 50) == 51
    assert window_frames(0.3, 50) == 15
    assert window_frames(0.001, 50) == 1


def test_nan_median_filter_matches_brute_force():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 3))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[50:90, 1] = np.nan  # a gap longer than the window: NaN there
    x[:, 2] = np.nan
    w = 9
    ref = np.full_like(x, np.nan)
    for i in range(len(x)):
        for j in range(3):
            v = x[max(0, i - w // 2): i + w // 2 + 1, j]
            v = v[np.isfinite(v)]
            if v.size:
                ref[i, j] = np.median(v)
    np.testing.assert_allclose(nan_median_filter(x, w), ref, equal_nan=True)


def test_clean_traces_have_almost_no_outliers():
    kp = smooth_keypoints()
    report = outlier_report(kp, FPS)
    assert report.mask.mean() < 1e-3
    filtered, _ = filter_keypoints(kp, FPS)
    # Nothing flagged -> nothing changed.
    np.testing.assert_array_equal(filtered[~report.mask], kp[~report.mask])


def test_planted_spikes_detected_and_filled():
    clean = smooth_keypoints()
    kp = clean.copy()
    spikes = np.arange(300, 5800, 397)
    kp[spikes, 0, 0] += 40.0  # single-frame jumps of 40 px
    kp[spikes + 5, 1, 1] -= 40.0
    filtered, report = filter_keypoints(kp, FPS)
    assert report.jump[spikes, 0].all() and report.jump[spikes + 5, 1].all()
    # Compared to the last accepted position, the frame after a spike is not a jump.
    assert not report.jump[spikes + 1, 0].any()
    assert report.jump.sum() == 2 * spikes.size
    assert report.median[spikes, 0].all()  # 40 px off the 1 s median too
    assert not report.likelihood.any()
    err = np.abs(filtered[..., :2] - clean[..., :2])
    assert err.max() < 1.5 and err[spikes, 0, 0].max() < 1.5


def test_low_likelihood_stretch_detected_and_filled():
    clean = smooth_keypoints()
    kp = clean.copy()
    kp[2000:2020, 2, 2] = 0.05  # 0.4 s of lost tracking ...
    kp[2000:2020, 2, :2] += np.float32([7.0, -9.0])  # ... with small (sub-threshold) errors
    filtered, report = filter_keypoints(kp, FPS)
    assert report.likelihood[2000:2020, 2].all()
    assert report.likelihood.sum() == 20
    assert not report.jump.any() and not report.median.any()
    np.testing.assert_allclose(filtered[..., :2], clean[..., :2], atol=1.5)
    # Likelihood column is left as measured.
    np.testing.assert_array_equal(filtered[..., 2], kp[..., 2])


def test_multi_frame_excursion_and_permanent_shift():
    kp = smooth_keypoints(K=1)
    kp[..., :2] = kp[..., :2] - kp[..., :2].mean(axis=0)  # slow motion would end the run early
    kp[1000:1004, 0, :2] += 60.0  # 4-frame excursion: all 4 frames flagged, return accepted
    kp[4000:, 0, 0] += 50.0  # real displacement: flags stop after jump_hold_s
    report = outlier_report(kp, FPS, jump_hold_s=0.5)
    assert report.jump[1000:1004, 0].all() and not report.jump[1004, 0]
    assert report.jump[4000:4025, 0].all() and not report.jump[4026:, 0].any()


def test_nan_handling():
    clean = smooth_keypoints()
    kp = clean.copy()
    kp[100:110, 0, :2] = np.nan  # a gap
    kp[:5, 1, :] = np.nan  # the very start
    kp[-3:, 1, :] = np.nan  # the very end
    kp[:, 2, :2] = np.nan  # a keypoint never seen
    kp[700, 0, 2] = np.nan  # likelihood missing, position fine
    filtered, report = filter_keypoints(kp, FPS)
    assert report.missing[100:110, 0].all() and report.missing[:, 2].all()
    assert not report.likelihood[700, 0]
    # Gaps are interpolated from neighbours; ends hold the nearest valid (median) value.
    # Next to a gap the 300 ms median sees one side only, so it lags a trace moving
    # ~1 px/frame by ~2 px: the tolerance is looser than for isolated spikes.
    np.testing.assert_allclose(filtered[5:-3, :2, :2], clean[5:-3, :2, :2], atol=2.5)
    held = np.median(kp[5:13, 1, :2].astype(np.float64), axis=0)  # frame 5's truncated window
    np.testing.assert_allclose(filtered[:5, 1, :2], np.broadcast_to(held, (5, 2)), rtol=1e-6)
    assert np.isfinite(filtered[:, :2, :2]).all()
    # Never invent values for an all-NaN keypoint.
    assert np.isnan(filtered[:, 2, :2]).all()
    # No rule other than `missing` fires on NaN points.
    assert not (report.likelihood | report.jump | report.median)[:, 2].any()


def test_fill_outliers_all_flagged_stays_nan():
    kp = smooth_keypoints(T=200, K=2)
    mask = np.zeros(kp.shape[:2], bool)
    mask[:, 1] = True
    out = fill_outliers(kp, mask, FPS)
    assert np.isnan(out[:, 1, :2]).all()
    np.testing.assert_array_equal(out[:, 0], kp[:, 0])


def test_detect_outliers_union_and_fractions():
    kp = smooth_keypoints()
    kp[500, 0, 0] += 40
    kp[900:910, 1, 2] = 0.0
    report = outlier_report(kp, FPS)
    mask = detect_outliers(kp, FPS)
    np.testing.assert_array_equal(mask, report.mask)
    union = report.missing | report.likelihood | report.jump | report.median
    np.testing.assert_array_equal(mask, union)
    f = report.fractions
    assert set(f) == {"mask", "missing", "likelihood", "jump", "median"}
    assert f["likelihood"] == pytest.approx(10 / mask.size)
    assert f["mask"] == pytest.approx(mask.mean())


def test_parameters_are_keywords():
    kp = smooth_keypoints(T=2000, K=1)
    kp[700, 0, 0] += 40
    assert detect_outliers(kp, FPS)[700, 0]
    assert not detect_outliers(kp, FPS, max_jump_px=50, max_median_dev_px=50)[700, 0]
    # chebyshev: |dx| or |dy| above the limit. A (20, 20) step is 28 px euclidean.
    kp = smooth_keypoints(T=2000, K=1)
    kp[700, 0, :2] += 20
    assert detect_outliers(kp, FPS)[700, 0]
    assert not detect_outliers(kp, FPS, metric="chebyshev")[700, 0]


@settings(max_examples=25, deadline=None)
@given(
    where=st.lists(st.integers(10, 990), min_size=1, max_size=8, unique=True),
    size=st.floats(30.0, 200.0),
    sign=st.sampled_from([-1.0, 1.0]),
)
def test_isolated_spikes_property(where, size, sign):
    clean = smooth_keypoints(T=1000, K=1, seed=3)
    kp = clean.copy()
    where = np.array(sorted(where))
    kp[where, 0, 1] += sign * size
    filtered, report = filter_keypoints(kp, FPS)
    assert report.mask[where, 0].all()
    assert report.mask.sum() <= 2 * where.size  # at most one neighbour per spike (adjacent spikes)
    np.testing.assert_allclose(filtered[..., :2], clean[..., :2], atol=1.5)
