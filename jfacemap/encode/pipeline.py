"""The encode stage end to end: neural activity + behaviour -> linear and deep
predictions, explainable variance, normalised variance explained.

    result = encode_recording(spks, neural_times, behavior, behavior_times, xpos=xpos, ypos=ypos)
    result.summary["normalized_ve_deep"]

Steps (SPEC section 3): z-score neurons; split the neural frames into 10
segments (75 % train, 3 s gap, rest test); targets = top 128 neural PCs
(neurons themselves below 200); reduced-rank regression on 100-ms-smoothed
behaviour sampled at the neural times; the deep encoder on the behaviour at
the video rate; per-neuron variance explained on test frames; explainable
variance by peer prediction when positions are known; population means.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from jfacemap.encode.align import Split, gaussian_smooth, hold_out_ends, resample, segment_split
from jfacemap.encode.linear import RRRFit, reduced_rank_regression, rrr_predict
from jfacemap.encode.metrics import (
    cumulative_ve_across_pcs,
    normalized_ve,
    peer_explainable_variance,
    ve_per_neuron,
)
from jfacemap.encode.neural_pcs import prediction_targets, zscore
from jfacemap.errors import JfacemapError
from jfacemap.io.timestamps import check_timestamps
from jfacemap.series import zscore as zscore_columns  # behaviour (T, D) -> (float32 z, mean (D,), sd (D,))

MODELS = ("linear", "deep")
# SPEC: rank 21 from keypoints, 128 from movie PCs.
DEFAULT_RANK = {"keypoints": 21, "pcs": 128}


@dataclass
class EncodeResult:
    """What `encode_recording` computed.

    summary: population figures (fractions of variance, test frames) and settings.
    split: the train/test neural frames.
    U: (n_neurons, k) neural PC loadings, or None when neurons were predicted directly.
    targets: (T_neural, k) what was predicted (PCs V S, or z-scored neurons).
    predictions: model name -> (T_neural, k) predicted targets on every neural frame.
    ve: model name -> (n_neurons,) test variance explained per neuron.
    explainable_ve: (n_neurons,) peer-prediction explainable variance, or None.
    normalized: model name -> (n_neurons,) per-neuron normalised VE (NaN where
      explainable <= 1e-3), when explainable_ve is known.
    cumulative_ve: model name -> (k,) cumulative VE across PCs (fraction of all test variance).
    linear_fit: the RRR weights; deep_model / deep_history: the trained encoder.
    features: (T_video, 256) float32 deep behavioural features at behavior_times (the
      HMM stage's input); features_neural: (T_neural, 256) the same at neural_times; None without deep.
    behavior_times, neural_times: (T_video,), (T_neural,) s, the clocks of the above.
    clusters: (when n_clusters) labels, scales (n_neurons,); r_<model> (n_clusters,)
      cluster trace vs prediction on test frames; locality (n_clusters,) when positions are known.
    """

    summary: dict
    split: Split
    U: np.ndarray | None
    targets: np.ndarray
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    ve: dict[str, np.ndarray] = field(default_factory=dict)
    explainable_ve: np.ndarray | None = None
    normalized: dict[str, np.ndarray] = field(default_factory=dict)
    cumulative_ve: dict[str, np.ndarray] = field(default_factory=dict)
    linear_fit: RRRFit | None = None
    deep_model: object | None = None
    deep_history: list[dict] = field(default_factory=list)
    behavior_zscore: tuple[np.ndarray, np.ndarray] | None = None
    clusters: dict[str, np.ndarray] = field(default_factory=dict)
    features: np.ndarray | None = None
    features_neural: np.ndarray | None = None
    behavior_times: np.ndarray | None = None
    neural_times: np.ndarray | None = None

    @property
    def feature_fps(self) -> float:
        """Rate of `features` (Hz): the median video frame rate."""
        return float(1.0 / np.median(np.diff(self.behavior_times)))


# How the deep encoder is trained (see `deep_recipe`).
SCHEDULES = ("validated", "paper", "full")
VALIDATION_FRACTION = 0.1  # of each training segment, held out (after a gap) to pick the epoch
VALIDATION_PATIENCE = 60   # epochs without a better validation loss before stopping


def deep_recipe(n_neurons: int, neural_times: np.ndarray, overrides: dict | None = None,
                schedule: str = "validated"):
    """The deep encoder's recipe for this recording.

    schedule: "validated" (default): the full schedule (AdamW 1e-3, 300 epochs, LR / 10 and
      / 100 over the last 100 and 50) with early stopping on validation frames held out of
      each training segment (`hold_out_ends`), so the number of epochs adapts to the data;
      "paper": the paper's fixed small-data rules (< 2,000 neurons: LR and weight decay / 10;
      < 1 h of training data: / 2 and 100 fewer epochs), no validation; "full": the full
      schedule whatever the data size, no validation. bench/bench_encode_schedule.py measures them.
    """
    from jfacemap.encode.deep import EncoderRecipe, encoder_recipe

    if schedule not in SCHEDULES:
        raise JfacemapError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    split = segment_split(neural_times)
    train_seconds = float(sum(neural_times[s[-1]] - neural_times[s[0]] for s in split.train))
    overrides = dict(overrides or {})
    full = encoder_recipe(n_neurons, train_seconds) if schedule == "paper" else EncoderRecipe()
    if "epochs" in overrides and "lr_tail" not in overrides:
        # A shorter (or longer) run keeps the schedule's shape: the LR drops over the last 1/3 and 1/6.
        scale = overrides["epochs"] / full.epochs
        overrides["lr_tail"] = tuple((max(1, round(n * scale)), m) for n, m in full.lr_tail)
    if schedule == "validated":
        overrides = {"patience": VALIDATION_PATIENCE} | overrides
    return full.replace(**overrides)


def check_encode_inputs(spks, neural_times, behavior, behavior_times, xpos=None, ypos=None,
                        models: Sequence[str] = MODELS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shapes, NaNs, clocks and coverage, checked before any work (JfacemapError, one line)."""
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise JfacemapError(f"models must be among {', '.join(MODELS)}, got {list(models)}")
    spks = np.asarray(spks)
    if spks.ndim != 2:
        raise JfacemapError(f"neural activity must be (neurons, time), got shape {spks.shape}")
    neural_times = check_timestamps(neural_times, "neural times", n=spks.shape[1], what="neural frame")
    behavior_times = check_timestamps(behavior_times, "behaviour times")
    behavior = np.asarray(behavior)
    if behavior.ndim != 2 or len(behavior) != len(behavior_times):
        raise JfacemapError(f"behaviour must be (time, features) with {len(behavior_times)} rows, got {behavior.shape}")
    if not np.isfinite(behavior).all():
        raise JfacemapError("behaviour has NaN/inf values")
    if behavior_times[0] > neural_times[0] or behavior_times[-1] < neural_times[-1]:
        raise JfacemapError(f"behaviour does not cover the neural recording: neural times "
                            f"{neural_times[0]:.1f}-{neural_times[-1]:.1f} s, behaviour "
                            f"{behavior_times[0]:.1f}-{behavior_times[-1]:.1f} s")
    if (xpos is None) != (ypos is None):
        raise JfacemapError("give both xpos and ypos, or neither")
    return spks, neural_times, behavior, behavior_times


