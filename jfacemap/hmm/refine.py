"""Re-seeding unused states: a way out of the gradient fit's commonest local optimum.

With the SPEC's initial means (random timepoints) and features whose
between-state variance is small next to the within-state variance (the
regime of sigma2 = 1 on z-scored deep features), a mean started on one noisy
timepoint is farther from every state's data (distance^2 ~ 2 D sigma2) than
a mean near the centroid of several states (~ D sigma2 + their spread). So a
fit ends with some states (often a third of them) holding almost no
timepoints, and one or a few "catch-all" states covering many true states.
The gradient cannot leave that optimum: dead states get no gradient.

`reseed_proposal` moves the dead states onto the data of the catch-alls by
bisecting k-means in the Viterbi assignment of the training data: it keeps
splitting the cluster whose first principal axis stands out most against
noise (top covariance eigenvalue above `significance` times the largest
eigenvalue of pure noise, sigma_hat^2 (1 + sqrt(D / n))^2, Marchenko-Pastur;
sigma_hat^2 = the cluster's mean per-feature variance) into two by 2-means,
and gives one half to a dead state, which inherits the parent's transitions.
When no dead state is left but a cluster still stands out, the pair of
states whose merge raises the within-state sum of squares least,
n_i n_j / (n_i + n_j) |c_i - c_j|^2, is merged to free one, if that costs
less than the split gains (e.g. two initial means that landed on one state).
The caller refits from there and keeps the result only if the training
log-likelihood rose (`pipeline.run_hmm(refine=...)`), so a poor proposal
costs time, never quality.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jfacemap.hmm.fit import HMMParams, most_likely_states

__all__ = ["two_means", "split_score", "reseed_proposal"]


def _merge_costs(counts: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(K, K) rise of the sum of squares when two clusters share one mean,
    n_i n_j / (n_i + n_j) |c_i - c_j|^2; +inf on the diagonal."""
    sq = ((centroids[:, None, :] - centroids[None, :, :]) ** 2).sum(-1)
    cost = counts[:, None] * counts[None, :] / np.maximum(counts[:, None] + counts[None, :], 1) * sq
    np.fill_diagonal(cost, np.inf)
    return cost


def split_score(points: np.ndarray) -> tuple[float, np.ndarray]:
    """(top covariance eigenvalue / pure-noise edge, first principal axis (D,)) of points (n, D).

    A score above 1 means the cluster is unlikely to be one spherical Gaussian.
    """
    points = np.asarray(points, np.float64)
    n, D = points.shape
    centred = points - points.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    top = s[0] ** 2 / n
    noise = (centred ** 2).sum() / (n * D)
    edge = noise * (1.0 + np.sqrt(D / n)) ** 2
    return float(top / edge) if edge > 0 else 0.0, vt[0]


def two_means(points: np.ndarray, axis: np.ndarray, n_iter: int = 20) -> np.ndarray:
    """2-means of points (n, D) started from the sign of the projection on `axis`; (n,) bool sides."""
    points = np.asarray(points, np.float64)
    side = (points - points.mean(0)) @ axis > 0
    for _ in range(n_iter):
        if side.all() or not side.any():
            break
        a, b = points[side].mean(0), points[~side].mean(0)
        new = ((points - a) ** 2).sum(1) < ((points - b) ** 2).sum(1)
        if np.array_equal(new, side):
            break
        side = new
    return side


def reseed_proposal(params: HMMParams, sequences, min_fraction: float = 0.05, significance: float = 1.5,
                    min_points: int = 8) -> tuple[HMMParams, int]:
    """Parameters whose dead states are moved onto split clusters of the data (see the module docstring).

    params: a fitted HMM; sequences: the training data, (T_i, D) arrays (or one);
    min_fraction: a state with fewer Viterbi timepoints than this fraction of
    the mean count T / K is dead; significance: split only clusters scoring
    above it (`split_score`); min_points: smallest cluster to split.
    Returns (proposed params, number of merges and splits); 0 returns params unchanged.
    """
    K = params.n_states
    seqs = [np.asarray(s, np.float32) for s in (sequences if isinstance(sequences, (list, tuple)) else [sequences])]
    x = np.concatenate(seqs).astype(np.float64)
    states = np.concatenate([most_likely_states(params, s) for s in seqs])
    counts = np.bincount(states, minlength=K)
    free = [int(k) for k in np.argsort(counts, kind="stable") if counts[k] < min_fraction * len(x) / K]
    means = np.asarray(params.means, np.float64).copy()
    Q = np.asarray(params.log_transition, np.float64).copy()
    logits = np.asarray(params.initial_logits, np.float64).copy()
    clusters = {k: np.flatnonzero(states == k) for k in range(K) if k not in free}

    def candidate(k):
        idx = clusters[k]
        if len(idx) < min_points:
            return None
        score, axis = split_score(x[idx])
        return (score, axis) if score > significance else None

    def sum_sq(idx):
        pts = x[idx]
        return float(((pts - pts.mean(0)) ** 2).sum())

    def cheapest_merge(exclude):
        """(cost, pair): the pair of clusters whose merge raises the sum of squares least."""
        keys = [k for k in clusters if k not in exclude]
        if len(keys) < 2:
            return np.inf, None
        n = np.array([len(clusters[k]) for k in keys], np.float64)
        c = np.stack([x[clusters[k]].mean(0) for k in keys])
        cost = _merge_costs(n, c)
        a, b = np.unravel_index(np.argmin(cost), cost.shape)
        return float(cost[a, b]), (keys[a], keys[b])

    scored = {k: candidate(k) for k in clusters}
    moved = 0
    for _ in range(2 * K):  # each pass splits one cluster (after at most one merge), or retires it
        ready = {k: v for k, v in scored.items() if v is not None}
        if not ready:
            break
        k = max(ready, key=lambda s: ready[s][0] * len(clusters[s]))
        idx = clusters[k]
        side = two_means(x[idx], ready[k][1])
        scored[k] = None
        if side.all() or not side.any():
            continue
        if not free:
            # No unused state left: merge the cheapest pair if that costs less than the split gains.
            gain = sum_sq(idx) - sum_sq(idx[side]) - sum_sq(idx[~side])
            cost, pair = cheapest_merge({k})
            if pair is None or not cost < gain:
                continue
            i, j = pair if len(clusters[pair[0]]) >= len(clusters[pair[1]]) else pair[::-1]
            clusters[i] = np.concatenate([clusters[i], clusters.pop(j)])
            means[i] = x[clusters[i]].mean(0)
            scored.pop(j)
            free.append(j)
            moved += 1
        j = free.pop()
        clusters[k], clusters[j] = idx[side], idx[~side]
        means[k], means[j] = x[clusters[k]].mean(0), x[clusters[j]].mean(0)
        row, column = Q[k, :].copy(), Q[:, k].copy()
        Q[j, :], Q[:, j] = row, column  # j enters and leaves like its parent ...
        Q[j, j] = Q[k, k]
        Q[j, k] = Q[k, j] = 0.0         # ... and the halves start with no preference for each other
        logits[j] = logits[k]
        scored[k], scored[j] = candidate(k), candidate(j)
        moved += 1
    if moved == 0:
        return params, 0
    proposal = HMMParams(jnp.asarray(Q, jnp.float32), jnp.asarray(means, jnp.float32),
                         jnp.asarray(logits, jnp.float32), params.sigma2)
    return proposal, moved
