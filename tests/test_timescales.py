"""Autoregressive keypoint timescales (SPEC section 2).

For an Ornstein-Uhlenbeck trace with correlation time tau_c, the best
prediction of x(t + lag) from the past is exp(-lag / tau_c) x(t), so the
variance explained is VE(lag) = exp(-2 lag / tau_c). Half of its value at the
first lag lag_1 is reached at lag_1 + tau_c ln(2) / 2.
"""

import numpy as np
import pytest
from scipy.signal import lfilter

from jfacemap.track.timescales import (
    exp_basis_features, half_decay_lag, keypoint_timescales, lag_grid, split_train_test,
)

FPS = 50.0


def ou(T, tau_s, rng, fps=FPS):
    """Unit-variance discrete OU / AR(1) with correlation time tau_s."""
    a = np.exp(-1.0 / (fps * tau_s))
    e = rng.normal(size=T) * np.sqrt(1 - a * a)
    return lfilter([1.0], [1.0, -a], e, zi=[a * rng.normal()])[0]


def half_ve_lag(tau_s, first_lag_s=0.02):
    return first_lag_s + tau_s * np.log(2) / 2


def test_lag_grid_matches_spec():
    g = lag_grid(50.0)
    # 20 ms .. 10 s every 20 ms = frames 1..500, then 10.5 .. 40 s every 500 ms.
    np.testing.assert_array_equal(g[:500], np.arange(1, 501))
    np.testing.assert_array_equal(g[500:], np.arange(525, 2001, 25))
    assert len(g) == 560
    # A function of fps: whole frames, unique, ascending, same span in seconds.
    for fps in (30.0, 100.0, 24.0):
        g = lag_grid(fps)
        assert np.all(np.diff(g) > 0) and g[0] >= 1
        assert g[-1] / fps == pytest.approx(40.0, abs=0.5 / fps)
    assert len(lag_grid(100.0)) == 560
    np.testing.assert_array_equal(lag_grid(30.0)[:300], np.arange(1, 301))  # 20 ms < 1 frame


def test_split_train_test():
    train, test = split_train_test(10_000, 50.0)
    assert len(train) == len(test) == 10
    for (a, b), (c, d) in zip(train, test):
        assert b - a == 750 and c - b == 130 and d == a + 1000


def test_exp_basis_is_causal_and_starts_at_x0():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    taus = np.geomspace(0.04, 5.0, 8)
    f = exp_basis_features(x, FPS, taus)
    assert f.shape == (300, 16)
    np.testing.assert_allclose(f[0], np.repeat(x[0], 8))
    x2 = x.copy()
    x2[200:] += 10  # the future must not change the past
    np.testing.assert_allclose(exp_basis_features(x2, FPS, taus)[:200], f[:200])


def test_matches_brute_force_least_squares():
    rng = np.random.default_rng(1)
    T = 8000
    y = np.column_stack([ou(T, 0.3, rng), ou(T, 1.0, rng) + 0.5 * ou(T, 0.1, rng)])
    lags = np.array([1, 4, 25, 100, 249, 250, 400, 599, 600, 900])
    res = keypoint_timescales(y, FPS, lags=lags, ridge=0.0)
    z = (y - y.mean(0)) / y.std(0)
    X = np.column_stack([exp_basis_features(z, FPS, np.geomspace(0.04, 5.0, 8)), np.ones(T)])
    train, test = split_train_test(T, FPS)
    for i, k in enumerate(lags):
        pairs = lambda blocks: [(a, b) for a, b in blocks if b - a > k]  # noqa: E731
        if not pairs(test) or sum(b - a - k for a, b in pairs(train)) <= X.shape[1]:
            assert np.isnan(res.variance_explained[i]).all()
            continue
        xs = lambda blocks: np.concatenate([X[a:b - k] for a, b in pairs(blocks)])  # noqa: E731
        ys = lambda blocks: np.concatenate([z[a + k:b] for a, b in pairs(blocks)])  # noqa: E731
        w = np.linalg.lstsq(xs(train), ys(train), rcond=None)[0]
        ve = 1 - ((ys(test) - xs(test) @ w) ** 2).mean(0) / ys(test).var(0)
        np.testing.assert_allclose(res.variance_explained[i], ve, rtol=1e-8, atol=1e-8)


def test_ou_timescales_recovered_and_ordered():
    rng = np.random.default_rng(2)
    T = 60_000  # 20 min at 50 Hz
    taus = np.array([0.2, 2.0])
    y = np.column_stack([ou(T, t, rng) for t in taus])
    y = y * [3.0, 40.0] + [100.0, 250.0]  # pixels: offsets and scales must not matter
    res = keypoint_timescales(y, FPS)
    assert res.lags_s.shape == (560,) and res.variance_explained.shape == (560, 2)
    assert res.lags_s[0] == pytest.approx(0.02)
    # First-lag VE close to exp(-2 lag / tau_c).
    np.testing.assert_allclose(res.variance_explained[0], np.exp(-2 * 0.02 / taus), atol=0.05)
    expected = half_ve_lag(taus)  # 0.089 s and 0.713 s
    assert res.timescale_s[0] < res.timescale_s[1]
    ratio = res.timescale_s / expected
    assert np.all((ratio > 2 / 3) & (ratio < 1.5)), (res.timescale_s, expected)  # seeds 0-7: 0.82-1.31
    # Lags longer than a test block have no test pairs.
    assert np.isnan(res.variance_explained[res.lags_s > 30]).all()


def test_half_decay_lag_interpolates_and_nan():
    lags = np.array([0.02, 0.04, 0.06, 0.08])
    ve = np.array([[0.8, 0.0, 0.8, -0.1],
                   [0.6, 0.0, 0.7, -0.2],
                   [0.3, 0.0, 0.6, -0.3],
                   [0.2, 0.0, 0.5, -0.4]])
    out = half_decay_lag(lags, ve)
    assert out[0] == pytest.approx(0.04 + 0.02 * (0.6 - 0.4) / (0.6 - 0.3))
    assert np.isnan(out[1:]).all()  # VE 0 at first lag; never halves; negative


def test_rejects_nan():
    y = np.zeros((1000, 2))
    y[5, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        keypoint_timescales(y, FPS)