def encode_recording(
    spks: np.ndarray,
    neural_times: np.ndarray,
    behavior: np.ndarray,
    behavior_times: np.ndarray,
    *,
    xpos: np.ndarray | None = None,
    ypos: np.ndarray | None = None,
    models: Sequence[str] = MODELS,
    behavior_kind: str = "keypoints",
    rank: int | None = None,
    lam: float = 1e-6,
    n_pcs: int = 128,
    peer_mode: str = "strips",
    seed: int = 0,
    deep_overrides: dict | None = None,
    schedule: str = "validated",
    train_fraction: float = 1.0,
    n_clusters: int = 0,
    on_epoch: Callable[[int, dict], bool | None] | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> EncodeResult:
    """Predict neural activity from behaviour with the linear and/or deep model.

    Args:
      spks: (n_neurons, T_neural) activity (any scale; z-scored here).
      neural_times: (T_neural,) s.
      behavior: (T_video, D) keypoint coordinates or movie PCs (NaN-free).
      behavior_times: (T_video,) s; must cover the neural times.
      xpos, ypos: (n_neurons,) um, for peer prediction (skipped when None).
      models: any of "linear", "deep".
      behavior_kind: "keypoints" or "pcs" (sets the default RRR rank: 21 / 128).
      rank, lam: RRR rank (capped by the data) and ridge penalty.
      n_pcs: neural PCs to predict (SPEC 128; neurons directly below 200).
      peer_mode: "strips" (200 um, the paper) or "checkerboard" (400 um, the original).
      train_fraction: use only the first fraction of each training segment
        (the test frames stay the same): scaling with training time.
      n_clusters: scaled k-means clusters of neurons (0 = none; SPEC 100),
        with each cluster's prediction r and locality index.
      deep_overrides: EncoderRecipe fields to override (e.g. epochs; the LR
        schedule's tail is scaled with them unless lr_tail is given too).
      schedule: how the deep encoder trains: "validated" (early stopping on the last
        tenth of each training segment), "paper" or "full" (`deep_recipe`).
      on_epoch: progress callback of the deep training.
      log: one-line progress messages.
    """
    spks, neural_times, behavior, behavior_times = check_encode_inputs(
        spks, neural_times, behavior, behavior_times, xpos, ypos, models)

    t0 = time.perf_counter()
    split = segment_split(neural_times)
    if not 0 < train_fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
    if train_fraction < 1:
        split = Split(tuple(t[: max(2, int(round(len(t) * train_fraction)))] for t in split.train), split.test,
                      split.n_time)
    train, test = split.train_idx, split.test_idx
    spks_z, _, _ = zscore(spks)
    targets, U = prediction_targets(spks_z, n_pcs, train_idx=train)
    x, x_mean, x_sd = zscore_columns(behavior)
    result = EncodeResult(summary={}, split=split, U=U, targets=targets, behavior_zscore=(x_mean, x_sd),
                          behavior_times=behavior_times, neural_times=neural_times)
    log(f"{spks.shape[0]} neurons x {spks.shape[1]} frames; {len(train)} train / {len(test)} test frames; "
        f"predicting {'neurons' if U is None else f'{targets.shape[1]} PCs'} from {behavior.shape[1]} features")
    test_variance = float(np.var(spks_z[:, test], axis=1).sum())

    if "linear" in models:
        smoothed = gaussian_smooth(x, 0.1, behavior_times)
        at_neural = resample(smoothed, behavior_times, neural_times)
        r = rank if rank is not None else DEFAULT_RANK.get(behavior_kind, 21)
        r = int(min(r, at_neural.shape[1], targets.shape[1]))
        fit = reduced_rank_regression(at_neural[train], targets[train], rank=r, lam=lam)
        result.linear_fit = fit
        result.predictions["linear"] = np.asarray(rrr_predict(fit, at_neural), np.float32)
        log(f"linear: rank {r} reduced-rank regression")

    if "deep" in models:
        from jfacemap.encode.deep import behavioural_features, predict_neural, train_encoder

        recipe = deep_recipe(spks.shape[0], neural_times, deep_overrides, schedule)
        fit, val = (hold_out_ends(split.train, neural_times, VALIDATION_FRACTION) if schedule == "validated"
                    else (split.train, None))
        model, history = train_encoder(x, behavior_times, targets, neural_times, fit, recipe=recipe,
                                       seed=seed, on_epoch=on_epoch, test_segments=split.test,
                                       val_segments=val or None)
        result.deep_model, result.deep_history = model, history
        result.predictions["deep"] = np.asarray(predict_neural(model, x, behavior_times, neural_times), np.float32)
        result.features = behavioural_features(model, x, behavior_times)
        result.features_neural = behavioural_features(model, x, behavior_times, neural_times)
        result.summary["deep_recipe"] = recipe.to_dict() | {"schedule": schedule}
        if val:
            best = max((row["epoch"] for row in history if row.get("best")), default=len(history) - 1)
            result.summary["deep_recipe"] |= {"epochs_run": len(history), "best_epoch": best,
                                              "validation_frames": int(sum(len(v) for v in val))}
            log(f"deep: {len(history)} of {recipe.epochs} epochs run; the weights of epoch {best + 1} kept "
                "(best loss on the validation frames held out of each training segment)")

    for name, pred in result.predictions.items():
        result.ve[name] = ve_per_neuron(spks_z[:, test], pred[test], U)
        result.cumulative_ve[name] = cumulative_ve_across_pcs(targets[test], pred[test], test_variance) \
            if U is not None else None

    if n_clusters:
        result.clusters = cluster_analysis(spks_z, result, n_clusters, xpos, ypos, seed)
        for name in result.predictions:
            result.summary[f"cluster_r_{name}"] = float(np.nanmean(result.clusters[f"r_{name}"]))
        if "locality" in result.clusters:
            result.summary["cluster_locality"] = float(np.nanmean(result.clusters["locality"]))
        log(f"{n_clusters} scaled k-means clusters")

    if xpos is not None:
        result.explainable_ve = peer_explainable_variance(spks_z, np.asarray(xpos), np.asarray(ypos), split,
                                                          mode=peer_mode)
        for name, ve in result.ve.items():
            population, per_neuron = normalized_ve(ve, result.explainable_ve)
            result.summary[f"normalized_ve_{name}"] = population
            result.normalized[name] = per_neuron
        result.summary["explainable_ve"] = float(np.nanmean(result.explainable_ve))
    else:
        log("no neuron positions: explainable variance (peer prediction) and normalised VE skipped")
    for name, ve in result.ve.items():
        result.summary[f"ve_{name}"] = float(np.nanmean(ve))
    if "linear" in result.ve and "deep" in result.ve and result.summary["ve_linear"] > 0:
        result.summary["deep_over_linear"] = result.summary["ve_deep"] / result.summary["ve_linear"] - 1.0
    result.summary.update({
        "n_neurons": int(spks.shape[0]), "n_neural_frames": int(spks.shape[1]),
        "n_behavior_frames": int(len(behavior)), "n_features": int(behavior.shape[1]),
        "behavior_kind": behavior_kind, "targets": "neurons" if U is None else f"{targets.shape[1]} PCs",
        "n_train": int(len(train)), "n_test": int(len(test)), "models": list(result.predictions),
        "rrr_rank": None if result.linear_fit is None else int(result.linear_fit.rank), "rrr_lambda": lam,
        "peer_mode": peer_mode if xpos is not None else None, "seed": int(seed),
        "train_fraction": float(train_fraction), "n_clusters": int(n_clusters),
        "seconds": time.perf_counter() - t0,
    })
    return result


def cluster_analysis(spks_z: np.ndarray, result: EncodeResult, n_clusters: int, xpos=None, ypos=None,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Scaled k-means of the neurons on train frames; per cluster, r between its mean
    test trace and the mean of its neurons' predictions (computed through U, so the
    neurons x time prediction is never formed), and the locality index."""
    from scipy import sparse

    from jfacemap.encode.clusters import cluster_prediction_r, locality_index, scaled_kmeans

    train, test = result.split.train_idx, result.split.test_idx
    n = spks_z.shape[0]
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be in [1, {n}], got {n_clusters}")
    km = scaled_kmeans(spks_z[:, train], n_clusters, seed=seed)
    counts = np.bincount(km.labels, minlength=n_clusters).astype(np.float64)
    average = sparse.csr_matrix((1.0 / np.maximum(counts[km.labels], 1), (km.labels, np.arange(n))),
                                shape=(n_clusters, n))
    traces = np.asarray(average @ spks_z[:, test].astype(np.float64))  # (n_clusters, T_test)
    out = {"labels": km.labels, "scales": km.scales, "sizes": counts}
    for name, pred in result.predictions.items():
        loadings = average @ result.U if result.U is not None else average
        cluster_pred = np.asarray(loadings @ pred[test].T.astype(np.float64))
        out[f"r_{name}"] = cluster_prediction_r(traces, cluster_pred, np.arange(n_clusters))
    if xpos is not None:
        out["locality"] = locality_index(np.asarray(xpos), np.asarray(ypos), km.labels, n_clusters=n_clusters)
    return out
