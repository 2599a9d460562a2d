"""Re-seeding unused HMM states (jfacemap.hmm.refine) and fitting from given parameters."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from jfacemap.hmm.fit import HMMParams, fit_hmm, log_likelihood_per_timepoint, most_likely_states
from jfacemap.hmm.refine import reseed_proposal, split_score, two_means


def test_split_score_separates_one_gaussian_from_two():
    rng = np.random.default_rng(0)
    one = rng.normal(size=(800, 64))
    assert split_score(one)[0] < 1.15
    two = one.copy()
    direction = rng.normal(size=64)
    direction /= np.linalg.norm(direction)
    two[:400] += 3.0 * direction  # two clusters 3 sigma apart along one axis
    score, axis = split_score(two)
    assert score > 1.5
    assert abs(axis @ direction) > 0.95
    side = two_means(two, axis)
    labels = np.r_[np.ones(400, bool), np.zeros(400, bool)]
    assert max(np.mean(side == labels), np.mean(side != labels)) > 0.9


def _catch_all_case(seed=1, K=6, D=32, T=3000):
    """Data from K well-separated states; params with 3 right means, one mean at the centroid of
    the other 3 states (a catch-all) and 2 dead means far from all data."""
    rng = np.random.default_rng(seed)
    true_means = rng.normal(size=(K, D)) * 1.2
    A = np.full((K, K), 0.02)
    np.fill_diagonal(A, 0.0)
    np.fill_diagonal(A, 1 - A.sum(1))
    states = np.zeros(T, int)
    for t in range(1, T):
        states[t] = rng.choice(K, p=A[states[t - 1]])
    x = (true_means[states] + rng.normal(size=(T, D))).astype(np.float32)
    means = np.concatenate([true_means[:3], true_means[3:].mean(0, keepdims=True), 25 + rng.normal(size=(2, D))])
    params = HMMParams(jnp.asarray(3.0 * np.eye(K), jnp.float32), jnp.asarray(means, jnp.float32),
                       jnp.zeros(K, jnp.float32), 1.0)
    return params, states, x


def accuracy(states, path, K):
    confusion = np.zeros((K, K))
    np.add.at(confusion, (states, path), 1)
    rows, cols = linear_sum_assignment(-confusion)
    return confusion[rows, cols].sum() / len(states)


def test_reseed_moves_dead_states_onto_the_catch_all():
    params, states, x = _catch_all_case()
    before = accuracy(states, most_likely_states(params, x), 6)
    assert before < 0.7
    proposal, moved = reseed_proposal(params, [x[:1500], x[1500:]])
    assert moved == 2
    np.testing.assert_array_equal(proposal.means[:3], params.means[:3])  # well-fitted states untouched
    assert accuracy(states, most_likely_states(proposal, x), 6) > 0.95
    assert log_likelihood_per_timepoint(proposal, [x]) > log_likelihood_per_timepoint(params, [x]) + 1.0
    A = np.asarray(proposal.transition_matrix)
    np.testing.assert_allclose(A.sum(1), 1.0, atol=1e-6)
    # Nothing left to move: a fitted model without dead states proposes nothing.
    assert reseed_proposal(proposal, [x])[1] == 0


def test_fit_starts_from_given_parameters():
    params, _, x = _catch_all_case()
    _, history = fit_hmm([x], 6, init=params, max_steps=1)
    assert history.train_loglik[0] == pytest.approx(log_likelihood_per_timepoint(params, [x]), rel=1e-6)
    with pytest.raises(ValueError, match="shapes"):
        fit_hmm([x], 5, init=params, max_steps=1)
    with pytest.raises(ValueError, match="sigma2"):
        fit_hmm([x], 6, init=params._replace(sigma2=0.0), max_steps=1)
