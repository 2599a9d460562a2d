"""The HMM's emission variance (issue 14, item 7): a learned sigma2, fits on raw features, and the
z-score transform that maps a model back to data units, checked against float64 numpy forward passes."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp

from jfacemap.hmm.fit import (
    HMMParams, fit_hmm, log_likelihood_per_timepoint, make_fit_step, most_likely_states, pad_sequences,
    trainable_parameters,
)
from jfacemap.hmm.optimizers import hmm_optimizer, transitions_only_optimizer
from jfacemap.hmm.params_file import params_arrays, read_emissions, read_params
from jfacemap.hmm.pipeline import run_hmm, split_blocks
from jfacemap.hmm.refine import reseed_proposal
from jfacemap.hmm.transform import FeatureTransform, data_log_likelihood_per_timepoint


def numpy_loglik(x, A, init, means, variance):
    """float64 log-space forward algorithm; state k emits N(means[k], diag(variance)), variance () or (D,).
    Returns log p(x) in nats."""
    var = np.broadcast_to(np.asarray(variance, np.float64), (x.shape[1],))
    log_em = -0.5 * ((x[:, None] - means[None]) ** 2 / var).sum(-1) - 0.5 * np.log(2 * np.pi * var).sum()
    alpha, log_A = np.log(init) + log_em[0], np.log(A)
    for t in range(1, len(x)):
        alpha = logsumexp(alpha[:, None] + log_A, axis=0) + log_em[t]
    return logsumexp(alpha)


def per_timepoint(blocks, A, init, means, variance):
    return sum(numpy_loglik(b, A, init, means, variance) for b in blocks) / sum(len(b) for b in blocks)


def known_hmm(K, D, scale, seed):
    """(A (K, K) sticky forward cycle, init (K,) uniform, means (K, D) ~ N(0, scale^2))."""
    rng = np.random.default_rng(seed)
    A = np.full((K, K), 0.02)
    A[np.arange(K), (np.arange(K) + 1) % K] = 0.1
    np.fill_diagonal(A, 0.0)
    np.fill_diagonal(A, 1 - A.sum(1))
    return A, np.full(K, 1 / K), scale * rng.normal(size=(K, D))


def sample(A, init, means, variance, T, seed):
    """Independent numpy sampler: states (T,), x (T, D) float32 with noise N(0, variance) per feature."""
    rng = np.random.default_rng(seed)
    states = np.empty(T, int)
    states[0] = rng.choice(len(init), p=init)
    for t in range(1, T):
        states[t] = rng.choice(len(init), p=A[states[t - 1]])
    x = means[states] + rng.normal(size=(T, means.shape[1])) * np.sqrt(variance)
    return states, x.astype(np.float32)


def accuracy(states, path, K):
    confusion = np.zeros((K, K))
    np.add.at(confusion, (states, path), 1)
    rows, cols = linear_sum_assignment(-confusion)
    return confusion[rows, cols].sum() / len(states)


def test_learned_sigma2_recovers_the_true_variance_and_likelihood():
    K, D, true_var = 4, 8, 0.5
    A, init, means = known_hmm(K, D, 1.0, seed=11)
    _, x = sample(A, init, means, true_var, 4000, seed=11)
    _, held_out = sample(A, init, means, true_var, 2000, seed=12)
    states, _ = sample(A, init, means, true_var, 4000, seed=11)
    # From seed 0's start this fit ends with two true states on one mean and the variance inflated to
    # cover both (0.71): one round of re-seeding, as `run_hmm(refine=...)` does, splits them.
    stuck, _ = fit_hmm([x], K, learn_sigma2=True, max_steps=1500, min_improvement=1e-6)
    assert accuracy(states, most_likely_states(stuck, x), K) < 0.8 and stuck.sigma2 > 1.2 * true_var
    proposal, moved = reseed_proposal(stuck, [x])
    assert moved >= 1 and proposal.sigma2 == stuck.sigma2  # the refit starts from the learned variance
    params, _ = fit_hmm([x], K, init=proposal, learn_sigma2=True, max_steps=1500, min_improvement=1e-6)
    assert isinstance(params.sigma2, float)
    assert accuracy(states, most_likely_states(params, x), K) >= 0.99
    # The ML variance from N D = 32,000 residuals has relative SD sqrt(2 / (N D)) = 0.8 %: 3 % is ~4 SD.
    assert params.sigma2 == pytest.approx(true_var, rel=0.03)
    fit = (np.asarray(params.transition_matrix, np.float64), np.asarray(params.initial, np.float64),
           np.asarray(params.means, np.float64))
    truth_train, truth_test = (numpy_loglik(s, A, init, means, true_var) / len(s) for s in (x, held_out))
    fit_train, fit_test = (numpy_loglik(s, *fit, params.sigma2) / len(s) for s in (x, held_out))
    assert log_likelihood_per_timepoint(params, [x]) == pytest.approx(fit_train, rel=1e-5)
    # Maximum likelihood on the training data: at least the truth's, less what the optimiser leaves;
    # held out, it pays for 53 fitted parameters, ~53 / (2 * 4000) = 0.007 nats per timepoint.
    assert truth_train - 0.01 <= fit_train <= truth_train + 0.02
    assert fit_test >= truth_test - 0.02
    # The margins can fail: the same fit at twice the variance is D / 2 (ln 2 - 1/2) = 0.77 nats worse.
    assert numpy_loglik(held_out, *fit, 2 * params.sigma2) / len(held_out) < truth_test - 0.5


def test_log_sigma2_is_trained_with_the_means_and_frozen_with_them():
    # Adam's first update is lr * g / (|g| + eps): log sigma2 moves by the means' rate, up the gradient.
    rng = np.random.default_rng(3)
    A, init, means = known_hmm(3, 4, 1.0, seed=3)
    _, x = sample(A, init, means, 1.0, 300, seed=3)
    start = HMMParams(jnp.asarray(3.0 * np.eye(3), jnp.float32), jnp.asarray(means + 0.1 * rng.normal(size=means.shape),
                      jnp.float32), jnp.zeros(3, jnp.float32), 0.4)
    trainable = trainable_parameters(start, learn_sigma2=True)
    assert len(trainable) == 4 and float(trainable[3]) == pytest.approx(np.log(0.4), rel=1e-6)
    Q, C = np.asarray(start.log_transition, np.float64), np.asarray(start.means, np.float64)
    A0 = np.exp(Q) / np.exp(Q).sum(1, keepdims=True)
    slope = (numpy_loglik(x, A0, np.full(3, 1 / 3), C, 0.4 * np.exp(1e-4))
             - numpy_loglik(x, A0, np.full(3, 1 / 3), C, 0.4 * np.exp(-1e-4))) / 2e-4
    assert slope > 0  # 0.4 is below the noise variance 1: the likelihood asks for more
    batch = pad_sequences([x])
    optimizer = hmm_optimizer(0.04, 0.003)
    moved, _, _ = make_fit_step(optimizer, learn_sigma2=True)(start, optimizer.init(trainable), batch)
    assert np.log(float(moved.sigma2) / 0.4) == pytest.approx(0.04, rel=1e-2)
    frozen_opt = transitions_only_optimizer(0.04)
    frozen, _, _ = make_fit_step(frozen_opt, learn_sigma2=True)(start, frozen_opt.init(trainable), batch)
    assert float(frozen.sigma2) == pytest.approx(0.4, rel=1e-6)
    np.testing.assert_array_equal(frozen.means, start.means)
    fixed, _, _ = make_fit_step(optimizer)(start, optimizer.init(trainable[:3]), batch)
    assert fixed.sigma2 == 0.4


def test_learned_sigma2_starts_at_the_one_state_variance_unless_given():
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(400, 3)) * [1.0, 2.0, 3.0]).astype(np.float32)
    params, history = fit_hmm([x], 3, learn_sigma2=True, max_steps=1)  # one step: the start is returned
    assert params.sigma2 == pytest.approx(np.var(x.astype(np.float64), axis=0).mean(), rel=1e-5)
    given, _ = fit_hmm([x], 3, learn_sigma2=True, sigma2=0.7, max_steps=1)
    assert given.sigma2 == pytest.approx(0.7, rel=1e-6)
    fixed, _ = fit_hmm([x], 3, max_steps=1)
    assert fixed.sigma2 == pytest.approx(np.var(x.astype(np.float64), axis=0).sum() / 256, rel=1e-5)


def test_transform_maps_the_model_and_its_likelihood_to_data_units():
    rng = np.random.default_rng(8)
    K, D = 3, 5
    Q, C, b = rng.normal(size=(K, K)), rng.normal(size=(K, D)), rng.normal(size=K)
    params = HMMParams(*(jnp.asarray(a, jnp.float32) for a in (Q, C, b)), 0.6)
    transform = FeatureTransform(rng.normal(size=D) * 10, rng.uniform(0.5, 4.0, size=D))
    blocks = [rng.normal(size=(n, D)) * transform.sd + transform.mean for n in (60, 25)]
    A, init = np.asarray(params.transition_matrix, np.float64), np.asarray(params.initial, np.float64)
    expected = per_timepoint(blocks, A, init, transform.mean + transform.sd * C, 0.6 * transform.sd**2)
    assert data_log_likelihood_per_timepoint(params, transform, blocks) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(transform.to_model(blocks[0]), (blocks[0] - transform.mean) / transform.sd, rtol=1e-5)
    identity = FeatureTransform.identity(D)
    assert identity.is_identity and not transform.is_identity and identity.log_jacobian == 0.0
    with pytest.raises(ValueError, match="sd"):
        FeatureTransform(np.zeros(D), np.zeros(D))


@pytest.fixture(scope="module")
def pipeline_runs():
    """run_hmm with each variance option on data with unit noise whose states carry ~half of each
    feature's variance (so z-scoring halves the noise's variance), and the true model's log-likelihoods."""
    K, D, T = 4, 16, 3000
    A, init, means = known_hmm(K, D, 1.0, seed=21)
    states, x = sample(A, init, means, 1.0, T, seed=21)
    train_blocks, test_blocks = split_blocks(T)
    train, test = [x[s] for s in train_blocks], [x[s] for s in test_blocks]
    truth = (per_timepoint(train, A, init, means, 1.0), per_timepoint(test, A, init, means, 1.0))
    options = {"zscore_fixed": dict(sigma2=1.0), "raw_fixed": dict(sigma2=1.0, zscore=False),
               "zscore_learned": dict(learn_sigma2=True), "raw_learned": dict(learn_sigma2=True, zscore=False)}
    runs = {name: run_hmm(x, 5.0, K, downsample_factor=1, n_sample=5, **kw) for name, kw in options.items()}
    return runs, truth, states, train, test, K


