"""The live (causal) outlier filter: finds planted outliers, never looks ahead, agrees with the offline filter."""

import numpy as np
import pytest

from jfacemap.live.causal_filter import RULE_DEFAULTS, CausalOutlierFilter
from jfacemap.track.filter import outlier_report
from test_filter import FPS, smooth_keypoints


def plant(kp, n, seed, start=100):
    """n single-frame jumps (30-80 px, any direction) and n likelihood drops (to 0.05) at distinct
    (frame, keypoint) after `start`, each a frame apart from the others -> (keypoints, bool (T, K))."""
    rng = np.random.default_rng(seed)
    T, K = kp.shape[:2]
    frames = rng.choice(np.arange(start, T - 1, 3), 2 * n, replace=False)  # isolated: >= 3 frames apart
    keys = rng.integers(0, K, 2 * n)
    out, planted = kp.copy(), np.zeros((T, K), bool)
    angle, size = rng.uniform(0, 2 * np.pi, n), rng.uniform(30, 80, n)
    out[frames[:n], keys[:n], 0] += (size * np.cos(angle)).astype(np.float32)
    out[frames[:n], keys[:n], 1] += (size * np.sin(angle)).astype(np.float32)
    out[frames[n:], keys[n:], 2] = 0.05
    planted[frames, keys] = True
    return out, planted


def run(filt, kp, index=None):
    """Feed (T, K, 3) frame by frame -> (filtered (T, K, 3), flagged (T, K))."""
    index = range(len(kp)) if index is None else index
    outs = [filt(frame, i) for frame, i in zip(kp, index)]
    return np.stack([o[0] for o in outs]), np.stack([o[1] for o in outs])


def test_defaults_are_the_offline_filters():
    assert RULE_DEFAULTS == {"likelihood_baseline_s": 4.0, "likelihood_threshold_sd": -8.0, "max_jump_px": 25.0,
                             "max_median_dev_px": 25.0, "median_window_s": 1.0, "jump_hold_s": 1.0,
                             "metric": "euclidean"}
    assert CausalOutlierFilter(2, FPS, max_jump_px=40).rules["max_jump_px"] == 40
    with pytest.raises(TypeError, match="unknown outlier rule"):
        CausalOutlierFilter(2, FPS, max_jump=40)
    with pytest.raises(ValueError, match="metric"):
        CausalOutlierFilter(2, FPS, metric="manhattan")
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        CausalOutlierFilter(2, FPS)(np.zeros((3, 3)))


def test_planted_jumps_and_likelihood_drops_are_flagged_and_held():
    clean = smooth_keypoints(T=3000)
    kp, planted = plant(clean, 40, seed=1)
    filt = CausalOutlierFilter(3, FPS)
    out, flagged = run(filt, kp)
    assert flagged[planted].mean() >= 0.95, f"recall {flagged[planted].mean():.3f}"
    assert (flagged & ~planted).sum() <= 0.001 * planted.size  # measured: 0
    # A flagged point holds the last accepted position (here the frame before: outliers are isolated);
    # the likelihood column is the tracker's, as offline.
    t, k = np.nonzero(flagged)
    np.testing.assert_array_equal(out[t, k, :2], kp[t - 1, k, :2])
    np.testing.assert_array_equal(out[..., 2], kp[..., 2])
    np.testing.assert_array_equal(out[~flagged], kp[~flagged])
    assert filt.fractions["mask"] == pytest.approx(flagged.mean())
    assert filt.counts["likelihood"] == 40 and filt.counts["jump"] == 40


def test_output_at_t_does_not_depend_on_later_frames():
    kp, _ = plant(smooth_keypoints(T=1500), 15, seed=2)
    cut = 900
    other = kp.copy()
    rng = np.random.default_rng(0)
    other[cut + 1:, :, :2] += rng.normal(0, 60, other[cut + 1:, :, :2].shape).astype(np.float32)  # garbage after t
    other[cut + 1:, :, 2] = rng.uniform(0, 1, other[cut + 1:, :, 2].shape)
    a, fa = run(CausalOutlierFilter(3, FPS), kp)
    b, fb = run(CausalOutlierFilter(3, FPS), other)
    np.testing.assert_array_equal(a[: cut + 1], b[: cut + 1])
    np.testing.assert_array_equal(fa[: cut + 1], fb[: cut + 1])
    assert (fa[cut + 1:] != fb[cut + 1:]).any()  # the later frames did matter for later outputs
    # The offline filter, centred, does look ahead (what this test would catch).
    assert (outlier_report(kp, FPS).mask[: cut + 1] != outlier_report(other, FPS).mask[: cut + 1]).any()


@pytest.mark.parametrize("seed", range(4))
def test_clean_smooth_traces_pass_unchanged(seed):
    kp = smooth_keypoints(T=3000, seed=seed)
    out, flagged = run(CausalOutlierFilter(3, FPS), kp)
    assert not flagged.any()
    np.testing.assert_array_equal(out, kp)


def test_agrees_with_the_offline_filter_on_sparse_outliers():
    overlaps = []
    for seed in range(2):
        kp, planted = plant(smooth_keypoints(T=6000, seed=seed), 60, seed=seed)
        _, causal = run(CausalOutlierFilter(3, FPS), kp)
        offline = outlier_report(kp, FPS).mask
        overlaps.append((causal & offline).sum() / (causal | offline).sum())  # Jaccard
    # measured: 1.0 and 1.0 (every point flagged by one is flagged by the other)
    assert min(overlaps) >= 0.95, overlaps


def test_excursion_and_permanent_shift_as_offline():
    kp = smooth_keypoints(T=6000, K=1)
    kp[..., :2] = kp[..., :2] - kp[..., :2].mean(axis=0)
    kp[1000:1004, 0, :2] += 60.0  # 4-frame excursion: all 4 flagged, the return accepted
    kp[4000:, 0, 0] += 50.0  # a real displacement: flags stop after jump_hold_s
    _, flagged = run(CausalOutlierFilter(1, FPS, jump_hold_s=0.5), kp)
    np.testing.assert_array_equal(flagged, outlier_report(kp, FPS, jump_hold_s=0.5).mask)
    assert flagged[1000:1004, 0].all() and not flagged[1004, 0]
    assert flagged[4000:4025, 0].all() and not flagged[4025:, 0].any()


def test_dropped_frames_count_as_time_and_missing_points_are_held():
    index = np.r_[0:201, 260:460]  # 59 dropped frames after frame 200: more than the 1 s hold
    kp = smooth_keypoints(T=len(index), K=2)
    kp[200:, 0, :2] += 50.0  # a real displacement at frame 200
    kp[250, 1, :2] = np.nan  # a missing point: flagged, held at the last accepted value
    out, flagged = run(CausalOutlierFilter(2, FPS), kp, index)
    assert flagged[200, 0] and not flagged[201:, 0].any()  # frame 260 is 60 frames after the run began
    assert flagged[250, 1] and flagged[:, 1].sum() == 1
    np.testing.assert_array_equal(out[250, 1, :2], kp[249, 1, :2])
    filt = CausalOutlierFilter(2, FPS)
    filt(kp[0], 5)
    with pytest.raises(ValueError, match="in order"):
        filt(kp[1], 5)


def test_nothing_before_a_first_accepted_point_is_invented():
    kp = smooth_keypoints(T=50, K=2)
    kp[:10, 1, :2] = np.nan
    out, flagged = run(CausalOutlierFilter(2, FPS), kp)
    assert flagged[:10, 1].all() and np.isnan(out[:10, 1, :2]).all()
    np.testing.assert_array_equal(out[:10, 1, 2], kp[:10, 1, 2])
