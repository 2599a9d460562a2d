"""HMM inference against brute force over all state paths and float64 references (SPEC section 5)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal, norm

from jfacemap.hmm.inference import (
    associative_forward,
    forward,
    forward_backward,
    gaussian_log_emissions,
    log_likelihood,
    sample,
    viterbi,
)


def random_model(rng, K, T, D=2, sigma2=0.7, stickiness=0.0):
    A = rng.dirichlet(np.ones(K), size=K) + stickiness * np.eye(K)
    A /= A.sum(1, keepdims=True)
    init = rng.dirichlet(np.ones(K))
    means = rng.normal(size=(K, D))
    x = rng.normal(size=(T, D))
    # Per-dimension normal densities: an independent route to the emissions.
    log_em = norm.logpdf(x[:, None, :], means[None], np.sqrt(sigma2)).sum(-1)
    return np.log(init), np.log(A), log_em


def f32(*arrays):
    return [jnp.asarray(a, jnp.float32) for a in arrays]


def brute_force(log_init, log_A, log_em):
    """float64 enumeration of all K^T paths: ll, filtered, posteriors, pair counts, best path."""
    T, K = log_em.shape
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    steps = np.arange(T)
    trans = np.concatenate([np.zeros((len(paths), 1)), log_A[paths[:, :-1], paths[:, 1:]]], axis=1)
    per_step = trans + log_em[steps, paths]
    per_step[:, 0] += log_init[paths[:, 0]]
    prefix = np.cumsum(per_step, axis=1)  # log p(h_0..t, x_0..t) for each path's prefix
    ll = logsumexp(prefix[:, -1])
    onehot = paths[..., None] == np.arange(K)  # (paths, T, K)
    weights = np.exp(prefix[:, -1] - ll)
    posteriors = np.einsum("p,ptk->tk", weights, onehot)
    # Each prefix appears equally often among full paths, so normalising prefix weights gives filtering.
    prefix_w = np.exp(prefix - logsumexp(prefix, axis=0))
    filtered = np.einsum("pt,ptk->tk", prefix_w, onehot)
    counts = np.einsum("p,pti,ptj->ij", weights, onehot[:, :-1], onehot[:, 1:])
    return ll, filtered, posteriors, counts, paths[np.argmax(prefix[:, -1])]


def test_emissions_match_scipy():
    rng = np.random.default_rng(0)
    x, means, sigma2 = rng.normal(size=(30, 5)) * 3, rng.normal(size=(4, 5)), 0.3
    got = gaussian_log_emissions(*f32(x, means), sigma2)
    ref = np.stack([multivariate_normal(m, sigma2 * np.eye(5)).logpdf(x) for m in means], axis=1)
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-4)
    # A point on a mean: the distance must be 0, never negative.
    on_mean = gaussian_log_emissions(*f32(means[:1] * 100, means * 100), sigma2)
    assert float(on_mean[0, 0]) == pytest.approx(-2.5 * np.log(2 * np.pi * sigma2), abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiny_model_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    log_init, log_A, log_em = random_model(rng, K=3, T=6)
    ll, filtered, posteriors, counts, best = brute_force(log_init, log_A, log_em)
    args = f32(log_init, log_A, log_em)

    got_ll, got_filtered, got_norms = forward(*args)
    np.testing.assert_allclose(got_ll, ll, rtol=1e-6)
    np.testing.assert_allclose(np.sum(got_norms), ll, rtol=1e-6)
    np.testing.assert_allclose(got_filtered, filtered, atol=2e-6)
    np.testing.assert_allclose(log_likelihood(*args), ll, rtol=1e-6)

    smoothed = forward_backward(*args)
    np.testing.assert_allclose(smoothed.log_likelihood, ll, rtol=1e-6)
    np.testing.assert_allclose(smoothed.posteriors, posteriors, atol=2e-6)
    np.testing.assert_allclose(smoothed.transition_counts, counts, atol=5e-6)
    np.testing.assert_array_equal(viterbi(*args), best)

    assoc_ll, assoc_filtered = associative_forward(*args)
    np.testing.assert_allclose(assoc_ll, ll, rtol=1e-6)
    np.testing.assert_allclose(assoc_filtered, filtered, atol=2e-6)


def test_masked_steps_are_removed_from_the_chain():
    rng = np.random.default_rng(3)
    log_init, log_A, log_em = random_model(rng, K=3, T=6)
    ll, filtered, posteriors, counts, best = brute_force(log_init, log_A, log_em)
    # Padding at the start, in a gap and at the end, holding garbage (NaN, huge values).
    layout = [False, False, True, True, True, False, True, True, True, False, False, False]
    mask = np.array(layout)
    padded = np.full((len(layout), 3), np.nan)
    padded[mask] = log_em
    padded[np.flatnonzero(~mask)[:3]] = 1e4
    args = f32(log_init, log_A, padded) + [jnp.asarray(mask)]

    got_ll, got_filtered, got_norms = forward(*args)
    np.testing.assert_allclose(got_ll, ll, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(got_norms)[~mask], 0.0)
    np.testing.assert_allclose(np.asarray(got_filtered)[mask], filtered, atol=2e-6)
    # Masked steps repeat the last real filtered distribution (the initial one before any).
    expected_held = np.array([np.exp(log_init), np.exp(log_init), filtered[2], filtered[5], filtered[5], filtered[5]])
    np.testing.assert_allclose(np.asarray(got_filtered)[~mask], expected_held, atol=2e-6)

    smoothed = forward_backward(*args)
    np.testing.assert_allclose(smoothed.log_likelihood, ll, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(smoothed.posteriors)[mask], posteriors, atol=2e-6)
    np.testing.assert_array_equal(np.asarray(smoothed.posteriors)[~mask], 0.0)
    np.testing.assert_allclose(smoothed.transition_counts, counts, atol=5e-6)

    path = np.asarray(viterbi(*args))
    np.testing.assert_array_equal(path[mask], best)
    np.testing.assert_array_equal(path[~mask], -1)

    assoc_ll, assoc_filtered = associative_forward(*args)
    np.testing.assert_allclose(assoc_ll, ll, rtol=1e-6)
    np.testing.assert_allclose(assoc_filtered, got_filtered, atol=2e-6)

    # Gradients stay finite (NaN padding must not leak through jnp.where).
    grad = jax.grad(log_likelihood, argnums=(1, 2))(*args)
    assert all(np.all(np.isfinite(g)) for g in grad)
    np.testing.assert_array_equal(np.asarray(grad[1])[~mask], 0.0)


def test_batch_of_different_lengths_is_the_sum_of_its_sequences():
    rng = np.random.default_rng(4)
    log_init, log_A, _ = random_model(rng, K=4, T=1)
    lengths = [50, 120, 7]
    log_ems = [random_model(rng, K=4, T=n)[2] for n in lengths]
    padded = np.zeros((3, max(lengths), 4))
    mask = np.zeros((3, max(lengths)), bool)
    for i, le in enumerate(log_ems):
        padded[i, : len(le)], mask[i, : len(le)] = le, True
    batched = jax.vmap(log_likelihood, in_axes=(None, None, 0, 0))(*f32(log_init, log_A, padded), jnp.asarray(mask))
    single = [log_likelihood(*f32(log_init, log_A, le)) for le in log_ems]
    np.testing.assert_allclose(batched, single, rtol=1e-6)
    total = sum(numpy_forward(log_init, log_A, le) for le in log_ems)
    np.testing.assert_allclose(np.sum(batched), total, rtol=1e-6)


def numpy_forward(log_init, log_A, log_em):
    """float64 scaled forward pass, an explicit Python loop."""
    A, shift = np.exp(log_A), log_em.max(axis=1, keepdims=True)
    emit = np.exp(log_em - shift)
    f, logs = np.exp(log_init), np.empty(len(log_em))
    for t in range(len(log_em)):
        p = (f @ A if t else f) * emit[t]
        s = p.sum()
        f, logs[t] = p / s, np.log(s)
    return logs.sum() + shift.sum()


def long_problem(T, seed=5, K=4, D=16, sigma2=0.25):
    """Sticky 4-state chain with well-separated 16-d means: ~-10 nats per step."""
    rng = np.random.default_rng(seed)
    A = np.full((K, K), 0.02) + np.eye(K) * (1 - 0.02 * K)
    means = rng.normal(size=(K, D))
    jumps = rng.random(T) < 0.08
    states = np.cumsum(jumps * rng.integers(1, K, size=T)) % K
    x = (means[states] + rng.normal(size=(T, D)) * np.sqrt(sigma2)).astype(np.float32)
    return np.log(np.full(K, 1 / K)), np.log(A), x, means, sigma2


def test_float32_scan_matches_float64_loop_at_100k():
    log_init, log_A, x, means, sigma2 = long_problem(100_000)
    xd = x.astype(np.float64)
    log_em = -0.5 * ((xd[:, None] - means[None]) ** 2).sum(-1) / sigma2 - 8 * np.log(2 * np.pi * sigma2)
    ref = numpy_forward(log_init, log_A, log_em)
    got = forward(*f32(log_init, log_A), gaussian_log_emissions(*f32(x, means), sigma2))[0]
    assert abs(float(got) - ref) <= 1e-5 * abs(ref)


def x64_log_space_forward(log_init, log_A, log_em):
    """Reference in float64, in log space (logsumexp), as a plain scan: (ll, filtered)."""
    with jax.enable_x64(True):
        log_init, log_A, log_em = (jnp.asarray(a, jnp.float64) for a in (log_init, log_A, log_em))

        def step(log_alpha, le):
            nxt = jax.nn.logsumexp(log_alpha[:, None] + log_A, axis=0) + le
            return nxt, nxt

        first = log_init + log_em[0]
        _, rest = jax.lax.scan(step, first, log_em[1:])
        log_alpha = jnp.concatenate([first[None], rest])
        ll = jax.nn.logsumexp(log_alpha[-1])
        filtered = jnp.exp(log_alpha - jax.nn.logsumexp(log_alpha, axis=1, keepdims=True))
        return float(ll), np.asarray(filtered)


def test_float32_scan_matches_float64_at_one_million():
    log_init, log_A, x, means, sigma2 = long_problem(1_000_000)
    log_em32 = gaussian_log_emissions(*f32(x, means), sigma2)
    xd = x.astype(np.float64)
    sq = (xd**2).sum(1)[:, None] - 2 * xd @ means.T + (means**2).sum(1)[None]
    log_em64 = -0.5 * sq / sigma2 - 8 * np.log(2 * np.pi * sigma2)
    ref_ll, ref_filtered = x64_log_space_forward(log_init, log_A, log_em64)
    got_ll, got_filtered, _ = forward(*f32(log_init, log_A), log_em32)
    assert abs(float(got_ll) - ref_ll) <= 1e-5 * abs(ref_ll)
    np.testing.assert_allclose(got_filtered[::997], ref_filtered[::997], atol=1e-3)


@pytest.mark.slow
def test_float32_scan_matches_float64_loop_at_one_million():
    log_init, log_A, x, means, sigma2 = long_problem(1_000_000, seed=6)
    xd = x.astype(np.float64)
    log_em = -0.5 * ((xd[:, None] - means[None]) ** 2).sum(-1) / sigma2 - 8 * np.log(2 * np.pi * sigma2)
    ref = numpy_forward(log_init, log_A, log_em)
    got = forward(*f32(log_init, log_A), gaussian_log_emissions(*f32(x, means), sigma2))[0]
    assert abs(float(got) - ref) <= 1e-5 * abs(ref)
    assoc = associative_forward(*f32(log_init, log_A), gaussian_log_emissions(*f32(x, means), sigma2))[0]
    assert abs(float(assoc) - ref) <= 1e-5 * abs(ref)


@pytest.mark.parametrize(
    "K, T, sigma2, masked",
    # Few shapes: each costs seconds of XLA compilation on a CPU.
    [(2, 1, 1.0, False), (3, 7, 0.05, True), (5, 20_000, 0.02, True)],
)
def test_associative_scan_matches_sequential(K, T, sigma2, masked):
    rng = np.random.default_rng(K * T)
    log_init, log_A, log_em = random_model(rng, K, T, D=3, sigma2=sigma2, stickiness=2.0)
    mask = rng.random(T) > 0.3 if masked else None
    if masked:
        mask[-1] = False
    args = f32(log_init, log_A, log_em) + ([jnp.asarray(mask)] if masked else [])
    seq_ll, seq_filtered, _ = forward(*args)
    assoc_ll, assoc_filtered = associative_forward(*args)
    np.testing.assert_allclose(assoc_ll, seq_ll, rtol=2e-6)
    np.testing.assert_allclose(assoc_filtered, seq_filtered, atol=2e-4)


def numpy_viterbi(log_init, log_A, log_em):
    score, pointers = log_init + log_em[0], []
    for le in log_em[1:]:
        cand = score[:, None] + log_A
        pointers.append(cand.argmax(0))
        score = cand.max(0) + le
    path = [int(score.argmax())]
    for p in reversed(pointers):
        path.append(int(p[path[-1]]))
    return np.array(path[::-1])


def test_viterbi_matches_float64_dynamic_programming_on_long_sequence():
    log_init, log_A, x, means, _ = long_problem(3000, seed=7)
    sigma2 = 4.0  # noisy emissions, so the path is decided by the transitions too
    xd = x.astype(np.float64)
    log_em = -0.5 * ((xd[:, None] - means[None]) ** 2).sum(-1) / sigma2
    got = np.asarray(viterbi(*f32(log_init, log_A, log_em)))
    ref = numpy_viterbi(log_init, log_A, log_em)
    assert np.mean(got == ref) > 0.999  # float32 rounding may break a rare near-tie


def test_posteriors_and_counts_are_consistent_on_long_sequence():
    log_init, log_A, x, means, sigma2 = long_problem(20_000, seed=8)
    smoothed = forward_backward(*f32(log_init, log_A), gaussian_log_emissions(*f32(x, means), 4 * sigma2))
    np.testing.assert_allclose(np.asarray(smoothed.posteriors).sum(1), 1.0, atol=1e-5)
    counts = np.asarray(smoothed.transition_counts)
    assert counts.sum() == pytest.approx(20_000 - 1, rel=1e-4)
    # Column sums of the pair counts are the posterior occupancies of steps 1..T-1.
    np.testing.assert_allclose(counts.sum(0), np.asarray(smoothed.posteriors)[1:].sum(0), rtol=1e-3)


def test_sample_has_the_model_statistics():
    K, D, sigma2 = 3, 4, 0.5
    A = np.array([[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.3, 0.3, 0.4]])
    init = np.array([0.2, 0.5, 0.3])
    means = np.arange(K * D, dtype=float).reshape(K, D)
    states, x = sample(jax.random.key(0), *f32(init, A, means), sigma2, 200_000)
    states, x = np.asarray(states), np.asarray(x)
    counts = np.zeros((K, K))
    np.add.at(counts, (states[:-1], states[1:]), 1)
    np.testing.assert_allclose(counts / counts.sum(1, keepdims=True), A, atol=0.01)
    residual = x - means[states]
    assert residual.var() == pytest.approx(sigma2, rel=0.02)
    assert np.abs(residual.mean()) < 0.01
    keys = jax.random.split(jax.random.key(1), 4000)
    firsts = jax.vmap(lambda k: sample(k, *f32(init, A, means), sigma2, 2)[0][0])(keys)
    np.testing.assert_allclose(np.bincount(np.asarray(firsts), minlength=K) / 4000, init, atol=0.03)
