"""Targets (z-score, neural SVD) and metrics (VE, peer prediction, normalisation,
cumulative VE across PCs) of SPEC section 3, against independent references."""

import numpy as np
import pytest

from jfacemap.encode.align import segment_split
from jfacemap.encode.metrics import (
    cumulative_ve_across_pcs, normalized_ve, peer_explainable_variance, spatial_groups,
    variance_explained,
)
from jfacemap.encode.neural_pcs import neural_svd, predicted_activity, prediction_targets, zscore


def low_rank_activity(rng, n_neurons, T, spectrum):
    U = np.linalg.qr(rng.normal(size=(n_neurons, len(spectrum))))[0]
    V = np.linalg.qr(rng.normal(size=(T, len(spectrum))))[0]
    return (U * spectrum) @ V.T + 1e-3 * rng.normal(size=(n_neurons, T))


def planted_population(rng, n_neurons, T, fraction, n_latents=4):
    """Neuron i = sqrt(f_i) * unit-variance shared signal + sqrt(1 - f_i) * private noise."""
    z = rng.normal(size=(n_latents, T))
    w = rng.normal(size=(n_neurons, n_latents))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    f = np.asarray(fraction)[:, None]
    return np.sqrt(f) * (w @ z) + np.sqrt(1 - f) * rng.normal(size=(n_neurons, T))


# ---- targets ---------------------------------------------------------------

def test_zscore_rows_and_constant_neurons():
    rng = np.random.default_rng(0)
    spks = rng.gamma(2.0, 3.0, size=(5, 300))
    spks[2] = 7.0
    z, m, s = zscore(spks)
    assert z.dtype == np.float32 and z.shape == (5, 300)
    np.testing.assert_allclose(m, spks.mean(1))
    np.testing.assert_allclose(z[[0, 1, 3, 4]].mean(1), 0, atol=1e-6)
    np.testing.assert_allclose(z[[0, 1, 3, 4]].std(1), 1, atol=1e-5)
    assert s[2] == 1.0 and np.all(z[2] == 0)
    # (time, neurons) layout and train-only statistics.
    zt, _, _ = zscore(spks.T, axis=0)
    np.testing.assert_array_equal(zt, z.T)
    train = np.arange(100)
    z2, m2, s2 = zscore(spks, train_idx=train)
    np.testing.assert_allclose(z2[0], (spks[0] - spks[0, :100].mean()) / spks[0, :100].std(), rtol=1e-5)
    spks[1, 5] = np.nan
    with pytest.raises(ValueError, match="non-finite values \\(first in neuron 1\\)"):
        zscore(spks)


@pytest.mark.parametrize("shape", [(60, 200), (300, 80)])  # both Gram routes
def test_neural_svd_exact_matches_numpy(shape):
    rng = np.random.default_rng(1)
    X = rng.normal(size=shape).astype(np.float32)
    U, S, V = neural_svd(X, n_components=20)
    u, s, vt = np.linalg.svd(X.astype(np.float64), full_matrices=False)
    np.testing.assert_allclose(S, s[:20], rtol=1e-5)
    np.testing.assert_allclose(np.abs(np.sum(U * u[:, :20], axis=0)), 1, atol=1e-4)
    np.testing.assert_allclose((U * S) @ V.T, (u[:, :20] * s[:20]) @ vt[:20], atol=1e-3)
    assert np.all(U[np.argmax(np.abs(U), 0), np.arange(20)] > 0)


def test_neural_svd_randomized_matches_exact_subspace():
    rng = np.random.default_rng(2)
    spectrum = 100.0 * 0.9 ** np.arange(40)
    X = low_rank_activity(rng, 200, 1200, spectrum).astype(np.float32)
    U, S, _ = neural_svd(X, n_components=20, method="randomized")
    u, s, _ = np.linalg.svd(X.astype(np.float64), full_matrices=False)
    np.testing.assert_allclose(S, s[:20], rtol=1e-4)
    np.testing.assert_allclose(np.abs(np.sum(U * u[:, :20], axis=0)), 1, atol=1e-3)


