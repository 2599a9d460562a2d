"""The HMM stage end to end: behaviour or deep features -> fitted HMM, states, analyses (SPEC section 5).

    result = run_hmm(features, fps=50.0, n_states=50)
    result.summary()["test_loglik"], result.states, result.analysis.order

Steps:
1. downsample by block means (**10x**, 50 Hz -> 5 Hz);
2. split time into contiguous blocks: the recording is cut into
   `n_segments` (default 10) equal segments and the last `test_fraction`
   (default 25 %) of each is held out, so test blocks are spread over the
   session and every block is an independent sequence to the HMM;
3. z-score each feature with the training blocks' mean and SD (a constant
   feature keeps SD 1 and becomes 0), unless zscore=False; the map is kept
   (`HMMResult.transform`) so the model can be read in data units;
4. fit by gradient ascent on the exact log-likelihood of the training blocks
   (`fit_hmm`: Adam with the transitions at a tenth of the means' rate, then
   the transitions alone), early stopping on the test blocks' log-likelihood;
   the shared emission variance sigma2 fixed, or learned with the means;
   with `n_inits` > 1, several seeds and the fit with the best training
   log-likelihood is kept; then up to `refine` rounds re-seed states left
   without data and refit (`jfacemap.hmm.refine`), kept when the training
   log-likelihood rises;
5. Viterbi path over the whole (downsampled) recording;
6. analyses (`describe_model`): lifetimes in seconds, transition sparsity,
   near / reverse / two-step transitions against chance, the Rastermap-style
   state order and forward-sequence lengths against shuffled runs;
7. optionally the same on the data shuffled in time (the paper's control),
   timepoints permuted within the training and within the test blocks;
8. given neural activity (`responses`), the state-triggered responses: each
   state's most active neurons on training trials (runs of the state), and
   their responses on the test trials of every state.
Log-likelihoods are nats per timepoint of the data the model sees (z-scored,
downsampled); `summary()` adds them in data units (downsampled features),
comparable with and without z-scoring. The test figure is also the
early-stopping criterion, so slightly optimistic.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import jax
import numpy as np

from jfacemap.errors import JfacemapError
from jfacemap.hmm import DOWNSAMPLE, LEARNING_RATE, MAX_STEPS, N_STATES, PATIENCE, REFINE, TEST_FRACTION
from jfacemap.hmm.analysis import (
    StateResponses, near_transitions, off_diagonal_transitions, run_lengths, sequence_length_histogram,
    TOP_NEURONS, shuffled_forward_lengths, forward_sequence_lengths, state_lifetimes, state_triggered_responses,
    transition_sparsity,
)
from jfacemap.hmm.controls import shuffle_time
from jfacemap.hmm.fit import (
    FitHistory, HMMParams, check_features, downsample, fit_hmm, log_likelihood_per_timepoint,
    most_likely_states,
)
from jfacemap.hmm.optimizers import default_transition_learning_rate
from jfacemap.hmm.params_file import params_arrays
from jfacemap.hmm.inference import sample
from jfacemap.hmm.refine import reseed_proposal
from jfacemap.hmm.sorting import sort_states
from jfacemap.hmm.transform import FeatureTransform
from jfacemap.series import N_SEGMENTS, split_segments
from jfacemap.series import zscore as zscore_series  # run_hmm's `zscore` is its on/off switch

__all__ = ["ModelAnalysis", "HMMResult", "split_blocks", "describe_model", "run_hmm"]

# on_step(fit_index, step, train_loglik, test_loglik): fit_index counts every fit of a run (inits, then control).
StepCallback = Callable[[int, int, float, "float | None"], None]


def split_blocks(n_timepoints: int, test_fraction: float = TEST_FRACTION, n_segments: int = N_SEGMENTS,
                 min_segment: int = 10) -> tuple[list[slice], list[slice]]:
    """Contiguous train/test blocks: (train slices, test slices) of 0..n_timepoints-1.

    The time axis is cut into min(n_segments, n_timepoints // min_segment)
    (at least 1) near-equal segments (`jfacemap.series.split_segments`, no
    gap); the first floor((1 - test_fraction) * length) timepoints of each are
    train, the rest (at least 1 when test_fraction > 0) test. test_fraction =
    0 gives no test blocks.
    """
    if not 0 <= test_fraction < 1:
        raise JfacemapError(f"test fraction must be in [0, 1), got {test_fraction}")
    if n_segments < 1:
        raise JfacemapError(f"n_segments must be >= 1, got {n_segments}")
    n = max(1, min(n_segments, n_timepoints // min_segment))
    train_spans, test_spans = split_segments(n_timepoints, n, 1.0 - test_fraction)
    if any(stop <= start for start, stop in train_spans):
        raise JfacemapError(f"{n_timepoints} timepoints are too few to split into train and test blocks")
    return [slice(*t) for t in train_spans], [slice(*t) for t in test_spans if t[1] > t[0]]


@dataclass(frozen=True)
class ModelAnalysis:
    """Properties of one fitted HMM and its Viterbi path (see `describe_model`).

    lifetimes_s (K,): mean state duration dt / (1 - A_kk); lifetimes_paper_s
    (K,): -dt log(1 - A_kk) (the paper's printed formula); run_s (K,): mean
    Viterbi run length per state (NaN if none; first/last runs dropped);
    occupancy (K,): fraction of time in each state; B (K, K): transitions
    between different states; sparsity (K - 1,): mean cumulative probability
    of the n most likely next states; order (K,): states sorted for forward
    sequences (order[a] = state at position a); sequence_counts (L,): forward
    sequences of length 1..L in the sorted Viterbi path; shuffled_counts (L,):
    the same for shuffled runs, per shuffle; stats: scalar summaries.
    """

    lifetimes_s: np.ndarray
    lifetimes_paper_s: np.ndarray
    run_s: np.ndarray
    occupancy: np.ndarray
    B: np.ndarray
    sparsity: np.ndarray
    near: np.ndarray
    order: np.ndarray
    sequence_counts: np.ndarray
    shuffled_counts: np.ndarray
    stats: dict = field(default_factory=dict)


def describe_model(A, states, dt: float, n_near: int = 5, seed: int = 0, n_shuffles: int = 10) -> ModelAnalysis:
    """Analyse a fitted transition matrix A (K, K) and a state path (T,) at dt seconds per step.

    A is taken in float64 with entries floored at 1e-12 and rows renormalised,
    so a float32 self-transition of exactly 1 still has somewhere to go.
    """
    A = np.maximum(np.asarray(A, np.float64), 1e-12)
    A = A / A.sum(1, keepdims=True)
    K = A.shape[0]
    states = np.asarray(states, np.int64)
    lifetimes = state_lifetimes(A, dt, "mean")
    per_state_runs = run_lengths(states, K, drop_edges=True)
    run_s = np.array([dt * r.mean() if len(r) else np.nan for r in per_state_runs])
    occupancy = np.bincount(states, minlength=K) / len(states)
    B = off_diagonal_transitions(A)
    _, sparsity = transition_sparsity(B)
    near = near_transitions(B, min(n_near, K - 1))
    order = sort_states(B)
    lengths = forward_sequence_lengths(states, order)
    shuffled = shuffled_forward_lengths(states, order, seed=seed, n_shuffles=n_shuffles)
    top = int(max(lengths.max(), shuffled.max()))
    stats = {
        "lifetime_median_s": float(np.median(lifetimes)),
        "lifetime_min_s": float(lifetimes.min()),
        "lifetime_max_s": float(lifetimes.max()),
        "run_median_s": float(np.nanmedian(run_s)) if np.isfinite(run_s).any() else float("nan"),
        "states_used": int(np.count_nonzero(occupancy)),
        "sparsity_top1": float(sparsity[0]),
        "sparsity_top5": float(sparsity[min(4, K - 2)]),
        "near": near.summary(),
        "near_weighted": near.summary(weighted=True),
        "mean_sequence_length": float(lengths.mean()),
        "mean_sequence_length_shuffled": float(shuffled.mean()),
        "sequence_length_ratio": float(lengths.mean() / shuffled.mean()),
        "p90_sequence_length": float(np.percentile(lengths, 90)),
        "p90_sequence_length_shuffled": float(np.percentile(shuffled, 90)),
    }
    return ModelAnalysis(
        lifetimes_s=lifetimes, lifetimes_paper_s=state_lifetimes(A, dt, "paper"), run_s=run_s,
        occupancy=occupancy, B=B, sparsity=sparsity, near=near.near, order=order,
        sequence_counts=sequence_length_histogram(lengths, top),
        shuffled_counts=sequence_length_histogram(shuffled, top) / n_shuffles, stats=stats,
    )


@dataclass(frozen=True)
class HMMResult:
    """What `run_hmm` computed.

    params: the fitted HMM (means and sigma2 in model units: z-scored unless
    settings["zscore"] is False); history: its fit record; x: (T_d, D)
    downsampled features in model units; dt: seconds per model step;
    zscore_mean, zscore_sd: (D,) of the downsampled training features (0 and
    1 without z-scoring), see `transform`; train, test:
    the blocks (slices of 0..T_d-1); states: (T_d,) Viterbi path;
    train_loglik, test_loglik: nats per timepoint (test NaN without test
    blocks); analysis: `describe_model`; sampled_states (n,), sampled: (n, D)
    a sequence drawn from the fitted model; control: the same run on
    shuffled data, or None (its test_loglik is on the real test blocks, its
    own shuffled ones in settings["test_loglik_shuffled"]); settings: the
    arguments; seconds: wall time; responses: the neurons of each state and
    their responses on test trials (`state_triggered_responses`), when
    `run_hmm` was given neural activity, else None.
    """

    params: HMMParams
    history: FitHistory
    x: np.ndarray
    dt: float
    zscore_mean: np.ndarray
    zscore_sd: np.ndarray
    train: list[slice]
    test: list[slice]
    states: np.ndarray
    train_loglik: float
    test_loglik: float
    analysis: ModelAnalysis
    sampled_states: np.ndarray
    sampled: np.ndarray
    control: "HMMResult | None"
    settings: dict
    seconds: float
    responses: StateResponses | None = None

    @property
    def transform(self) -> FeatureTransform:
        """Model units <-> downsampled features (data units); the identity without z-scoring."""
        return FeatureTransform(self.zscore_mean, self.zscore_sd)

    @property
    def transition_matrix(self) -> np.ndarray:
        """A (K, K) float64, rows summing to 1."""
        A = np.asarray(self.params.transition_matrix, np.float64)
        return A / A.sum(1, keepdims=True)

    def params_file_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of params.npz for this fit (`jfacemap.hmm.params_file`)."""
        s = self.settings
        return params_arrays(self.params, self.transform, zscored=s["zscore"], sigma2_learned=s["learn_sigma2"],
                             fps=s["fps"], downsample=s["downsample"])

    def summary(self) -> dict:
        """Scalars for summary.json: log-likelihoods (model units, then data units), settings, fit record,
        sigma2 (model units) and its mean over features in data units, analysis stats."""
        h = self.history
        jacobian = self.transform.log_jacobian
        out = {
            "train_loglik": self.train_loglik,
            "test_loglik": self.test_loglik,
            "train_loglik_data_units": self.train_loglik + jacobian,
            "test_loglik_data_units": self.test_loglik + jacobian,
            **self.settings,
            "sigma2": float(self.params.sigma2),
            "sigma2_units": "z-scored" if self.settings.get("zscore", True) else "data",
            "sigma2_data_units_mean": float(np.mean(self.transform.variance_to_data(self.params.sigma2))),
            "model_fps": 1.0 / self.dt,
            "n_timepoints": int(self.x.shape[0]),
            "n_features": int(self.x.shape[1]),
            "n_train_timepoints": h.n_train_timepoints,
            "n_test_timepoints": h.n_test_timepoints,
            "n_blocks": len(self.train),
            "steps": int(len(h.train_loglik)),
            "best_step": int(h.best_step),
            "transitions_phase_start": None if h.transitions_phase_start is None else int(h.transitions_phase_start),
            "stopped_early": bool(h.stopped_early),
            "seconds": self.seconds,
            **{k: v for k, v in self.analysis.stats.items()},
        }
        if self.responses is not None:  # a state's own neurons on its test trials, and on other states'
            r = self.responses.response
            off = ~np.eye(len(r), dtype=bool)
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: no test trials
                out["state_response_own"] = float(np.nanmean(np.diag(r)))
                out["state_response_other"] = float(np.nanmean(r[off]))
        if self.control is not None:
            c = self.control
            out["control"] = {"train_loglik": c.train_loglik, "test_loglik": c.test_loglik,
                              "test_loglik_shuffled": c.settings["test_loglik_shuffled"],
                              "steps": int(len(c.history.train_loglik)), **c.analysis.stats}
        return out


def _shuffle_within(x: np.ndarray, groups: list[np.ndarray], seed: int) -> np.ndarray:
    """x (T, D) with the rows of each group (index arrays) permuted among themselves."""
    out = x.copy()
    for i, group in enumerate(groups):
        out[group] = shuffle_time(x[group], seed=seed + i)
    return out


def _fit_best(train_x, test_x, n_states, sigma2, seed, n_inits, refine, fit_kwargs, on_step, first_index):
    """Best of n_inits seeded fits (training log-likelihood), then up to `refine` rounds of
    re-seeding dead states and refitting, each kept only if the training log-likelihood rose."""

    def callback(index):
        return None if on_step is None else (lambda s, tr, te: on_step(first_index + index, s, tr, te))

    best, rounds, total_steps = None, 0, 0
    for i in range(n_inits):
        params, history = fit_hmm(train_x, n_states, sigma2=sigma2, seed=seed + i,
                                  test_sequences=test_x or None, on_step=callback(i), **fit_kwargs)
        total_steps += len(history.train_loglik)
        train_ll = log_likelihood_per_timepoint(params, train_x)
        if best is None or train_ll > best[2]:
            best = (params, history, train_ll)
    for r in range(refine):
        proposal, moved = reseed_proposal(best[0], train_x)
        if not moved:
            break
        params, history = fit_hmm(train_x, n_states, init=proposal, test_sequences=test_x or None,
                                  on_step=callback(n_inits + r), **fit_kwargs)
        total_steps += len(history.train_loglik)
        train_ll = log_likelihood_per_timepoint(params, train_x)
        if not train_ll > best[2] + 1e-6:
            break
        best, rounds = (params, history, train_ll), r + 1
    return best + (rounds, total_steps)


def _fit_and_describe(x, train, test, n_states, sigma2, seed, n_inits, refine, fit_kwargs, on_step, first_index,
                      dt, n_sample) -> tuple:
    train_x = [x[s] for s in train]
    test_x = [x[s] for s in test]
    params, history, train_ll, rounds, total_steps = _fit_best(train_x, test_x, n_states, sigma2, seed, n_inits, refine,
                                                  fit_kwargs, on_step, first_index)
    test_ll = log_likelihood_per_timepoint(params, test_x) if test_x else float("nan")
    states = most_likely_states(params, x)
    analysis = describe_model(np.asarray(params.transition_matrix), states, dt, seed=seed)
    analysis.stats["refine_rounds"] = rounds
    analysis.stats["steps_all_fits"] = total_steps
    n = min(n_sample, x.shape[0])
    key = jax.random.PRNGKey(seed)
    sampled_states, sampled = sample(key, params.initial, params.transition_matrix, params.means,
                                     params.sigma2, n)
    return params, history, train_ll, test_ll, states, analysis, np.asarray(sampled_states), np.asarray(sampled)


def run_hmm(
    features,
    fps: float,
    n_states: int = N_STATES,
    *,
    downsample_factor: int = DOWNSAMPLE,
    sigma2: float | None = None,
    learn_sigma2: bool = False,
    zscore: bool = True,
    seed: int = 0,
    max_steps: int = MAX_STEPS,
    learning_rate: float = LEARNING_RATE,
    transition_learning_rate: float | None = None,
    patience: int = PATIENCE,
    test_fraction: float = TEST_FRACTION,
    n_segments: int = N_SEGMENTS,
    n_inits: int = 1,
    refine: int = REFINE,
    control: bool = False,
    n_sample: int = 300,
    responses=None,
    on_step: StepCallback | None = None,
) -> HMMResult:
    """Fit an HMM to features (T, D) recorded at fps Hz and analyse it (see the module docstring).

    n_states: K (**50**); downsample_factor: block-mean factor (**10**);
    sigma2: the shared emission variance in the units of the data the model
    sees: z-scored units (each feature divided by its training SD), or the
    downsampled features' own units squared with zscore=False. Default:
    summed training variance / 256 (= D / 256 when z-scored). learn_sigma2:
    train it with the means (`fit_hmm`); sigma2 is then the start (default:
    mean per-feature training variance). zscore: False fits the raw
    (downsampled) features; the means' learning rate is then in their units,
    so scale it with the features' SD. seed: init (means from random training
    timepoints) and sampling; max_steps, learning_rate,
    transition_learning_rate (default a tenth of learning_rate), patience: the
    Adam fit (`fit_hmm`, `hmm_optimizer`); test_fraction, n_segments: the block split
    (`split_blocks`); n_inits: seeds tried, best training log-likelihood kept;
    refine: most rounds of re-seeding unused states and refitting
    (`refine.reseed_proposal`; 0 = the SPEC's single gradient fit);
    control: also fit the data shuffled in time (single timepoints);
    n_sample: length of the sequence drawn from the fit (model steps);
    responses: (T, n_neurons) neural activity on the features' frames (e.g.
    resampled at their times): block-means like the features, then each
    state's top neurons on training trials and their responses on test trials
    (`state_triggered_responses`, the paper's state-triggered activity) go in
    `HMMResult.responses`;
    on_step(fit_index, step, train_ll, test_ll) after every step of every fit.
    """
    start = time.perf_counter()
    raw = check_features(features, 1)
    activity = None if responses is None else _check_responses(responses, raw.shape[0])
    if not (np.isfinite(fps) and fps > 0):
        raise JfacemapError(f"fps must be a positive number, got {fps}")
    if n_inits < 1:
        raise JfacemapError(f"n_inits must be >= 1, got {n_inits}")
    if int(downsample_factor) != downsample_factor or downsample_factor < 1:
        raise JfacemapError(f"downsample_factor must be a positive integer, got {downsample_factor}")
    # Each block of the split needs a training and a test timepoint, and the states more timepoints than
    # there are of them: fewer fit without error but describe nothing (no transitions to analyse).
    n_timepoints, need = raw.shape[0] // int(downsample_factor), max(2 * n_segments, n_states + 1)
    if n_timepoints < need:
        raise JfacemapError(f"{raw.shape[0]} frames give {n_timepoints} timepoints after downsample_factor="
                            f"{downsample_factor}, too few: need at least {need} (2 per block of the train/test "
                            f"split into n_segments={n_segments}, and more than n_states={n_states})")
    xd = downsample(raw, downsample_factor)
    train, test = split_blocks(len(xd), test_fraction, n_segments)
    n_train = sum(s.stop - s.start for s in train)
    if n_train < n_states:
        raise JfacemapError(f"{raw.shape[0]} frames give {n_train} training timepoints after {downsample_factor}x "
                            f"downsampling, too few for {n_states} states")
    rows = np.concatenate([np.arange(s.start, s.stop) for s in train])
    if zscore:
        x, mean, sd = zscore_series(xd, idx=rows)
    else:
        x, mean, sd = xd, np.zeros(xd.shape[1]), np.ones(xd.shape[1])
    dt = downsample_factor / fps
    if transition_learning_rate is None:
        transition_learning_rate = default_transition_learning_rate(learning_rate)
    fit_kwargs = dict(max_steps=max_steps, learning_rate=learning_rate,
                      transition_learning_rate=transition_learning_rate, patience=patience,
                      learn_sigma2=learn_sigma2)
    settings = {"n_states": n_states, "downsample": downsample_factor, "fps": float(fps), "seed": seed,
                "max_steps": max_steps, "learning_rate": learning_rate,
                "transition_learning_rate": transition_learning_rate, "patience": patience,
                "test_fraction": test_fraction, "n_inits": n_inits, "refine": refine,
                "zscore": bool(zscore), "learn_sigma2": bool(learn_sigma2),
                "split": f"{len(train)} segments, last {test_fraction:.0%} of each held out"}
    if refine < 0:
        raise JfacemapError(f"refine must be >= 0, got {refine}")
    fitted = _fit_and_describe(x, train, test, n_states, sigma2, seed, n_inits, refine, fit_kwargs, on_step, 0,
                               dt, n_sample)
    control_result = None
    if control:
        # Same blocks and settings on data whose timepoints are permuted within the training rows and
        # within the test rows: no temporal structure left, and no test timepoint in the training set.
        shuffled = _shuffle_within(x, [rows, np.setdiff1d(np.arange(len(x)), rows)], seed + 10_000)
        c = _fit_and_describe(shuffled, train, test, n_states, sigma2, seed, n_inits, refine, fit_kwargs, on_step,
                              n_inits + refine, dt, n_sample)
        # Scored on the real test blocks, like the model itself: the difference is what temporal
        # structure adds (the shuffled test blocks are iid draws, easier than contiguous real ones).
        test_real = log_likelihood_per_timepoint(c[0], [x[s] for s in test]) if test else float("nan")
        control_result = HMMResult(c[0], c[1], shuffled, dt, mean, sd, train, test, c[4], c[2], test_real, c[5],
                                   c[6], c[7], None, settings | {"shuffled": True, "test_loglik_shuffled": c[3]},
                                   0.0)
    params, history, train_ll, test_ll, states, analysis, sampled_states, sampled = fitted
    triggered = None
    if activity is not None:
        train_mask = np.zeros(len(states), bool)
        train_mask[rows] = True
        per_step = downsample(activity, downsample_factor).T  # (n_neurons, T_d), on the model's steps
        triggered = state_triggered_responses(states, per_step, n_states, n_top=min(TOP_NEURONS, len(per_step)),
                                              train_mask=train_mask)
    return HMMResult(params, history, x, dt, mean, sd, train, test, states, train_ll, test_ll, analysis,
                     sampled_states, sampled, control_result, settings, time.perf_counter() - start, triggered)


def _check_responses(responses, n_frames: int) -> np.ndarray:
    """(T, n_neurons) finite activity, one row per feature frame (checked before any fitting)."""
    act = np.asarray(responses)
    if act.ndim != 2 or act.shape[0] != n_frames or act.shape[1] < 1:
        raise JfacemapError(f"responses must be (T={n_frames}, n_neurons): one row per feature frame, "
                            f"got shape {act.shape}")
    if not np.isfinite(act).all():
        raise JfacemapError("responses has NaN/inf values")
    return act
