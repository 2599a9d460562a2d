"""Fitting a Gaussian HMM by gradient ascent on the exact log-likelihood (SPEC section 5).

Parameters are unconstrained: transition matrix A = row-softmax(Q), Q (K, K)
initialised Q_ii = 3, Q_ij = 0; initial probabilities = softmax(initial
logits), initialised uniform; state means C (K, D) initialised from distinct
random timepoints of the training data; a shared spherical variance sigma2
(variance of every feature around its state's mean, in squared units of the
data the model is fitted to), fixed by default, or learned (`learn_sigma2`:
log sigma2 is trained with the means, by the same optimiser on the same
log-likelihood). The loss is minus the total log-likelihood of all
training sequences divided by their number of timepoints, from the forward
scan of :mod:`jfacemap.hmm.inference`, differentiated by JAX and minimised
with any optax optimiser. The default, `optimizers.hmm_optimizer`, is Adam with
the transition and initial logits learning 10x slower than the means: with
equal rates the transitions lock in the first, noisy state assignments
(states merge, others go unused) and the fit ends well below EM's from the
same start; with slow transitions it ends level with EM (above it from 2 of
3 starts on the planted benchmark, below from the third). When that joint phase
stops, a second phase fits the transitions and initial logits alone (means
frozen) at the means' rate: on short recordings the means start to overfit
and stop the joint phase before the slow transitions have moved far from
their start. Sequences of different lengths
are padded to a common length and masked, so padding adds nothing.
EM (closed-form M step, sigma2 fixed) is here for comparison.
Units: the model knows only the arrays it is given; `run_hmm` fits z-scored
features by default, and `transform.FeatureTransform` maps its means and
sigma2 back to data units.
All log-likelihoods reported are nats per timepoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jfacemap.errors import JfacemapError
from jfacemap.hmm import DOWNSAMPLE, LEARNING_RATE, N_STATES, PATIENCE
from jfacemap.hmm.inference import forward_backward, gaussian_log_emissions, log_likelihood, viterbi
from jfacemap.hmm.optimizers import hmm_optimizer, transitions_only_optimizer

__all__ = [
    "FitHistory", "HMMParams", "PaddedBatch", "check_features", "default_sigma2", "downsample",
    "em_step", "fit_hmm", "fit_hmm_em", "init_params", "log_likelihood_per_timepoint",
    "make_fit_step", "mean_log_likelihood", "most_likely_states", "pad_sequences", "trainable_parameters",
]  # fmt: skip

# SPEC: sigma2 = 1 for the 256 deep features, i.e. summed variance / 256.
REFERENCE_FEATURES = 256
_LOG_FLOOR = 1e-30  # EM probabilities that reach 0 become log(1e-30), not -inf


class HMMParams(NamedTuple):
    """HMM parameters (a pytree). K states, D features.

    log_transition: (K, K) Q, A = row-softmax(Q); means: (K, D) state means C,
    units of the data the model is fitted to; initial_logits: (K,); sigma2: ()
    shared emission variance of every feature, those units squared (a float;
    a traced scalar inside a fit that learns it).
    """

    log_transition: jax.Array
    means: jax.Array
    initial_logits: jax.Array
    sigma2: float

    @property
    def transition_matrix(self) -> jax.Array:
        """A (K, K), A[i, j] = P(h_t+1 = j | h_t = i); rows sum to 1."""
        return jax.nn.softmax(self.log_transition, axis=-1)

    @property
    def initial(self) -> jax.Array:
        """Initial-state probabilities (K,)."""
        return jax.nn.softmax(self.initial_logits)

    @property
    def n_states(self) -> int:
        return int(self.log_transition.shape[0])


class PaddedBatch(NamedTuple):
    """Sequences padded to one length: x (B, T_max, D) float32, mask (B, T_max) bool."""

    x: jax.Array
    mask: jax.Array


@dataclass(frozen=True)
class FitHistory:
    """Per-step record of a fit; log-likelihoods in nats per timepoint.

    train_loglik / test_loglik: (n_steps,) float64, of the parameters *before*
    each step's update (test_loglik None without test sequences); best_step:
    index of the returned parameters; stopped_early: patience ran out (in
    the last phase); transitions_phase_start: index of the first step of the
    transitions-only phase (None if it did not run).
    """

    train_loglik: np.ndarray
    test_loglik: np.ndarray | None
    best_step: int
    stopped_early: bool
    n_train_timepoints: int
    n_test_timepoints: int
    transitions_phase_start: int | None = None


def check_features(x, n_states: int = 1) -> np.ndarray:
    """Validate one sequence of features; returns it as (T, D) float32.

    Raises JfacemapError if x is not 2-D, has no features, has NaN/inf, or has
    fewer timepoints than n_states (each state's mean starts on a distinct timepoint).
    """
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise JfacemapError(f"features must be a 2-D (timepoints, features) array, got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise JfacemapError("features have 0 columns")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise JfacemapError(f"features must be real numbers, got dtype {arr.dtype}")
    bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise JfacemapError(f"features have {bad} non-finite values (NaN or inf)")
    if int(n_states) != n_states or n_states < 1:
        raise JfacemapError(f"n_states must be a positive integer, got {n_states}")
    if arr.shape[0] < n_states:
        raise JfacemapError(f"{arr.shape[0]} timepoints are too few for {n_states} states (need one per state)")
    return arr.astype(np.float32, copy=False)


def _as_sequences(sequences, n_states: int, name: str) -> list[np.ndarray]:
    if isinstance(sequences, np.ndarray | jax.Array):
        sequences = [sequences]
    seqs = [check_features(s, 1) for s in sequences]
    if not seqs:
        raise JfacemapError(f"{name}: no sequences given")
    dims = {s.shape[1] for s in seqs}
    if len(dims) > 1:
        raise JfacemapError(f"{name}: sequences have different numbers of features {sorted(dims)}")
    total = sum(s.shape[0] for s in seqs)
    if total < n_states:
        raise JfacemapError(f"{name}: {total} timepoints are too few for {n_states} states")
    return seqs


def downsample(x, factor: int = DOWNSAMPLE) -> np.ndarray:
    """Mean over consecutive blocks of ``factor`` frames (SPEC: 10x, 50 Hz -> 5 Hz).

    x: (T, D); returns (T // factor, D) float32. Block i averages frames
    i*factor .. (i+1)*factor - 1; the last T % factor frames (an incomplete block) are dropped.
    """
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise JfacemapError(f"x must be a 2-D (frames, features) array, got shape {arr.shape}")
    if int(factor) != factor or factor < 1:
        raise JfacemapError(f"factor must be a positive integer, got {factor}")
    n_blocks = arr.shape[0] // factor
    if n_blocks == 0:
        raise JfacemapError(f"{arr.shape[0]} frames are fewer than the downsampling factor {factor}")
    blocks = arr[: n_blocks * factor].astype(np.float64).reshape(n_blocks, factor, arr.shape[1])
    return blocks.mean(axis=1).astype(np.float32)


def default_sigma2(x, reference_features: int = REFERENCE_FEATURES) -> float:
    """Emission variance proportional to the summed variance of z_t (the paper's rule).

    sigma2 = sum_d var(x[:, d]) / reference_features, variances over all
    timepoints of all sequences (x: (T, D) array or a list of them). With
    z-scored features this is D / 256: 1 for the 256 deep features and 30/256
    for 30 keypoint coordinates, the values of SPEC section 5; it keeps the
    emission term's weight in the likelihood similar across feature counts.
    """
    seqs = _as_sequences(x, 1, "default_sigma2")
    data = np.concatenate(seqs).astype(np.float64)
    total = float(np.var(data, axis=0).sum())
    if not total > 0:
        raise JfacemapError("features are constant (zero variance): cannot set sigma2 from them")
    return total / reference_features


def init_params(sequences, n_states: int = N_STATES, sigma2: float | None = None, seed: int = 0) -> HMMParams:
    """The SPEC's starting point: Q_ii = 3, Q_ij = 0, uniform initial logits,
    means = n_states distinct random timepoints of the sequences, sigma2 = default_sigma2 unless given."""
    seqs = _as_sequences(sequences, n_states, "sequences")
    data = np.concatenate(seqs)
    picks = np.random.default_rng(seed).choice(data.shape[0], size=n_states, replace=False)
    sigma2 = default_sigma2(seqs) if sigma2 is None else float(sigma2)
    if not (np.isfinite(sigma2) and sigma2 > 0):
        raise JfacemapError(f"sigma2 must be a positive number, got {sigma2}")
    return HMMParams(
        log_transition=jnp.asarray(3.0 * np.eye(n_states), jnp.float32),
        means=jnp.asarray(data[picks], jnp.float32),
        initial_logits=jnp.zeros((n_states,), jnp.float32),
        sigma2=sigma2,
    )


def pad_sequences(sequences) -> PaddedBatch:
    """(T_i, D) sequences -> PaddedBatch padded with zeros to the longest one."""
    seqs = _as_sequences(sequences, 1, "sequences")
    longest = max(s.shape[0] for s in seqs)
    x = np.zeros((len(seqs), longest, seqs[0].shape[1]), np.float32)
    mask = np.zeros((len(seqs), longest), bool)
    for i, s in enumerate(seqs):
        x[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = True
    return PaddedBatch(jnp.asarray(x), jnp.asarray(mask))


def _log_model(params: HMMParams):
    return jax.nn.log_softmax(params.initial_logits), jax.nn.log_softmax(params.log_transition, axis=-1)


def _sequence_logliks(params: HMMParams, batch: PaddedBatch) -> jax.Array:
    """Log-likelihood of each padded sequence, (B,) nats."""
    log_init, log_A = _log_model(params)

    def one(x, mask):
        return log_likelihood(log_init, log_A, gaussian_log_emissions(x, params.means, params.sigma2), mask)

    return jax.vmap(one)(batch.x, batch.mask)


def mean_log_likelihood(params: HMMParams, batch: PaddedBatch) -> jax.Array:
    """Total log-likelihood of a padded batch over its real timepoints, () nats; differentiable."""
    return jnp.sum(_sequence_logliks(params, batch)) / jnp.sum(batch.mask)


_mean_loglik = jax.jit(mean_log_likelihood)


def log_likelihood_per_timepoint(params: HMMParams, sequences) -> float:
    """Total log-likelihood of the sequences over their total timepoints (nats per timepoint)."""
    return float(_mean_loglik(params, pad_sequences(sequences)))


def most_likely_states(params: HMMParams, x) -> np.ndarray:
    """Viterbi path of one sequence x (T, D): (T,) int32 state indices."""
    x = jnp.asarray(check_features(x, 1))
    log_init, log_A = _log_model(params)
    return np.asarray(viterbi(log_init, log_A, gaussian_log_emissions(x, params.means, params.sigma2)))


def trainable_parameters(params: HMMParams, learn_sigma2: bool = False) -> tuple:
    """What the optimiser updates: (Q, means, initial logits), plus log sigma2 () when it is learned
    (the log keeps the variance positive whatever step the optimiser takes)."""
    fixed = (params.log_transition, params.means, params.initial_logits)
    return fixed + (jnp.log(jnp.asarray(params.sigma2, jnp.float32)),) if learn_sigma2 else fixed


def _from_trainable(trainable: tuple, sigma2) -> HMMParams:
    """HMMParams from `trainable_parameters`; a fourth entry (log sigma2) replaces the fixed sigma2."""
    if len(trainable) == 4:
        return HMMParams(*trainable[:3], jnp.exp(trainable[3]))
    return HMMParams(*trainable, sigma2)


def make_fit_step(optimizer: optax.GradientTransformation, learn_sigma2: bool = False) -> Callable:
    """A jitted step(params, opt_state, batch) -> (params, opt_state, loss).

    loss = minus the mean log-likelihood per timepoint of ``params`` (before
    the update). sigma2 is held fixed, or with learn_sigma2 updated through
    its log like the other parameters. opt_state =
    optimizer.init(trainable_parameters(params, learn_sigma2)).
    """

    def loss_fn(trainable, sigma2, batch):
        return -mean_log_likelihood(_from_trainable(trainable, sigma2), batch)

    @jax.jit
    def step(params: HMMParams, opt_state, batch: PaddedBatch):
        trainable = trainable_parameters(params, learn_sigma2)
        loss, grads = jax.value_and_grad(loss_fn)(trainable, params.sigma2, batch)
        updates, opt_state = optimizer.update(grads, opt_state, trainable)
        return _from_trainable(optax.apply_updates(trainable, updates), params.sigma2), opt_state, loss

    return step


def _setup(sequences, n_states, sigma2, seed, test_sequences, init=None, learn_sigma2=False):
    """Checked inputs -> (initial params, padded train batch, padded test batch or None).

    A learned sigma2 starts, unless given, at the variance of a one-state fit (the mean
    per-feature variance of the training data), an upper bound of the within-state variance.
    """
    seqs = _as_sequences(sequences, n_states, "sequences")
    if learn_sigma2 and sigma2 is None:
        sigma2 = default_sigma2(seqs, reference_features=seqs[0].shape[1])
    params = init_params(seqs, n_states, sigma2, seed) if init is None else _check_init(init, n_states, seqs)
    if test_sequences is None:
        return params, pad_sequences(seqs), None
    test = _as_sequences(test_sequences, 1, "test_sequences")
    if test[0].shape[1] != seqs[0].shape[1]:
        raise JfacemapError(f"test sequences have {test[0].shape[1]} features, training ones {seqs[0].shape[1]}")
    return params, pad_sequences(seqs), pad_sequences(test)


def _check_init(init: HMMParams, n_states: int, seqs) -> HMMParams:
    """Starting parameters given by the caller, checked against the data; sigma2 as a float."""
    K, D = n_states, seqs[0].shape[1]
    shapes = (np.shape(init.log_transition), np.shape(init.means), np.shape(init.initial_logits))
    if shapes != ((K, K), (K, D), (K,)):
        raise JfacemapError(f"init parameters have shapes {shapes}, expected {((K, K), (K, D), (K,))}")
    if not (np.isfinite(float(init.sigma2)) and float(init.sigma2) > 0):
        raise JfacemapError(f"sigma2 must be a positive number, got {init.sigma2}")
    return HMMParams(*(jnp.asarray(a, jnp.float32) for a in init[:3]), float(init.sigma2))


def _history(train_ll, test_ll, best_step, stopped, train, test, transitions_phase_start=None) -> FitHistory:
    return FitHistory(
        train_loglik=np.asarray(train_ll),
        test_loglik=np.asarray(test_ll) if test is not None else None,
        best_step=best_step,
        stopped_early=stopped,
        n_train_timepoints=int(train.mask.sum()),
        n_test_timepoints=int(test.mask.sum()) if test is not None else 0,
        transitions_phase_start=transitions_phase_start,
    )


class _Monitor:
    """Best-so-far parameters, and patience counted from the last gain of at least min_improvement."""

    def __init__(self, patience: int | None, min_improvement: float):
        self.patience, self.min_improvement = patience, min_improvement
        self.best, self.best_step, self.best_params = -np.inf, 0, None
        self.last_gain_value, self.last_gain_step = -np.inf, 0

    def restart(self, step: int) -> None:
        """Count patience afresh from step (a new phase), keeping the best so far."""
        self.last_gain_value, self.last_gain_step = self.best, step

    def update(self, step: int, value: float, params: HMMParams) -> bool:
        """Record value at step; True when patience has run out."""
        if not np.isfinite(value):
            raise JfacemapError(f"log-likelihood became {value} at step {step}; lower the learning rate")
        if value > self.best or self.best_params is None:
            self.best, self.best_step, self.best_params = value, step, params
        if value > self.last_gain_value + self.min_improvement:
            self.last_gain_value, self.last_gain_step = value, step
        return self.patience is not None and step - self.last_gain_step >= self.patience


def fit_hmm(
    sequences,
    n_states: int = N_STATES,
    *,
    sigma2: float | None = None,
    seed: int = 0,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = LEARNING_RATE,
    transition_learning_rate: float | None = None,
    transitions_phase: bool = True,
    max_steps: int = 1000,
    test_sequences=None,
    patience: int | None = PATIENCE,
    min_improvement: float = 1e-5,
    on_step: Callable[[int, float, float | None], None] | None = None,
    init: HMMParams | None = None,
    learn_sigma2: bool = False,
) -> tuple[HMMParams, FitHistory]:
    """Fit by gradient ascent on the exact log-likelihood of all sequences.

    sequences: list of (T_i, D) arrays (or one array); n_states: K; sigma2:
    emission variance in the sequences' units squared, fixed (default
    :func:`default_sigma2` of the training data) unless learn_sigma2;
    learn_sigma2: train log sigma2 with the means (same optimiser group and
    rate, frozen with them in the transitions phase), starting at sigma2 or,
    by default, the one-state variance (mean per-feature variance);
    optimizer: default `optimizers.hmm_optimizer` (learning_rate,
    transition_learning_rate), any optax transformation of
    `trainable_parameters` (Q, means, initial logits[, log sigma2])
    otherwise; transitions_phase: after the joint phase stops, continue from
    its best parameters with
    `optimizers.transitions_only_optimizer` (learning_rate) until patience runs
    out again (only with the default optimizer); max_steps: upper bound on
    the steps of both phases together; test_sequences: optional held-out
    list, whose log-likelihood then drives early stopping (else the training
    one); patience: end a phase after this many steps without a gain of
    min_improvement (nats per timepoint; None never stops early); on_step(step,
    train_ll, test_ll) after each step, steps numbered across both phases;
    init: starting parameters instead of :func:`init_params` (their sigma2 is
    then the fixed or starting variance; sigma2 and seed are ignored).
    Returns (the parameters with the highest monitored log-likelihood seen, history); the
    same seed gives the same fit.
    """
    if max_steps < 1:
        raise JfacemapError(f"max_steps must be at least 1, got {max_steps}")
    params, train, test = _setup(sequences, n_states, sigma2, seed, test_sequences, init, learn_sigma2)
    fixed_sigma2 = params.sigma2
    if learn_sigma2:  # the type every step hands back: the step is traced once, not twice
        params = params._replace(sigma2=jnp.asarray(params.sigma2, jnp.float32))
    phases = [hmm_optimizer(learning_rate, transition_learning_rate) if optimizer is None else optimizer]
    if optimizer is None and transitions_phase:
        phases.append(transitions_only_optimizer(learning_rate))
    monitor = _Monitor(patience, min_improvement)
    train_ll, test_ll = [], []
    stopped, phase_start = False, None
    for i, phase_optimizer in enumerate(phases):
        if len(train_ll) >= max_steps:
            break
        if i > 0:
            phase_start, params = len(train_ll), monitor.best_params
            monitor.restart(len(train_ll))
        step_fn = make_fit_step(phase_optimizer, learn_sigma2)
        opt_state = phase_optimizer.init(trainable_parameters(params, learn_sigma2))
        for step in range(len(train_ll), max_steps):
            new_params, opt_state, loss = step_fn(params, opt_state, train)
            train_ll.append(-float(loss))
            test_ll.append(float(_mean_loglik(params, test)) if test is not None else None)
            if on_step is not None:
                on_step(step, train_ll[-1], test_ll[-1])
            stopped = monitor.update(step, test_ll[-1] if test is not None else train_ll[-1], params)
            if stopped:
                break
            params = new_params
    # A fixed sigma2 went through jit as float32: hand back the exact value given.
    best = monitor.best_params
    best = best._replace(sigma2=float(best.sigma2) if learn_sigma2 else fixed_sigma2)
    return best, _history(train_ll, test_ll, monitor.best_step, stopped, train, test, phase_start)


@jax.jit
def _em_update(params: HMMParams, batch: PaddedBatch):
    """One EM iteration: (new params, mean log-likelihood per timepoint of the old ones)."""
    log_init, log_A = _log_model(params)

    def one(x, mask):
        return forward_backward(log_init, log_A, gaussian_log_emissions(x, params.means, params.sigma2), mask)

    smoothed = jax.vmap(one)(batch.x, batch.mask)
    post = smoothed.posteriors  # (B, T, K), 0 at padding
    occupancy = post.sum(axis=(0, 1))
    weighted_x = jnp.einsum("btk,btd->kd", post, batch.x, precision=jax.lax.Precision.HIGHEST)
    means = jnp.where(occupancy[:, None] > 1e-8, weighted_x / jnp.maximum(occupancy, 1e-8)[:, None], params.means)
    counts = smoothed.transition_counts.sum(axis=0)
    row_sums = counts.sum(axis=1, keepdims=True)
    A = jnp.where(row_sums > 1e-8, counts / jnp.maximum(row_sums, 1e-8), params.transition_matrix)
    first = jnp.argmax(batch.mask, axis=1)
    initial = post[jnp.arange(post.shape[0]), first].sum(axis=0) / post.shape[0]
    new = HMMParams(
        log_transition=jnp.log(jnp.maximum(A, _LOG_FLOOR)),
        means=means,
        initial_logits=jnp.log(jnp.maximum(initial, _LOG_FLOOR)),
        sigma2=params.sigma2,
    )
    return new, jnp.sum(smoothed.log_likelihood) / jnp.sum(batch.mask)


def em_step(params: HMMParams, sequences) -> tuple[HMMParams, float]:
    """One EM iteration (closed-form means, transitions and initial probabilities; sigma2 fixed).

    Returns (new params, log-likelihood per timepoint of the *input* params).
    """
    new, ll = _em_update(params, pad_sequences(sequences))
    return new._replace(sigma2=params.sigma2), float(ll)


def fit_hmm_em(
    sequences,
    n_states: int = N_STATES,
    *,
    sigma2: float | None = None,
    seed: int = 0,
    max_steps: int = 200,
    min_improvement: float = 1e-6,
    test_sequences=None,
    on_step: Callable[[int, float, float | None], None] | None = None,
    init: HMMParams | None = None,
) -> tuple[HMMParams, FitHistory]:
    """EM from the same start as :func:`fit_hmm` (same seed, same init, or the
    given init parameters), for comparison.

    Stops when the training log-likelihood per timepoint gains less than
    min_improvement in an iteration (EM never decreases it) or after
    max_steps; returns (final params, history).
    """
    if max_steps < 1:
        raise JfacemapError(f"max_steps must be at least 1, got {max_steps}")
    params, train, test = _setup(sequences, n_states, sigma2, seed, test_sequences, init)
    fixed_sigma2 = params.sigma2
    train_ll, test_ll = [], []
    converged = False
    for step in range(max_steps):
        # The returned params are the last ones whose log-likelihood is in the history.
        new_params, ll = _em_update(params, train)
        train_ll.append(float(ll))
        test_ll.append(float(_mean_loglik(params, test)) if test is not None else None)
        if on_step is not None:
            on_step(step, train_ll[-1], test_ll[-1])
        if step > 0 and train_ll[-1] - train_ll[-2] < min_improvement:
            converged = True
            break
        if step < max_steps - 1:
            params = new_params
    params = params._replace(sigma2=fixed_sigma2)
    return params, _history(train_ll, test_ll, len(train_ll) - 1, converged, train, test)
