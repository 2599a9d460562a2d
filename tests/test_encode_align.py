"""Timestamps, smoothing, resampling and the train/test split (SPEC section 3)."""

import numpy as np
import pytest

from jfacemap.encode.align import check_timestamps, gaussian_smooth, resample, segment_split


def brute_force_smooth(x, sigma_frames):
    """Gaussian-weighted average of the finite samples, untruncated, float64."""
    T = x.shape[0]
    d = np.arange(T)[:, None] - np.arange(T)[None, :]
    w = np.exp(-0.5 * (d / sigma_frames) ** 2)
    valid = np.isfinite(x)
    return (w @ np.where(valid, x, 0.0)) / (w @ valid)


def test_check_timestamps():
    t = check_timestamps([0, 1, 2.5], "cam")
    assert t.dtype == np.float64 and np.array_equal(t, [0, 1, 2.5])
    with pytest.raises(ValueError, match="cam must be 1-D"):
        check_timestamps(np.zeros((2, 2)), "cam")
    with pytest.raises(ValueError, match="non-finite"):
        check_timestamps([0, np.nan, 2], "cam")
    with pytest.raises(ValueError, match=r"not strictly increasing: t\[1\]"):
        check_timestamps([0, 1, 1, 2], "cam")
    with pytest.raises(ValueError, match="empty"):
        check_timestamps([], "cam")


def test_gaussian_smooth_matches_brute_force_with_nan_gaps():
    rng = np.random.default_rng(0)
    fps, sigma_s = 50.0, 0.1
    x = rng.normal(size=(400, 3))
    x[50:53, 0] = np.nan  # short gap: filled from both sides
    x[200:300, 1] = np.nan  # long gap: NaN in its middle
    out = gaussian_smooth(x, sigma_s, fps)
    sigma_frames = sigma_s * fps
    ref = np.stack([brute_force_smooth(x[:, d], sigma_frames) for d in range(3)], axis=1)
    # scipy truncates the kernel at 4 s.d. (6e-5 of its mass): tiny differences,
    # except deep inside gaps where only the far tail of the kernel sees data.
    d = np.arange(400)[:, None] - np.arange(400)[None, :]
    mass = np.exp(-0.5 * (d / sigma_frames) ** 2) @ np.isfinite(x) / (np.sqrt(2 * np.pi) * sigma_frames)
    well_covered = np.isfinite(out) & (mass > 0.05)
    np.testing.assert_allclose(out[well_covered], ref[well_covered], atol=2e-3)
    assert np.all(np.isfinite(out[:, 0])) and np.all(np.isfinite(out[:, 2]))
    assert np.all(np.isnan(out[220:280, 1])) and np.all(np.isfinite(out[:195, 1]))
    # The ends are averages of the samples present, not pulled toward zero.
    np.testing.assert_allclose(out[[0, -1], 2], ref[[0, -1], 2], atol=2e-3)


def test_gaussian_smooth_sine_gain_and_timestamps():
    fps, sigma_s = 50.0, 0.1
    t = np.arange(5000) / fps
    for f_hz in (1.0, 3.0):
        y = gaussian_smooth(np.sin(2 * np.pi * f_hz * t), sigma_s, fps)
        gain = np.exp(-0.5 * (2 * np.pi * f_hz * sigma_s) ** 2)  # Fourier transform of the Gaussian
        mid = slice(500, -500)
        np.testing.assert_allclose(y[mid], gain * np.sin(2 * np.pi * f_hz * t[mid]), atol=2e-3)
    x = np.random.default_rng(1).normal(size=(300, 2))
    np.testing.assert_allclose(gaussian_smooth(x, 0.1, t[:300]), gaussian_smooth(x, 0.1, fps))
    np.testing.assert_array_equal(gaussian_smooth(x, 0.0, fps), x)
    with pytest.raises(ValueError, match="needs the frame rate"):
        gaussian_smooth(x, 0.1)
    with pytest.raises(ValueError, match="sigma_s"):
        gaussian_smooth(x, -1.0, fps)
    with pytest.raises(ValueError, match=r"200 timestamps, need one per frame \(300\)"):
        gaussian_smooth(x, 0.1, t[:200])