def test_neural_svd_on_train_frames_projects_all_frames():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 400)).astype(np.float32)
    train = np.arange(0, 400, 2)
    U, S, V = neural_svd(X, n_components=10, train_idx=train)
    s_train = np.linalg.svd(X[:, train].astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(S, s_train[:10], rtol=1e-5)
    np.testing.assert_allclose(V * S, X.T @ U, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(V[train].T @ V[train], np.eye(10), atol=1e-4)


def test_prediction_targets_rule_and_back_projection():
    rng = np.random.default_rng(4)
    few = rng.normal(size=(199, 300)).astype(np.float32)
    Y, U = prediction_targets(few)
    assert U is None and np.array_equal(Y, few.T)
    np.testing.assert_array_equal(predicted_activity(Y, U), few)
    many = low_rank_activity(rng, 250, 300, np.linspace(50, 5, 100)).astype(np.float32)
    Y, U = prediction_targets(many)
    assert Y.shape == (300, 128) and U.shape == (250, 128)
    # 128 components hold the 100-dimensional signal: Yhat = Y maps back to the activity.
    np.testing.assert_allclose(predicted_activity(Y, U), many, atol=0.05)


# ---- metrics ---------------------------------------------------------------

def test_variance_explained_formula():
    rng = np.random.default_rng(5)
    y = rng.normal(size=(100, 3)) + 2.0
    yhat = y + rng.normal(size=(100, 3)) * 0.5
    ref = [1 - np.mean((y[:, i] - yhat[:, i]) ** 2) / np.var(y[:, i]) for i in range(3)]
    np.testing.assert_allclose(variance_explained(y, yhat), ref)
    np.testing.assert_allclose(variance_explained(y.T, yhat.T, axis=1), ref)
    ve = variance_explained(np.ones((10, 1)), np.zeros((10, 1)))
    assert np.isnan(ve[0])


def test_spatial_groups():
    x = np.array([10.0, 210.0, 390.0, 450.0, 10.0, 10.0])
    y = np.array([0.0, 0.0, 0.0, 0.0, 450.0, 900.0])
    np.testing.assert_array_equal(spatial_groups(x, y, "strips"), [0, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(spatial_groups(x, y, "checkerboard"), [0, 0, 0, 1, 1, 0])
    with pytest.raises(ValueError, match="mode"):
        spatial_groups(x, y, "rings")


def test_peer_prediction_recovers_planted_explainable_variance():
    rng = np.random.default_rng(6)
    n, T = 1500, 8000
    frac = np.full(n, 0.3)
    frac[:150] = 0.0  # pure private noise
    spks = planted_population(rng, n, T, frac)
    x, y = rng.uniform(0, 2000, n), rng.uniform(0, 1000, n)
    ev = peer_explainable_variance(spks, x, y, segment_split(T, fps=3.0))
    assert ev.shape == (n,)
    assert abs(ev[150:].mean() - 0.3) < 0.015
    assert abs(ev[:150].mean()) < 0.015


def test_peer_prediction_tracks_per_neuron_fractions_checkerboard():
    rng = np.random.default_rng(7)
    n, T = 600, 3000
    frac = rng.uniform(0.0, 0.6, n)
    spks = planted_population(rng, n, T, frac)
    x, y = rng.uniform(0, 1600, n), rng.uniform(0, 1600, n)
    split = segment_split(T, fps=3.0)
    ev = peer_explainable_variance(spks, x, y, split, mode="checkerboard", n_pcs=32, rank=31)
    assert np.corrcoef(ev, frac)[0, 1] > 0.95
    assert abs(np.mean(ev - frac)) < 0.02


def test_peer_prediction_needs_two_groups():
    rng = np.random.default_rng(8)
    spks = rng.normal(size=(20, 600))
    with pytest.raises(ValueError, match="both spatial groups"):
        peer_explainable_variance(spks, np.full(20, 50.0), np.zeros(20), segment_split(600, fps=3.0))


def test_normalized_ve():
    ve = np.array([0.02, 0.05, 0.0, np.nan, 0.01])
    ev = np.array([0.04, 0.10, 0.0005, 0.2, 0.05])
    pop, per = normalized_ve(ve, ev)
    ok = [0, 1, 2, 4]
    assert pop == pytest.approx(ve[ok].mean() / ev[ok].mean())
    np.testing.assert_allclose(per, [0.5, 0.5, np.nan, np.nan, 0.2])


def test_cumulative_ve_equals_pooled_neural_ve():
    rng = np.random.default_rng(9)
    n, T, K = 80, 600, 10
    X = low_rank_activity(rng, n, T, np.linspace(30, 3, 15)) + 0.3 * rng.normal(size=(n, T))
    U = np.linalg.svd(X, full_matrices=False)[0][:, :K]
    test = np.arange(400, 600)
    Xt = X[:, test] - X[:, test].mean(1, keepdims=True)  # test means 0: the exact case
    Y = Xt.T @ U
    Yhat = Y * rng.uniform(0.3, 1.0, K) + 0.5 * rng.normal(size=Y.shape)
    total = Xt.var(axis=1).sum()
    cum = cumulative_ve_across_pcs(Y, Yhat, total_variance=total)
    for k in (1, 4, K):
        pred = Yhat[:, :k] @ U[:, :k].T  # (T_test, n): only the first k predicted PCs
        pooled = 1 - np.sum(np.mean((Xt.T - pred) ** 2, 0)) / total
        assert cum[k - 1] == pytest.approx(pooled, rel=1e-9)
    # Default normalisation: by the variance inside the K PCs.
    cum_in = cumulative_ve_across_pcs(Y, Yhat)
    np.testing.assert_allclose(cum_in, cum * total / Y.var(0).sum())


def test_explainable_ve_reliability():
    from jfacemap.encode.metrics import explainable_ve_reliability

    ok, why = explainable_ve_reliability(np.full(100, 0.2), {"linear": 0.5, "deep": 0.7})
    assert ok and why == ""
    ok, why = explainable_ve_reliability(np.r_[np.full(98, 0.0), 0.3, 0.3], {"linear": 2.68})
    assert not ok and "explainable variance is 0.60% (< 1%)" in why and "2 of 100 neurons" in why
    ok, why = explainable_ve_reliability(np.full(100, 0.05), {"linear": 0.9, "deep": 1.3})
    assert not ok and "deep model is 130% (> 100%)" in why
    assert not explainable_ve_reliability(np.full(3, np.nan))[0]
