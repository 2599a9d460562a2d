"""Fitting the HMM: parameterisation, gradients, padding, recovery, EM (SPEC section 5)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.special import log_softmax, logsumexp

from jfacemap.hmm.fit import (
    HMMParams,
    check_features,
    default_sigma2,
    downsample,
    em_step,
    fit_hmm,
    fit_hmm_em,
    init_params,
    log_likelihood_per_timepoint,
    make_fit_step,
    mean_log_likelihood,
    most_likely_states,
    pad_sequences,
)
from jfacemap.hmm.optimizers import hmm_optimizer


def numpy_smoother(Q, C, b, sigma2, x):
    """float64 log-space forward-backward: (ll, posteriors (T, K), pair counts (K, K))."""
    log_A, log_init = log_softmax(Q, axis=1), log_softmax(b)
    D = x.shape[1]
    log_em = -0.5 * ((x[:, None, :] - C[None]) ** 2).sum(-1) / sigma2 - 0.5 * D * np.log(2 * np.pi * sigma2)
    T, K = log_em.shape
    la, lb = np.zeros((T, K)), np.zeros((T, K))
    la[0] = log_init + log_em[0]
    for t in range(1, T):
        la[t] = logsumexp(la[t - 1][:, None] + log_A, axis=0) + log_em[t]
    for t in range(T - 2, -1, -1):
        lb[t] = logsumexp(log_A + (log_em[t + 1] + lb[t + 1])[None], axis=1)
    ll = logsumexp(la[-1])
    xi = np.exp(la[:-1, :, None] + log_A[None] + (log_em[1:] + lb[1:])[:, None, :] - ll)
    return ll, np.exp(la + lb - ll), xi.sum(0)


def make_hmm(K=5, D=8, seed=0):
    rng = np.random.default_rng(seed)
    A = np.full((K, K), 0.02)
    A[np.arange(K), (np.arange(K) + 1) % K] = 0.1  # forward sequences, as in the paper's states
    np.fill_diagonal(A, 0.0)
    np.fill_diagonal(A, 1 - A.sum(1))
    return A, np.full(K, 1 / K), rng.normal(size=(K, D))


def sample_numpy(A, init, means, sigma2, T, seed):
    """Independent numpy sampler: (states (T,), x (T, D) float32)."""
    rng = np.random.default_rng(seed)
    cum = np.cumsum(A, axis=1)
    states = np.empty(T, int)
    states[0] = rng.choice(len(init), p=init)
    u = rng.random(T)
    for t in range(1, T):
        states[t] = min(np.searchsorted(cum[states[t - 1]], u[t]), len(init) - 1)
    x = means[states] + rng.normal(size=(T, means.shape[1])) * np.sqrt(sigma2)
    return states, x.astype(np.float32)


def test_init_follows_spec_and_seed():
    x = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
    p = init_params([x[:120], x[120:]], n_states=6, sigma2=0.5, seed=3)
    np.testing.assert_array_equal(p.log_transition, 3.0 * np.eye(6))
    A = np.asarray(p.transition_matrix)
    np.testing.assert_allclose(A.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.diag(A), np.e**3 / (np.e**3 + 5), rtol=1e-6)
    np.testing.assert_allclose(p.initial, np.full(6, 1 / 6), rtol=1e-6)
    # Means are distinct timepoints of the data.
    rows = [np.flatnonzero((x == m).all(1)) for m in np.asarray(p.means)]
    assert all(len(r) == 1 for r in rows) and len({int(r[0]) for r in rows}) == 6
    assert p.sigma2 == 0.5
    np.testing.assert_array_equal(init_params([x], 6, 0.5, seed=3).means, p.means)
    assert not np.array_equal(init_params([x], 6, 0.5, seed=4).means, p.means)


def test_default_sigma2_is_summed_variance_over_256():
    rng = np.random.default_rng(1)

    def zscored(n, d):
        z = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, size=d) + 7
        return (z - z.mean(0)) / z.std(0)

    assert default_sigma2(zscored(1000, 256)) == pytest.approx(1.0, rel=1e-6)
    assert default_sigma2(zscored(1000, 30)) == pytest.approx(30 / 256, rel=1e-6)
    a, b = rng.normal(size=(300, 4)), rng.normal(size=(100, 4)) * 3 + 1
    pooled = np.var(np.concatenate([a, b]), axis=0).sum() / 256
    assert default_sigma2([a, b]) == pytest.approx(pooled, rel=1e-6)
    assert default_sigma2(2 * a) == pytest.approx(4 * default_sigma2(a), rel=1e-6)
    with pytest.raises(ValueError, match="constant"):
        default_sigma2(np.ones((10, 3)))


def test_downsample_is_block_mean_dropping_the_remainder():
    x = np.random.default_rng(2).normal(size=(53, 3))
    got = downsample(x, 10)
    assert got.shape == (5, 3) and got.dtype == np.float32
    for i in range(5):
        np.testing.assert_allclose(got[i], x[10 * i : 10 * i + 10].mean(0), rtol=1e-6)
    np.testing.assert_array_equal(downsample(x, 1), x.astype(np.float32))
    with pytest.raises(ValueError, match="fewer than"):
        downsample(x[:5], 10)
    with pytest.raises(ValueError, match="factor"):
        downsample(x, 0)


@pytest.mark.parametrize(
    "bad, n_states, message",
    [
        (np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]]), 2, "non-finite"),
        (np.array([[0.0, np.inf], [1.0, 2.0], [3.0, 4.0]]), 2, "non-finite"),
        (np.zeros(10), 2, "2-D"),
        (np.zeros((4, 3, 2)), 2, "2-D"),
        (np.zeros((4, 3)), 5, "too few"),
        (np.zeros((4, 0)), 2, "0 columns"),
        (np.array([["a", "b"]]), 1, "real numbers"),
    ],
)
def test_bad_features_raise(bad, n_states, message):
    with pytest.raises(ValueError, match=message):
        check_features(bad, n_states)


def test_fit_rejects_bad_sequence_lists():
    x = np.random.default_rng(3).normal(size=(50, 3))
    with pytest.raises(ValueError, match="different numbers of features"):
        fit_hmm([x, x[:, :2]], 2, max_steps=1)
    with pytest.raises(ValueError, match="no sequences"):
        fit_hmm([], 2, max_steps=1)
    with pytest.raises(ValueError, match="too few"):
        fit_hmm([x[:3], x[:4]], 10, max_steps=1)
    with pytest.raises(ValueError, match="non-finite"):
        fit_hmm([x, np.full((5, 3), np.nan)], 2, max_steps=1)
    with pytest.raises(ValueError, match="sigma2"):
        fit_hmm([x], 2, sigma2=-1.0, max_steps=1)
    with pytest.raises(ValueError, match="max_steps"):
        fit_hmm([x], 2, max_steps=0)


def random_params(rng, K=3, D=2, sigma2=0.8):
    return rng.normal(size=(K, K)), rng.normal(size=(K, D)), rng.normal(size=K), sigma2


def test_gradients_match_float64_finite_differences():
    rng = np.random.default_rng(4)
    Q, C, b, sigma2 = random_params(rng)
    seqs = [rng.normal(size=(40, 2)), rng.normal(size=(25, 2)) + 0.5]
    n = sum(len(s) for s in seqs)

    def mean_ll(Q, C, b):
        return sum(numpy_smoother(Q, C, b, sigma2, s)[0] for s in seqs) / n

    batch = pad_sequences(seqs)
    grads = jax.grad(lambda t: mean_log_likelihood(HMMParams(*t, sigma2), batch))(
        tuple(jnp.asarray(a, jnp.float32) for a in (Q, C, b))
    )
    h = 1e-5
    for which, (value, grad) in enumerate(zip((Q, C, b), grads)):
        fd = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            args_plus = [Q.copy(), C.copy(), b.copy()]
            args_minus = [Q.copy(), C.copy(), b.copy()]
            args_plus[which][idx] += h
            args_minus[which][idx] -= h
            fd[idx] = (mean_ll(*args_plus) - mean_ll(*args_minus)) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=2e-3, atol=2e-5)


def test_padding_adds_no_bias():
    rng = np.random.default_rng(5)
    Q, C, b, sigma2 = random_params(rng, K=4, D=3)
    seqs = [rng.normal(size=(n, 3)) for n in (90, 13, 41)]
    params = HMMParams(*(jnp.asarray(a, jnp.float32) for a in (Q, C, b)), sigma2)
    expected = sum(numpy_smoother(Q, C, b, sigma2, s)[0] for s in seqs) / 144
    assert log_likelihood_per_timepoint(params, seqs) == pytest.approx(expected, rel=1e-6)
    # (Gradients of a padded batch: test_gradients_match_float64_finite_differences.)
    # The first step of a fit reports the same number (init params, before any update).
    start = init_params(seqs, 4, sigma2, seed=0)
    _, history = fit_hmm(seqs, 4, sigma2=sigma2, max_steps=1)
    assert history.train_loglik[0] == pytest.approx(log_likelihood_per_timepoint(start, seqs), rel=1e-6)
    assert history.n_train_timepoints == 144


def test_fit_is_deterministic_for_a_seed():
    A, init, means = make_hmm(K=3, D=4, seed=6)
    _, x = sample_numpy(A, init, means, 1.0, 400, seed=6)
    p1, h1 = fit_hmm([x], 3, seed=2, max_steps=8)
    p2, h2 = fit_hmm([x], 3, seed=2, max_steps=8)
    p3, _ = fit_hmm([x], 3, seed=3, max_steps=8)
    for a, b in zip(p1[:3], p2[:3]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(h1.train_loglik, h2.train_loglik)
    assert not np.array_equal(p1.means, p3.means)


def test_default_optimizer_moves_transitions_at_their_own_rate():
    # Adam's first update is lr * g / (|g| + eps): each parameter moves by its
    # group's learning rate, so the step sizes read off the two rates.
    A, init, means = make_hmm(K=3, D=4, seed=5)
    _, x = sample_numpy(A, init, means, 1.0, 300, seed=5)
    start = init_params([x], 3, 1.0, seed=0)
    batch = pad_sequences([x])

    def first_step(optimizer):
        trainable = (start.log_transition, start.means, start.initial_logits)
        moved, _, _ = make_fit_step(optimizer)(start, optimizer.init(trainable), batch)
        return [np.abs(np.asarray(a - b)) for a, b in zip(moved[:3], trainable)]

    dQ, dC, db = first_step(hmm_optimizer(0.04, 0.003))
    np.testing.assert_allclose(dQ[dQ > 1e-6], 0.003, rtol=1e-2)
    np.testing.assert_allclose(dC[dC > 1e-6], 0.04, rtol=1e-2)
    np.testing.assert_allclose(db[db > 1e-6], 0.003, rtol=1e-2)
    assert (dQ > 1e-6).sum() >= 6 and (dC > 1e-6).sum() >= 10 and (db > 1e-6).sum() >= 2
    dQ, dC, _ = first_step(hmm_optimizer(0.04))  # default: a tenth of the means' rate
    np.testing.assert_allclose(dQ[dQ > 1e-6], 0.004, rtol=1e-2)
    np.testing.assert_allclose(dC[dC > 1e-6], 0.04, rtol=1e-2)
    with pytest.raises(ValueError, match="transition_learning_rate"):
        hmm_optimizer(0.05, -1.0)


def test_em_step_is_the_closed_form_m_step():
    rng = np.random.default_rng(7)
    Q, C, b, sigma2 = random_params(rng, K=3, D=2)
    seqs = [rng.normal(size=(30, 2)), rng.normal(size=(12, 2))]
    params = HMMParams(*(jnp.asarray(a, jnp.float32) for a in (Q, C, b)), sigma2)
    new, ll = em_step(params, seqs)
    stats = [numpy_smoother(Q, C, b, sigma2, s) for s in seqs]
    assert ll == pytest.approx(sum(s[0] for s in stats) / 42, rel=1e-6)
    occupancy = sum(s[1].sum(0) for s in stats)
    np.testing.assert_allclose(new.means, sum(s[1].T @ x for s, x in zip(stats, seqs)) / occupancy[:, None], rtol=1e-4)
    counts = sum(s[2] for s in stats)
    np.testing.assert_allclose(new.transition_matrix, counts / counts.sum(1, keepdims=True), rtol=1e-4)
    np.testing.assert_allclose(new.initial, (stats[0][1][0] + stats[1][1][0]) / 2, rtol=1e-4, atol=1e-7)
    assert new.sigma2 == sigma2 and isinstance(new.sigma2, float)


def test_recovers_a_known_hmm_and_beats_or_matches_em():
    K, sigma2 = 5, 1.0
    A, init, means = make_hmm(K=K, D=8, seed=8)
    states, x = sample_numpy(A, init, means, sigma2, 5000, seed=8)
    params, history = fit_hmm([x], K, sigma2=sigma2, learning_rate=0.05, max_steps=1500, min_improvement=1e-6)
    path = most_likely_states(params, x)
    confusion = np.zeros((K, K))
    np.add.at(confusion, (states, path), 1)
    rows, cols = linear_sum_assignment(-confusion)
    assert confusion[rows, cols].sum() / len(x) >= 0.9
    np.testing.assert_allclose(np.asarray(params.transition_matrix)[np.ix_(cols, cols)], A, atol=0.05)
    np.testing.assert_allclose(np.asarray(params.means)[cols], means, atol=0.15)

    em_params, em_history = fit_hmm_em([x], K, sigma2=sigma2, max_steps=100)
    assert np.all(np.diff(em_history.train_loglik) >= -1e-5)  # EM never decreases the likelihood
    grad_ll = log_likelihood_per_timepoint(params, [x])
    em_ll = log_likelihood_per_timepoint(em_params, [x])
    assert grad_ll >= em_ll - 1e-4
    assert grad_ll == pytest.approx(history.train_loglik[history.best_step], abs=1e-6)


def test_early_stopping_on_test_sequences_returns_the_best_params():
    A, init, means = make_hmm(K=4, D=3, seed=9)
    _, x = sample_numpy(A, init, means, 1.0, 1200, seed=9)
    seen = []
    params, history = fit_hmm(
        [x[:400], x[400:900]], 8, test_sequences=[x[900:]], learning_rate=0.2, max_steps=300,
        patience=10, on_step=lambda *args: seen.append(args), transitions_phase=False,
    )
    n = len(history.train_loglik)
    assert history.test_loglik is not None and len(history.test_loglik) == n == len(seen)
    assert [s[0] for s in seen] == list(range(n))
    np.testing.assert_allclose([s[2] for s in seen], history.test_loglik)
    assert history.stopped_early and n >= history.best_step + 10 + 1
    assert history.test_loglik[history.best_step] == history.test_loglik.max()
    # Patience counts from the last gain of at least min_improvement.
    last_value, last_step = -np.inf, 0
    for i, value in enumerate(history.test_loglik):
        if value > last_value + 1e-5:
            last_value, last_step = value, i
    assert n == last_step + 10 + 1
    assert log_likelihood_per_timepoint(params, [x[900:]]) == pytest.approx(
        history.test_loglik[history.best_step], abs=1e-5
    )
    assert history.n_test_timepoints == 300
    # sigma2 defaults to the summed-variance rule on the training sequences, and stays fixed.
    assert params.sigma2 == pytest.approx(default_sigma2([x[:400], x[400:900]]), rel=1e-6)


def test_transitions_phase_continues_from_the_best_joint_fit_with_means_frozen():
    A, init, means = make_hmm(K=4, D=3, seed=9)
    _, x = sample_numpy(A, init, means, 1.0, 1200, seed=9)
    kwargs = dict(test_sequences=[x[900:]], learning_rate=0.2, max_steps=300, patience=10)
    joint, h_joint = fit_hmm([x[:400], x[400:900]], 8, transitions_phase=False, **kwargs)
    seen = []
    both, h_both = fit_hmm([x[:400], x[400:900]], 8, on_step=lambda *args: seen.append(args), **kwargs)
    start = h_both.transitions_phase_start
    assert start == len(h_joint.train_loglik) and len(h_both.train_loglik) > start  # the joint fit stopped early
    np.testing.assert_array_equal(h_both.train_loglik[:start], h_joint.train_loglik)  # same first phase
    assert [s[0] for s in seen] == list(range(len(h_both.train_loglik)))
    # The second phase starts from the joint fit's best parameters, re-evaluated at its first step.
    assert h_both.test_loglik[start] == pytest.approx(h_joint.test_loglik[h_joint.best_step], abs=1e-5)
    assert h_both.test_loglik[h_both.best_step] == h_both.test_loglik.max()
    assert h_both.best_step > start  # the transitions alone still gained on the held-out data
    np.testing.assert_array_equal(both.means, joint.means)
    assert np.abs(np.asarray(both.log_transition - joint.log_transition)).max() > 1e-3
    assert log_likelihood_per_timepoint(both, [x[900:]]) > log_likelihood_per_timepoint(joint, [x[900:]])
    # max_steps bounds both phases together; a custom optimizer runs alone.
    _, h_short = fit_hmm([x[:400], x[400:900]], 8, **kwargs | {"max_steps": start})
    assert len(h_short.train_loglik) == start and h_short.transitions_phase_start is None
    _, h_custom = fit_hmm([x[:400], x[400:900]], 8, optimizer=optax.adam(0.2), **kwargs)
    assert h_custom.transitions_phase_start is None