def test_resample_matches_np_interp():
    rng = np.random.default_rng(2)
    src = np.cumsum(rng.uniform(0.015, 0.025, size=500))  # jittered ~50 Hz camera
    dst = np.arange(src[0] + 0.1, src[-1] - 0.1, 1 / 3.0)  # ~3 Hz neural frames inside it
    x = rng.normal(size=(500, 4))
    out = resample(x, src, dst)
    ref = np.stack([np.interp(dst, src, x[:, d]) for d in range(4)], axis=1)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(resample(x[:, 0], src, dst), ref[:, 0], atol=1e-12)
    # Exactly on the edges is inside.
    np.testing.assert_allclose(resample(x, src, src[[0, -1]]), x[[0, -1]], atol=1e-12)


def test_resample_refuses_to_extrapolate():
    src = np.linspace(1.0, 3599.0, 1000)
    dst = np.linspace(0.0, 3600.2, 50)
    with pytest.raises(ValueError, match="behaviour does not cover the neural recording: "
                       r"neural times 0.0-3600.2 s, behaviour 1.0-3599.0 s"):
        resample(np.zeros(1000), src, dst)
    # Within the tolerance the edge value is held.
    out = resample(np.arange(1000.0), src, dst, tolerance_s=1.5)
    assert out[0] == 0.0 and out[-1] == 999.0
    with pytest.raises(ValueError, match="do not match"):
        resample(np.zeros(999), src, dst)


def test_segment_split_sizes_and_gap_from_frame_count():
    fps = 3.0
    s = segment_split(1000, fps=fps)
    assert len(s.train) == len(s.test) == 10 and s.n_time == 1000
    for k, (tr, te) in enumerate(zip(s.train, s.test)):
        a, b = 100 * k, 100 * (k + 1)
        np.testing.assert_array_equal(tr, np.arange(a, a + 75))
        np.testing.assert_array_equal(te, np.arange(a + 75 + 9, b))  # 3 s = 9 frames skipped
        assert (te[0] - tr[-1]) / fps >= 3.0
    assert np.intersect1d(s.train_idx, s.test_idx).size == 0
    assert np.all(np.diff(s.train_idx) > 0) and np.all(np.diff(s.test_idx) > 0)
    assert s.train_idx.size == 750 and s.test_idx.size == 160


def test_segment_split_uses_timestamps_for_the_gap():
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.uniform(0.2, 0.45, size=3000))  # irregular ~3 Hz clock
    s = segment_split(times)
    for tr, te in zip(s.train, s.test):
        assert np.all(np.diff(tr) == 1) and np.all(np.diff(te) == 1)
        n_seg = te[-1] + 1 - tr[0]
        assert tr.size == int(np.floor(0.75 * n_seg))
        # The first test frame is the first one at least 3 s after the first skipped frame.
        skipped = np.arange(tr[-1] + 1, te[0])
        assert times[te[0]] - times[tr[-1] + 1] >= 3.0 - 1e-9
        assert np.all(times[skipped] - times[tr[-1] + 1] < 3.0)
    assert s.train_idx.size + s.test_idx.size < 3000


def test_segment_split_errors():
    with pytest.raises(ValueError, match="needs fps"):
        segment_split(1000)
    with pytest.raises(ValueError, match="recording too short.*no test frames"):
        segment_split(200, fps=3.0)  # 20-frame segments: 15 train, 9 skipped
    with pytest.raises(ValueError, match="recording too short"):
        segment_split(15, fps=3.0)
    with pytest.raises(ValueError, match="train_fraction"):
        segment_split(1000, fps=3.0, train_fraction=1.0)
    with pytest.raises(ValueError, match="not strictly increasing"):
        segment_split(np.array([0.0, 1.0, 1.0] + list(range(2, 300))))


def test_hold_out_ends_carves_validation_after_a_gap_from_each_training_segment():
    from jfacemap.encode.align import hold_out_ends

    times = np.arange(3000) / 10.0  # 10 Hz
    split = segment_split(times)
    fit, val = hold_out_ends(split.train, times, fraction=0.1, gap_s=3.0)
    assert len(fit) == len(val) == 10
    for seg, f, v in zip(split.train, fit, val):
        assert v[-1] == seg[-1] and len(v) == int(np.ceil(0.1 * len(seg)))  # the end of the segment
        assert f[0] == seg[0] and times[v[0]] - times[f[-1]] >= 3.0 - 1e-9   # a 3 s gap before it
        assert times[v[0]] - times[f[-1]] < 3.0 + 0.1 + 1e-9                  # and no more
    # a segment too short for fit + gap + validation stays whole for fitting
    short = (np.arange(20),)
    fit, val = hold_out_ends(short, times, fraction=0.1, gap_s=3.0)
    assert val == () and np.array_equal(fit[0], short[0])
