"""Inference in a discrete-state HMM with Gaussian emissions (SPEC section 5).

Pure, jitted functions over arrays. Conventions, shared by every function:
- K states, T timepoints, D features; float32 unless said otherwise.
- ``log_init: (K,)`` log P(h_0 = k); ``log_A: (K, K)`` log transition matrix,
  ``A[i, j] = P(h_{t+1} = j | h_t = i)`` (rows sum to 1);
  ``log_em: (T, K)`` log p(x_t | h_t = k), in nats.
- ``mask: (T,) bool`` (optional, True = a real timepoint) lets sequences of
  different lengths be padded to one length and vmapped. Masked steps are
  removed from the chain, as if absent: they add no likelihood and the chain
  goes straight from the previous real step to the next one (so padding may
  sit at the end, the start or in gaps, with any values in ``log_em``).
  At masked steps ``filtered`` repeats the last real filtered distribution
  (the initial one before any real step), ``posteriors`` are 0 and the Viterbi
  path is -1.

The sequential passes work with probabilities renormalised at every step
(the log of each step's normaliser is kept), so float32 stays accurate for T in
the millions; the total log-likelihood is a pairwise sum of those normalisers.
This assumes the predicted probability of a plausible state never underflows
float32 (about 1e-38), true unless A has columns of near-zero entries.
Matrix products ask for full float32 precision: on GPUs the default would be
TF32, too coarse for squared distances between 256-d features.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "Smoothed",
    "associative_forward",
    "forward",
    "forward_backward",
    "gaussian_log_emissions",
    "log_likelihood",
    "sample",
    "viterbi",
]

_HIGHEST = lax.Precision.HIGHEST


class Smoothed(NamedTuple):
    """Output of :func:`forward_backward`.

    log_likelihood: () nats; posteriors: (T, K) P(h_t | x_all), rows sum to 1
    at real steps and are 0 at masked ones; transition_counts: (K, K) expected
    number of i -> j transitions between consecutive real steps.
    """

    log_likelihood: jax.Array
    posteriors: jax.Array
    transition_counts: jax.Array


@jax.jit
def gaussian_log_emissions(x: jax.Array, means: jax.Array, sigma2: float | jax.Array) -> jax.Array:
    """log N(x_t; means_k, sigma2 I) for every timepoint and state.

    x: (T, D); means: (K, D); sigma2: () shared variance (units of x squared).
    Returns (T, K) nats. Squared distances come from |x|^2 - 2 x C^T + |C|^2
    (one matrix product, no per-state loop).
    """
    x = jnp.asarray(x)
    means = jnp.asarray(means, x.dtype)
    n_features = x.shape[-1]
    cross = jnp.matmul(x, means.T, precision=_HIGHEST)
    sq = jnp.sum(x * x, axis=-1)[:, None] - 2.0 * cross + jnp.sum(means * means, axis=-1)[None, :]
    # Cancellation can leave tiny negative distances when x sits on a mean.
    sq = jnp.maximum(sq, 0.0)
    return -0.5 * sq / sigma2 - 0.5 * n_features * jnp.log(2.0 * math.pi * sigma2)


def _full_mask(log_em: jax.Array, mask: jax.Array | None) -> jax.Array:
    if mask is None:
        return jnp.ones(log_em.shape[:1], dtype=bool)
    return jnp.asarray(mask, dtype=bool)


def _pairwise_sum(values: jax.Array) -> jax.Array:
    """Sum of a (T,) vector by halving: float32 error grows like log2(T), not sqrt(T)."""
    while values.shape[0] > 1:
        if values.shape[0] % 2:
            values = jnp.concatenate([values, jnp.zeros((1,), values.dtype)])
        values = values[0::2] + values[1::2]
    return values[0] if values.shape[0] else jnp.zeros((), values.dtype)


def _forward_scan(log_init, log_A, log_em, mask):
    """Scaled forward recursion; returns filtered (T, K) and log normalisers (T,)."""
    transition = jnp.exp(log_A)
    init = jnp.exp(log_init)

    def step(carry, inputs):
        filtered, started = carry
        log_em_t, real = inputs
        # Zeroed at masked steps so that padding never produces inf/NaN (nor NaN gradients).
        log_em_t = jnp.where(real, log_em_t, 0.0)
        predicted = jnp.where(started, jnp.matmul(filtered, transition, precision=_HIGHEST), init)
        shift = lax.stop_gradient(jnp.max(log_em_t))
        weighted = predicted * jnp.exp(log_em_t - shift)
        total = jnp.sum(weighted)
        filtered_out = jnp.where(real, weighted / total, filtered)
        log_normaliser = jnp.where(real, jnp.log(total) + shift, 0.0)
        return (filtered_out, started | real), (filtered_out, log_normaliser)

    carry0 = (init, jnp.zeros((), dtype=bool))
    _, (filtered, log_normalisers) = lax.scan(step, carry0, (log_em, mask))
    return filtered, log_normalisers


@jax.jit
def forward(log_init, log_A, log_em, mask=None):
    """Forward (filtering) pass as a sequential ``lax.scan``.

    log_init: (K,); log_A: (K, K); log_em: (T, K); mask: (T,) bool or None.
    Returns (log_likelihood () nats, filtered (T, K) = P(h_t | x_0..t),
    log_normalisers (T,) = log p(x_t | x_0..t-1), 0 at masked steps).
    """
    mask = _full_mask(log_em, mask)
    filtered, log_normalisers = _forward_scan(log_init, log_A, log_em, mask)
    return _pairwise_sum(log_normalisers), filtered, log_normalisers


@jax.jit
def log_likelihood(log_init, log_A, log_em, mask=None):
    """log p(x_0..T-1) in nats, () — :func:`forward` without the marginals; differentiable."""
    mask = _full_mask(log_em, mask)
    _, log_normalisers = _forward_scan(log_init, log_A, log_em, mask)
    return _pairwise_sum(log_normalisers)


@jax.jit
def forward_backward(log_init, log_A, log_em, mask=None) -> Smoothed:
    """Smoothed marginals and expected transition counts (the E step of EM).

    log_init: (K,); log_A: (K, K); log_em: (T, K); mask: (T,) bool or None.
    Returns :class:`Smoothed` (log_likelihood (), posteriors (T, K),
    transition_counts (K, K)).
    """
    mask = _full_mask(log_em, mask)
    transition = jnp.exp(log_A)
    filtered, log_normalisers = _forward_scan(log_init, log_A, log_em, mask)
    # Emission weights on a per-step scale (0 at masked steps). The backward
    # messages are renormalised every step: a scaled beta that relied on the
    # forward normalisers would drift by float32 rounding over long sequences.
    shift = jnp.max(jnp.where(mask[:, None], log_em, 0.0), axis=1, keepdims=True)
    weights = jnp.exp(jnp.where(mask[:, None], log_em - shift, -jnp.inf))

    def step(carry, inputs):
        message, has_next = carry  # message ∝ weights * beta at the next real step, sums to 1
        weights_t, real = inputs
        beta = jnp.where(has_next, jnp.matmul(transition, message, precision=_HIGHEST), 1.0)
        new_message = weights_t * beta
        new_message = new_message / jnp.maximum(jnp.sum(new_message), 1e-30)
        carry = (jnp.where(real, new_message, message), has_next | real)
        return carry, (beta, new_message)

    carry0 = (jnp.zeros_like(log_init), jnp.zeros((), dtype=bool))
    _, (betas, messages) = lax.scan(step, carry0, (weights, mask), reverse=True)
    posteriors = jnp.where(mask[:, None], filtered * betas, 0.0)
    posteriors = posteriors / jnp.maximum(jnp.sum(posteriors, axis=1, keepdims=True), 1e-30)

    # xi_t(i, j) ∝ filtered_prev(i) A_ij message_t(j), normalised over (i, j),
    # for real steps t that have a real predecessor.
    init = jnp.exp(log_init)
    filtered_prev = jnp.concatenate([init[None, :], filtered[:-1]], axis=0)
    has_prev = (jnp.cumsum(mask) - mask) > 0
    predicted = jnp.matmul(filtered_prev, transition, precision=_HIGHEST)
    totals = jnp.sum(predicted * messages, axis=1, keepdims=True)
    incoming = jnp.where((mask & has_prev)[:, None], messages / jnp.maximum(totals, 1e-30), 0.0)
    counts = transition * jnp.matmul(filtered_prev.T, incoming, precision=_HIGHEST)
    return Smoothed(_pairwise_sum(log_normalisers), posteriors, counts)


@jax.jit
def viterbi(log_init, log_A, log_em, mask=None) -> jax.Array:
    """Most likely state path, (T,) int32 (-1 at masked steps).

    log_init: (K,); log_A: (K, K); log_em: (T, K); mask: (T,) bool or None.
    Max-product scan (scores renormalised each step) with back-pointers,
    then a reverse scan to backtrack.
    """
    mask = _full_mask(log_em, mask)
    n_states = log_A.shape[0]
    identity = jnp.arange(n_states, dtype=jnp.int32)

    def step(carry, inputs):
        score, started = carry
        log_em_t, real = inputs
        candidates = score[:, None] + log_A  # (from, to)
        best_prev = jnp.argmax(candidates, axis=0).astype(jnp.int32)
        new = jnp.where(started, jnp.max(candidates, axis=0), log_init) + log_em_t
        # Keeps scores near 0: float32 cannot separate paths whose totals are ~1e6.
        new = new - jnp.max(new)
        pointer = jnp.where(real & started, best_prev, identity)
        return (jnp.where(real, new, score), started | real), pointer

    carry0 = (jnp.zeros_like(log_init), jnp.zeros((), dtype=bool))
    (score, _), pointers = lax.scan(step, carry0, (log_em, mask))

    def back(state, pointer):
        return pointer[state], state

    _, path = lax.scan(back, jnp.argmax(score).astype(jnp.int32), pointers, reverse=True)
    return jnp.where(mask, path, -1).astype(jnp.int32)


@partial(jax.jit, static_argnames="n_timepoints")
def sample(key, init, A, means, sigma2, n_timepoints: int):
    """Draw a state path and emissions: h_0 ~ init, h_t+1 ~ A[h_t], x_t ~ N(means[h_t], sigma2 I).

    key: PRNG key; init: (K,) probabilities; A: (K, K) row-stochastic; means: (K, D);
    sigma2: () variance. Returns (states (T,) int32, emissions (T, D) float32).
    """
    key_first, key_chain, key_noise = jax.random.split(key, 3)
    log_A = jnp.log(A)
    first = jax.random.categorical(key_first, jnp.log(init)).astype(jnp.int32)

    def step(state, step_key):
        nxt = jax.random.categorical(step_key, log_A[state]).astype(jnp.int32)
        return nxt, nxt

    _, rest = lax.scan(step, first, jax.random.split(key_chain, n_timepoints - 1))
    states = jnp.concatenate([first[None], rest])
    means = jnp.asarray(means, jnp.float32)
    noise = jax.random.normal(key_noise, (n_timepoints, means.shape[1]), jnp.float32)
    return states, means[states] + jnp.sqrt(sigma2) * noise


def _finite_or_zero(m):
    return jnp.where(jnp.isfinite(m), m, 0.0)


def _log_matmul(a, b):
    """log(exp(a) @ exp(b)) for (..., K, K) log matrices, shifted by row/column maxima."""
    a_max = _finite_or_zero(jnp.max(a, axis=-1, keepdims=True))
    b_max = _finite_or_zero(jnp.max(b, axis=-2, keepdims=True))
    product = jnp.matmul(jnp.exp(a - a_max), jnp.exp(b - b_max), precision=_HIGHEST)
    return jnp.log(product) + a_max + b_max


def _combine(earlier, later):
    log_m1, scale1 = earlier
    log_m2, scale2 = later
    log_m = _log_matmul(log_m1, log_m2)
    # Matrices stay normalised (max entry 0); their size goes into a scalar
    # log-scale, so the marginals never sit on top of a huge running total.
    shift = _finite_or_zero(jnp.max(log_m, axis=(-2, -1)))
    return log_m - shift[..., None, None], scale1 + scale2 + shift


@jax.jit
def associative_forward(log_init, log_A, log_em, mask=None):
    """Forward pass by ``lax.associative_scan``: O(log T) depth, for accelerators.

    log_init: (K,); log_A: (K, K); log_em: (T, K); mask: (T,) bool or None.
    Returns (log_likelihood () nats, filtered (T, K)), equal to :func:`forward`.
    Step t is the log matrix log_A + log_em[t] (rows: log_init + log_em[t] at
    the first real step, so every prefix product has identical rows; the
    identity at masked steps); prefixes are log-space matrix products with a
    separate log-scale. Work O(T K^3), memory O(T K^2).
    """
    mask = _full_mask(log_em, mask)
    n_states = log_A.shape[0]
    has_prev = (jnp.cumsum(mask) - mask) > 0
    first_rows = jnp.broadcast_to(log_init[None, :], (n_states, n_states))
    log_identity = jnp.where(jnp.eye(n_states, dtype=bool), 0.0, -jnp.inf)
    log_steps = jnp.where(has_prev[:, None, None], log_A[None], first_rows[None]) + log_em[:, None, :]
    log_steps = jnp.where(mask[:, None, None], log_steps, log_identity[None])
    shift = _finite_or_zero(jnp.max(log_steps, axis=(1, 2)))
    elements = (log_steps - shift[:, None, None], shift)
    prefix, scale = lax.associative_scan(_combine, elements)

    started = jnp.cumsum(mask) > 0
    row = prefix[:, 0, :]
    filtered = jnp.where(started[:, None], jax.nn.softmax(row, axis=-1), jnp.exp(log_init)[None, :])
    cumulative = jnp.where(started, scale + jax.nn.logsumexp(row, axis=-1), 0.0)
    return cumulative[-1], filtered