def _data_units_loglik(result, blocks):
    """The fitted model mapped to data units (independently of the library's Jacobian), numpy forward."""
    t = result.transform
    A, init = np.asarray(result.params.transition_matrix, np.float64), np.asarray(result.params.initial, np.float64)
    means, variance = t.means_to_data(result.params.means), t.variance_to_data(result.params.sigma2)
    return per_timepoint(blocks, A, init, means, variance)


def test_pipeline_variance_options_in_data_units(pipeline_runs):
    runs, (truth_train, truth_test), states, train, test, K = pipeline_runs
    for name, result in runs.items():
        assert accuracy(states, result.states, K) >= 0.99, name  # every state recovered in every run
        summary = result.summary()
        test_ll = _data_units_loglik(result, test)
        assert summary["test_loglik_data_units"] == pytest.approx(test_ll, rel=1e-5), name
        assert summary["train_loglik_data_units"] == pytest.approx(_data_units_loglik(result, train), rel=1e-5), name
        assert summary["zscore"] == (not name.startswith("raw")) and summary["learn_sigma2"] == name.endswith("learned")
    sd = runs["zscore_fixed"].transform.sd
    assert np.mean(sd**2) > 1.4  # the states raise the features' variance well above the noise's
    # On raw features: the fixed true variance and the learned one (within 3 %, ~4 SD of the ML
    # estimate from 2,250 x 16 residuals) reach the truth's likelihood. Held out, a fit pays for its
    # K D + K^2 parameters ~(K D + K^2) / (2 N) = 0.018 nats per timepoint: margin 3x that.
    n_train = sum(len(b) for b in train)
    margin = 3 * (K * 16 + K * K) / (2 * n_train)
    assert runs["raw_learned"].params.sigma2 == pytest.approx(1.0, rel=0.03)
    for name in ("raw_fixed", "raw_learned"):
        assert _data_units_loglik(runs[name], test) >= truth_test - margin, name
        assert _data_units_loglik(runs[name], train) >= truth_train - 0.01, name  # ML: at least the truth
    # sigma2 = 1 after z-scoring is variance sd_d^2 in data units: it loses
    # sum_d (ln r + 1 / r - 1) / 2 with r = sd_d^2 per timepoint against the truth.
    expected_gap = 0.5 * np.sum(np.log(sd**2) + 1 / sd**2 - 1)
    gap = truth_test - _data_units_loglik(runs["zscore_fixed"], test)
    assert gap > 0.5 and gap == pytest.approx(expected_gap, rel=0.25, abs=0.05)
    # Learned after z-scoring: the ML shared variance of noise whose z-scored variance is 1 / sd_d^2 is
    # their mean; its model is diagonal in data units (sd_d^2 sigma2), closer to the truth than sigma2 = 1.
    assert runs["zscore_learned"].params.sigma2 == pytest.approx(np.mean(1 / sd**2), rel=0.03)
    learned_gap = truth_test - _data_units_loglik(runs["zscore_learned"], test)
    r = runs["zscore_learned"].params.sigma2 * sd**2
    assert learned_gap == pytest.approx(0.5 * np.sum(np.log(r) + 1 / r - 1), abs=0.05)
    assert learned_gap < gap / 2


