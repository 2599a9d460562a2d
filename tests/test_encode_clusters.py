"""Scaled k-means, cluster prediction r and the locality index (SPEC section 3)."""

from itertools import permutations

import numpy as np
import pytest

from jfacemap.encode.clusters import cluster_prediction_r, locality_index, scaled_kmeans


def planted_clusters(rng, n_clusters=5, per_cluster=60, T=300, noise=0.5):
    mu = rng.normal(size=(n_clusters, T))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    truth = np.repeat(np.arange(n_clusters), per_cluster)
    scales = rng.uniform(2.0, 10.0, truth.size)  # very unequal gains within a cluster
    X = scales[:, None] * mu[truth] + noise * rng.normal(size=(truth.size, T))
    return X, truth, mu


def best_matching_accuracy(labels, truth, k):
    """Fraction agreeing under the best relabelling, by brute force over permutations."""
    return max(np.mean(np.asarray(perm)[labels] == truth) for perm in permutations(range(k)))


def test_scaled_kmeans_recovers_planted_clusters():
    rng = np.random.default_rng(0)
    X, truth, mu = planted_clusters(rng, noise=0.2)
    res = scaled_kmeans(X, n_clusters=5, n_iter=30, seed=1, n_init=3)
    assert best_matching_accuracy(res.labels, truth, 5) == 1.0
    # Each recovered centroid is one planted pattern (centroids are unit norm).
    cos = res.centroids.astype(np.float64) @ mu.T
    assert np.all(cos.max(axis=1) > 0.99)
    np.testing.assert_allclose(np.linalg.norm(res.centroids, axis=1), 1, atol=1e-5)
    # Scales are the projections on the assigned centroid.
    proj = np.einsum("it,it->i", X, res.centroids[res.labels])
    np.testing.assert_allclose(res.scales, np.maximum(proj, 0), rtol=1e-4, atol=1e-4)


def test_objective_is_the_residual_and_never_increases():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 80))  # no structure: many iterations before labels settle
    res = scaled_kmeans(X, n_clusters=12, n_iter=40, seed=0)
    resid = X - res.scales[:, None] * res.centroids[res.labels].astype(np.float64)
    assert res.objective[-1] == pytest.approx(np.sum(resid**2), rel=1e-5)
    assert len(res.objective) > 3
    assert np.all(np.diff(res.objective) <= 1e-6 * res.objective[0])
    assert res.objective[-1] < res.objective[0]


def test_scaled_kmeans_noisy_small_clusters_and_checks_input():
    rng = np.random.default_rng(2)
    X, truth, _ = planted_clusters(rng, n_clusters=3, per_cluster=30, noise=0.6)
    res = scaled_kmeans(X, n_clusters=3, seed=0, n_init=3)
    assert best_matching_accuracy(res.labels, truth, 3) > 0.95
    with pytest.raises(ValueError, match="n_clusters must be an integer in 1..90"):
        scaled_kmeans(X, n_clusters=91)
    with pytest.raises(ValueError, match="non-finite"):
        scaled_kmeans(np.full((4, 3), np.nan), n_clusters=2)


def test_cluster_prediction_r_matches_corrcoef():
    rng = np.random.default_rng(3)
    spks = rng.normal(size=(40, 120))
    pred = spks + rng.normal(size=spks.shape) * 2.0
    labels = rng.integers(0, 4, 40)
    r = cluster_prediction_r(spks, pred, labels, n_clusters=5)
    for c in range(4):
        m = labels == c
        ref = np.corrcoef(spks[m].mean(0), pred[m].mean(0))[0, 1]
        assert r[c] == pytest.approx(ref, rel=1e-10)
    assert np.isnan(r[4])  # empty cluster


def test_locality_index_hand_computation():
    # 2 x 2 grid of 200 um squares; all neurons: 4, 2, 1, 1 per square.
    x = np.array([10, 20, 30, 40, 250, 260, 20, 250], dtype=float)
    y = np.array([10, 10, 10, 10, 10, 10, 300, 300], dtype=float)
    labels = np.array([0, 0, 1, 1, 1, 2, 1, 2])
    li = locality_index(x, y, labels, n_clusters=4)
    q = {"a": 4 / 8, "b": 2 / 8, "c": 1 / 8, "d": 1 / 8}  # squares a=(0,0) b=(1,0) c=(0,1) d=(1,1)
    # cluster 0: both in a; cluster 1: a, a, b, c; cluster 2: b, d.
    assert li[0] == pytest.approx(np.log(1 / q["a"]))
    kl_1 = 0.5 * np.log(0.5 / q["a"]) + 0.25 * np.log(0.25 / q["b"]) + 0.25 * np.log(0.25 / q["c"])
    assert li[1] == pytest.approx(kl_1)
    assert li[2] == pytest.approx(0.5 * np.log(0.5 / q["b"]) + 0.5 * np.log(0.5 / q["d"]))
    assert np.isnan(li[3])


def test_locality_index_random_vs_confined():
    rng = np.random.default_rng(4)
    n = 20000
    x, y = rng.uniform(0, 1000, n), rng.uniform(0, 1000, n)  # 5 x 5 squares
    labels = rng.integers(0, 4, n)
    in_one = (x < 200) & (y < 200)
    labels[in_one & (rng.uniform(size=n) < 0.5)] = 4  # half the neurons of one square
    li = locality_index(x, y, labels)
    assert np.all(li[:4] < 0.01)  # spread like the population (bias ~ 24 / (2 * 5000))
    assert li[4] == pytest.approx(np.log(n / in_one.sum()), rel=1e-12)
    assert li[4] > 3.0


def test_locality_index_errors():
    with pytest.raises(ValueError, match="labels must be"):
        locality_index(np.zeros(3), np.zeros(3), np.array([0, 1]))
    with pytest.raises(ValueError, match="grid_um"):
        locality_index(np.zeros(3), np.zeros(3), np.zeros(3, int), grid_um=0)
