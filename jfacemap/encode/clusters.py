"""Groups of co-active neurons and where they sit (SPEC section 3, "Analyses").

Scaled k-means: each neuron i (z-scored activity x_i, length T) is modelled
as x_i ~ lambda_i mu_c(i), with unit-norm centroids mu and scales
lambda_i >= 0 (a negative scale would pool anti-correlated neurons, whose
mean trace then cancels). The objective sum_i ||x_i - lambda_i mu_c(i)||^2
is minimised by exact block-coordinate steps, so it never increases:
  - assign: given mu, the best cluster and scale of neuron i are
    c(i) = argmax_c x_i . mu_c and lambda_i = max(x_i . mu_c(i), 0);
  - update: given labels and scales, the best unit-norm centroid is
    mu_c = normalise(sum_{i in c} lambda_i x_i);
  - a cluster left with no weight is re-seeded on the worst-fit neuron's
    trace (that neuron's residual can then only drop to zero).
Initialisation is greedy k-means++: at each step 10 neurons are drawn with
probability proportional to their residual under the centroids so far, each
is averaged with its best-aligned neurons (a single trace is mostly private
noise), and the one lowering the objective most becomes a centroid. Lloyd
rounds cannot undo two seeds in one cluster, so n_init > 1 keeps the best of
several runs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import sparse

__all__ = ["ScaledKMeans", "scaled_kmeans", "cluster_prediction_r", "locality_index"]


class ScaledKMeans(NamedTuple):
    """labels (n_neurons,) int64; scales (n_neurons,) float64 >= 0;
    centroids (n_clusters, T) float32, unit norm; objective (n_iter_run + 1,)
    float64, sum of squared residuals after initialisation and after each
    iteration (non-increasing, up to float32 rounding of the projections)."""

    labels: np.ndarray
    scales: np.ndarray
    centroids: np.ndarray
    objective: np.ndarray


def _unit_rows(M: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(M, axis=1, keepdims=True)
    return M / np.where(norms > 0, norms, 1.0)


def _init_centroids(X: np.ndarray, sq_norms: np.ndarray, n_clusters: int, rng) -> np.ndarray:
    """Greedy k-means++ seeding (10 candidates a step) with denoised seeds (float32, (K, T), unit rows)."""
    n = X.shape[0]
    n_trials = min(n, 10)
    n_neighbours = max(1, n // (2 * n_clusters))
    inv_norm = 1.0 / np.sqrt(np.maximum(sq_norms, 1e-30))
    best = np.zeros(n)
    seeds = []
    for _ in range(n_clusters):
        resid = np.maximum(sq_norms - best**2, 0.0)
        total = resid.sum()
        cands = rng.choice(n, size=n_trials, p=resid / total) if total > 0 else rng.integers(n, size=n_trials)
        # A single neuron's trace is mostly private noise: average each
        # candidate with the neurons most aligned to it (half a cluster's
        # worth, weighted by their projections) before judging it.
        proj = X @ (X[cands] * inv_norm[cands, None]).T  # (n, n_trials)
        near = np.argpartition(-proj, min(n_neighbours, n) - 1, axis=0)[:n_neighbours]
        w = np.zeros_like(proj)
        np.put_along_axis(w, near, np.maximum(np.take_along_axis(proj, near, axis=0), 0.0), axis=0)
        trial = _unit_rows((w.T @ X).astype(np.float64)).astype(np.float32)
        # Keep the candidate that lowers the total residual most.
        new_best = np.maximum(best[:, None], (X @ trial.T).astype(np.float64))
        pick = int(np.argmax(np.sum(new_best**2, axis=0)))
        seeds.append(trial[pick])
        best = new_best[:, pick]
    return np.stack(seeds)


def _refine(Xa: np.ndarray, sq_norms: np.ndarray, mu: np.ndarray, n_iter: int) -> ScaledKMeans:
    """Assign/update rounds from centroids mu until labels settle or n_iter."""
    n, n_clusters = Xa.shape[0], mu.shape[0]

    def assign(mu: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        proj = (Xa @ mu.T).astype(np.float64)  # (n, K)
        labels = np.argmax(proj, axis=1)
        scales = np.maximum(proj[np.arange(n), labels], 0.0)
        return labels, scales, float(np.sum(sq_norms - scales**2))

    labels, scales, obj = assign(mu)
    history = [obj]
    for _ in range(n_iter):
        weights = sparse.csr_matrix((scales, (labels, np.arange(n))), shape=(n_clusters, n))
        summed = np.asarray(weights @ Xa, dtype=np.float64)
        mu = _unit_rows(summed).astype(np.float32)
        empty = np.flatnonzero(np.linalg.norm(summed, axis=1) == 0)
        if empty.size:
            worst = np.argsort(sq_norms - scales**2)[::-1][: empty.size]
            mu[empty] = _unit_rows(Xa[worst].astype(np.float64)).astype(np.float32)
        new_labels, scales, obj = assign(mu)
        history.append(obj)
        settled = np.array_equal(new_labels, labels) and not empty.size
        labels = new_labels
        if settled:
            break
    return ScaledKMeans(labels.astype(np.int64), scales, mu, np.asarray(history))


def scaled_kmeans(
    X: np.ndarray, n_clusters: int = 100, n_iter: int = 50, seed: int = 0, n_init: int = 1
) -> ScaledKMeans:
    """Cluster neurons: X (n_neurons, T), z-scored activity (SPEC: 100 clusters).

    Each of n_init runs seeds the centroids and does up to n_iter
    assign/update rounds, stopping early once labels settle; the run with the
    lowest final objective is returned (a `ScaledKMeans`). Cost per round:
    one (n_neurons x T) @ (T x K) product.
    """
    Xa = np.asarray(X, dtype=np.float32)
    if Xa.ndim != 2 or Xa.size == 0:
        raise ValueError(f"X must be non-empty (n_neurons, T), got shape {Xa.shape}")
    if not np.all(np.isfinite(Xa)):
        raise ValueError("X has non-finite values")
    n = Xa.shape[0]
    if int(n_clusters) != n_clusters or not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be an integer in 1..{n} (the number of neurons), got {n_clusters}")
    if int(n_init) != n_init or n_init < 1:
        raise ValueError(f"n_init must be a positive integer, got {n_init}")
    rng = np.random.default_rng(seed)
    sq_norms = np.einsum("ij,ij->i", Xa, Xa, dtype=np.float64)
    best: ScaledKMeans | None = None
    for _ in range(int(n_init)):
        mu = _init_centroids(Xa, sq_norms, int(n_clusters), rng)
        run = _refine(Xa, sq_norms, mu, int(n_iter))
        if best is None or run.objective[-1] < best.objective[-1]:
            best = run
    assert best is not None
    return best


def _cluster_means(M: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    counts = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    onehot = sparse.csr_matrix(
        (np.ones(labels.size), (labels, np.arange(labels.size))), shape=(n_clusters, labels.size)
    )
    sums = np.asarray(onehot @ np.asarray(M, dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


def _check_labels(labels: np.ndarray, n: int, n_clusters: int | None) -> tuple[np.ndarray, int]:
    lab = np.asarray(labels)
    if lab.shape != (n,) or not np.issubdtype(lab.dtype, np.integer) or (n and lab.min() < 0):
        raise ValueError(f"labels must be ({n},) non-negative integers, got shape {lab.shape} {lab.dtype}")
    k = int(lab.max()) + 1 if n_clusters is None else int(n_clusters)
    if n and lab.max() >= k:
        raise ValueError(f"labels go up to {lab.max()} but n_clusters is {k}")
    return lab.astype(np.int64), k


def cluster_prediction_r(
    spks_test: np.ndarray, pred_test: np.ndarray, labels: np.ndarray, n_clusters: int | None = None
) -> np.ndarray:
    """Per cluster (n_clusters,): Pearson r between the mean trace of its
    neurons and the mean of their predictions.

    spks_test, pred_test: (n_neurons, T_test); labels (n_neurons,).
    NaN for empty clusters and for constant traces.
    """
    s, p = np.asarray(spks_test), np.asarray(pred_test)
    if s.ndim != 2 or s.shape != p.shape:
        raise ValueError(f"spks_test {s.shape} and pred_test {p.shape} must be the same (n_neurons, T)")
    lab, k = _check_labels(labels, s.shape[0], n_clusters)
    a = _cluster_means(s, lab, k)
    b = _cluster_means(p, lab, k)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    den = np.sqrt((a**2).sum(axis=1) * (b**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def locality_index(
    xpos: np.ndarray,
    ypos: np.ndarray,
    labels: np.ndarray,
    grid_um: float = 200.0,
    n_clusters: int | None = None,
) -> np.ndarray:
    """Per cluster (n_clusters,): KL(p_c || q) in nats, p_c the fraction of
    the cluster's neurons in each grid square of `grid_um` and q the fraction
    of all neurons. Squares are counted from the smallest x and y. A
    cluster's neurons are among all neurons, so q > 0 wherever p_c > 0 and no
    epsilon is needed. 0 = spread like the population; log(N / n_square) for
    a cluster confined to one square. NaN for empty clusters.
    """
    x, y = np.asarray(xpos, dtype=np.float64), np.asarray(ypos, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise ValueError(f"xpos {x.shape} and ypos {y.shape} must be equal-length non-empty 1-D arrays")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("neuron positions have non-finite values")
    if not grid_um > 0:
        raise ValueError(f"grid_um must be > 0, got {grid_um}")
    lab, k = _check_labels(labels, x.size, n_clusters)
    ix = np.floor((x - x.min()) / grid_um).astype(np.int64)
    iy = np.floor((y - y.min()) / grid_um).astype(np.int64)
    _, square = np.unique(ix * (iy.max() + 1) + iy, return_inverse=True)
    n_squares = int(square.max()) + 1
    counts = np.zeros((k, n_squares))
    np.add.at(counts, (lab, square), 1.0)
    q = counts.sum(axis=0) / x.size
    sizes = counts.sum(axis=1)
    out = np.full(k, np.nan)
    for c in np.flatnonzero(sizes):
        p = counts[c] / sizes[c]
        on = p > 0
        out[c] = float(np.sum(p[on] * np.log(p[on] / q[on])))
    return out