def test_params_file_keeps_the_transform_and_reads_back_in_data_units(pipeline_runs, tmp_path):
    runs = pipeline_runs[0]
    for name in ("zscore_learned", "raw_fixed"):
        result, s = runs[name], runs[name].settings
        np.savez(tmp_path / f"{name}.npz", **params_arrays(result.params, result.transform, zscored=s["zscore"],
                                                         sigma2_learned=s["learn_sigma2"], fps=5.0, downsample=1))
        saved = read_params(tmp_path / f"{name}.npz")
        assert (saved.zscored, saved.sigma2_learned, saved.fps, saved.downsample) == (
            s["zscore"], s["learn_sigma2"], 5.0, 1)
        means, variance, units = read_emissions(tmp_path / f"{name}.npz")
        assert units == "data"
        t = result.transform
        np.testing.assert_allclose(means, t.mean + t.sd * np.asarray(result.params.means, np.float64), rtol=1e-6)
        np.testing.assert_allclose(variance, result.params.sigma2 * t.sd**2, rtol=1e-6)
        np.testing.assert_allclose(saved.params.transition_matrix, result.params.transition_matrix, atol=1e-6)
    assert read_params(tmp_path / "raw_fixed.npz").transform.is_identity


def test_older_params_files_still_load(tmp_path):
    rng = np.random.default_rng(0)
    A = np.array([[0.9, 0.1], [0.2, 0.8]])
    means = rng.normal(size=(2, 3))
    np.savez(tmp_path / "oldest.npz", transition_matrix=A, means=means, initial=np.array([0.5, 0.5]), sigma2=0.3)
    saved = read_params(tmp_path / "oldest.npz")
    assert saved.transform is None and saved.fps is None
    np.testing.assert_allclose(saved.params.transition_matrix, A, rtol=1e-6)
    means_read, variance, units = read_emissions(tmp_path / "oldest.npz")
    assert units == "model"
    np.testing.assert_allclose(means_read, means, rtol=1e-6)
    np.testing.assert_allclose(variance, [0.3] * 3)
    # The format before the `zscore` / `sigma2_learned` flags: always z-scored, sigma2 fixed.
    mean, sd = rng.normal(size=3), rng.uniform(1, 2, size=3)
    np.savez(tmp_path / "before_flags.npz", transition_matrix=A, means=means, initial=np.array([0.5, 0.5]),
             sigma2=0.3, log_transition=np.log(A), initial_logits=np.zeros(2), zscore_mean=mean, zscore_sd=sd,
             fps=50.0, downsample=10)
    saved = read_params(tmp_path / "before_flags.npz")
    assert saved.zscored and not saved.sigma2_learned and saved.downsample == 10
    means_read, variance, units = read_emissions(tmp_path / "before_flags.npz")
    assert units == "data"
    np.testing.assert_allclose(means_read, mean + sd * means, rtol=1e-6)  # means held as float32
    np.testing.assert_allclose(variance, 0.3 * sd**2)
    np.savez(tmp_path / "other.npz", weights=np.ones(3))
    with pytest.raises(ValueError, match="not an HMM params.npz"):
        read_params(tmp_path / "other.npz")
