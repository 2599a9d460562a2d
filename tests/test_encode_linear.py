"""Reduced-rank regression against brute-force references (SPEC section 3)."""

import numpy as np
import pytest

from jfacemap.encode.linear import reduced_rank_regression, rrr_predict


def problem(rng, T=400, d_in=12, d_out=9):
    X = rng.normal(size=(T, d_in)) @ rng.normal(size=(d_in, d_in)) + rng.normal(size=d_in) * 5
    Y = X @ rng.normal(size=(d_in, d_out)) + rng.normal(size=(T, d_out)) + rng.normal(size=d_out) * 3
    return X, Y


def ridge_by_augmentation(X, Y, lam):
    """Ridge with an unpenalised intercept via least squares on [Xc; sqrt(lam) I]."""
    xm, ym = X.mean(0), Y.mean(0)
    Xc, Yc = X - xm, Y - ym
    Xa = np.vstack([Xc, np.sqrt(lam) * np.eye(X.shape[1])])
    Ya = np.vstack([Yc, np.zeros((X.shape[1], Y.shape[1]))])
    W = np.linalg.lstsq(Xa, Ya, rcond=None)[0]
    return W, xm, ym


@pytest.mark.parametrize("lam", [1e-6, 10.0, 1000.0])
def test_full_rank_is_ridge(lam):
    rng = np.random.default_rng(0)
    X, Y = problem(rng)
    fit = reduced_rank_regression(X, Y, rank=9, lam=lam)
    W, xm, ym = ridge_by_augmentation(X, Y, lam)
    np.testing.assert_allclose(fit.W, W, rtol=1e-8, atol=1e-10)
    Xt = rng.normal(size=(50, 12))
    np.testing.assert_allclose(rrr_predict(fit, Xt), (Xt - xm) @ W + ym, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("rank", [1, 3, 6])
def test_rank_r_is_best_approximation_of_ridge_fit(rank):
    rng = np.random.default_rng(1)
    X, Y = problem(rng)
    lam = 5.0
    fit = reduced_rank_regression(X, Y, rank=rank, lam=lam)
    assert fit.A.shape == (12, rank) and fit.B.shape == (rank, 9) and fit.rank == rank
    W, xm, ym = ridge_by_augmentation(X, Y, lam)
    ridge_fit = (X - xm) @ W
    u, s, vt = np.linalg.svd(ridge_fit, full_matrices=False)
    best = (u[:, :rank] * s[:rank]) @ vt[:rank]  # Eckart-Young
    np.testing.assert_allclose(rrr_predict(fit, X) - ym, best, rtol=1e-7, atol=1e-8)
    # Out of sample the same projection applies: W V_r V_r^T.
    Xt = rng.normal(size=(30, 12))
    P = vt[:rank].T @ vt[:rank]
    np.testing.assert_allclose(rrr_predict(fit, Xt), (Xt - xm) @ W @ P + ym, rtol=1e-7, atol=1e-8)
    assert np.linalg.matrix_rank(fit.W) == rank


def test_recovers_planted_low_rank_map():
    rng = np.random.default_rng(2)
    T, d_in, d_out, r = 3000, 21, 40, 3
    W_true = rng.normal(size=(d_in, r)) @ rng.normal(size=(r, d_out)) / np.sqrt(d_in)
    X = rng.normal(size=(T, d_in))
    intercept = rng.normal(size=d_out)
    Y = X @ W_true + intercept + 0.5 * rng.normal(size=(T, d_out))
    fit = reduced_rank_regression(X, Y, rank=r)
    err = np.linalg.norm(fit.W - W_true) / np.linalg.norm(W_true)
    assert err < 0.03
    np.testing.assert_allclose(fit.y_mean - fit.x_mean @ fit.W, intercept, atol=0.05)
    # The rank constraint beats full-rank ridge out of sample.
    full = reduced_rank_regression(X, Y, rank=min(d_in, d_out))
    Xt = rng.normal(size=(2000, d_in))
    Yt_clean = Xt @ W_true + intercept
    mse_r = np.mean((rrr_predict(fit, Xt) - Yt_clean) ** 2)
    mse_full = np.mean((rrr_predict(full, Xt) - Yt_clean) ** 2)
    assert mse_r < 0.5 * mse_full


def test_zero_lambda_with_collinear_inputs_uses_least_squares():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 2))
    X = np.column_stack([x, x[:, 0] + x[:, 1]])  # singular Gram matrix
    Y = x @ np.array([[1.0], [-2.0]])
    fit = reduced_rank_regression(X, Y, rank=1, lam=0.0)
    np.testing.assert_allclose(rrr_predict(fit, X), Y, atol=1e-8)


def test_errors():
    X, Y = problem(np.random.default_rng(4))
    with pytest.raises(ValueError, match="rank must be an integer in 1..9"):
        reduced_rank_regression(X, Y, rank=10)
    with pytest.raises(ValueError, match="frames"):
        reduced_rank_regression(X, Y[:-1], rank=2)
    with pytest.raises(ValueError, match="non-finite"):
        reduced_rank_regression(np.full_like(X, np.nan), Y, rank=2)
    fit = reduced_rank_regression(X, Y, rank=2)
    with pytest.raises(ValueError, match="features"):
        rrr_predict(fit, X[:, :5])
