"""Figures of the HMM stage: sorted transitions, state raster, lifetimes, forward sequences, a sampled sequence.

Each function takes arrays, writes one PNG atomically and returns its path;
`plot_hmm_figures` draws them all from a `run_hmm` result.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jfacemap.figures import pyplot
from jfacemap.figures.axes import integer_ticks, positive_only, window_label
from jfacemap.figures.session import save_figure


def _log_axis_plain(axis, set_scale) -> None:
    """Log scale with plain numbers (0.2, 1, 5) at the major ticks and no minor labels."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    set_scale("log")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    formatter = ScalarFormatter()
    formatter.set_scientific(False)
    axis.set_major_formatter(formatter)
    axis.set_minor_formatter(NullFormatter())


def plot_transitions(A: np.ndarray, order: np.ndarray, sparsity: np.ndarray, path: str | os.PathLike,
                     control_sparsity: np.ndarray | None = None) -> Path:
    """Left: A (K, K) with states sorted by `order`; middle: B (A without
    self-transitions, rows renormalised), sorted; right: transition sparsity
    (K-1,) (cumulative probability of the n most likely next states), with a
    shuffled-data control when given."""
    plt = pyplot()
    A = np.asarray(A, np.float64)
    sorted_A = A[np.ix_(order, order)]
    B = sorted_A.copy()
    np.fill_diagonal(B, 0.0)
    B = B / np.maximum(B.sum(1, keepdims=True), 1e-300)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), layout="constrained")
    for ax, mat, title in ((axes[0], sorted_A, "A (sorted)"), (axes[1], B, "B = A without self-transitions")):
        im = ax.imshow(mat, cmap="gray_r", vmin=0, vmax=np.percentile(mat, 99.5) or 1, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("to state (sorted index)")
        ax.set_ylabel("from state (sorted index)")
        for axis in (ax.xaxis, ax.yaxis):  # states are whole numbers: no 2.5 ticks on small models
            integer_ticks(axis)
        fig.colorbar(im, ax=ax, shrink=0.8).set_label("probability (per step)", fontsize=8)
    n = np.arange(1, len(sparsity) + 1)
    axes[2].plot(n, sparsity, color="k", label="data")
    if control_sparsity is not None:
        axes[2].plot(n, control_sparsity, color="#7f7f7f", ls="--", label="shuffled control")
    axes[2].plot(n, n / len(n), color="#d62728", lw=0.7, label="uniform")
    if len(n) > 20:  # many states: the first few next states matter most
        _log_axis_plain(axes[2].xaxis, axes[2].set_xscale)
    else:
        integer_ticks(axes[2].xaxis)
    axes[2].set_xlabel("n most likely next states (count)")
    axes[2].set_ylabel("cumulative probability (0-1)")
    axes[2].set_title("transition sparsity", fontsize=9)
    axes[2].legend(fontsize=7, frameon=False)
    return save_figure(fig, path)


def plot_state_raster(states: np.ndarray, order: np.ndarray, dt: float, path: str | os.PathLike,
                      seconds: float = 300.0) -> Path:
    """The Viterbi path (T,) over the first `seconds` (the title says which part), states on the y axis
    in sorted order."""
    plt = pyplot()
    order = np.asarray(order)
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    n = int(min(len(states), max(2, seconds / dt)))
    t = np.arange(n) * dt
    fig, ax = plt.subplots(figsize=(10, 3.2), layout="constrained")
    ax.scatter(t, rank[np.asarray(states)[:n]], s=2, marker="s", color="k", rasterized=True)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("state (sorted index)")
    ax.set_ylim(-0.5, len(order) - 0.5)
    integer_ticks(ax.yaxis)
    ax.set_title(f"most likely states (Viterbi), {window_label(n, len(states), dt)}", fontsize=9)
    return save_figure(fig, path)


def plot_lifetimes(lifetimes_s: np.ndarray, run_s: np.ndarray, path: str | os.PathLike,
                   control_lifetimes_s: np.ndarray | None = None) -> Path:
    """Histograms (log x) of state lifetimes dt / (1 - A_kk) and of mean Viterbi run lengths, seconds.

    A log axis cannot hold zero or less: such values are left out and counted in the
    title; NaN runs (states the Viterbi path never visits) are skipped."""
    plt = pyplot()
    values, dropped = [], 0
    for v in (lifetimes_s, run_s, control_lifetimes_s):
        if v is not None:
            v, n_bad = positive_only(v)
            values.append(v[np.isfinite(v)])
            dropped += n_bad
    lo, hi = min(v.min() for v in values if len(v)), max(v.max() for v in values if len(v))
    bins = np.geomspace(max(lo, 1e-3) / 1.2, hi * 1.2, 25)
    fig, ax = plt.subplots(figsize=(5.5, 3.4), layout="constrained")
    ax.hist(values[0], bins=bins, color="k", alpha=0.7, label="dt / (1 - p), model")
    ax.hist(values[1], bins=bins, histtype="step", color="#1f77b4", lw=1.2, label="mean Viterbi run")
    if control_lifetimes_s is not None:
        ax.hist(values[2], bins=bins, histtype="step", color="#7f7f7f", ls="--", label="shuffled control")
    _log_axis_plain(ax.xaxis, ax.set_xscale)
    integer_ticks(ax.yaxis)
    ax.set_xlabel("state lifetime (s, log scale)")
    ax.set_ylabel("states (count)")
    if dropped:
        ax.set_title(f"{dropped} values <= 0 s not drawn (log axis)", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    return save_figure(fig, path)


def plot_sequence_lengths(counts: np.ndarray, shuffled_counts: np.ndarray, path: str | os.PathLike) -> Path:
    """Fraction of forward sequences of each length (sorted Viterbi path) against shuffled runs.

    Lengths never seen have fraction 0, which a log axis cannot show: they are left
    out (a gap, not a line plunging off the axis) and the title says so."""
    plt = pyplot()
    n = np.arange(1, len(counts) + 1)
    data, n_data = positive_only(np.asarray(counts, np.float64) / max(np.sum(counts), 1))
    shuffled, n_shuffled = positive_only(np.asarray(shuffled_counts, np.float64)
                                         / max(np.sum(shuffled_counts), 1e-12))
    fig, ax = plt.subplots(figsize=(5.5, 3.4), layout="constrained")
    ax.plot(n, data, "o-", color="k", ms=3, label="data")
    ax.plot(np.arange(1, len(shuffled) + 1), shuffled, "o--", color="#7f7f7f", ms=3, label="shuffled runs")
    ax.set_yscale("log")
    integer_ticks(ax.xaxis)
    ax.set_xlabel("forward sequence length (states)")
    ax.set_ylabel("fraction of sequences (log scale)")
    if n_data or n_shuffled:
        ax.set_title("lengths never seen (fraction 0) not drawn", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    return save_figure(fig, path)


def plot_sample_vs_data(data: np.ndarray, sampled: np.ndarray, means: np.ndarray, order: np.ndarray, dt: float,
                        path: str | os.PathLike) -> Path:
    """Real features (n, D) beside a sequence (n, D) sampled from the fitted model, same time span
    (the start of the data when it is longer; the title says which part).

    Features are ordered by the sorted state at which their mean (means (K, D)) peaks,
    so forward sequences show as diagonal bands in both panels.
    """
    plt = pyplot()
    feature_order = np.argsort(np.argmax(np.asarray(means)[np.asarray(order)], axis=0), kind="stable")
    n = min(len(data), len(sampled))
    vmax = np.percentile(np.abs(data[:n]), 99) or 1.0
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True, layout="constrained")
    panels = ((axes[0], data[:n], f"data (z-scored), {window_label(n, len(data), dt)}"),
              (axes[1], sampled[:n], f"sampled from the HMM, {n * dt:.3g} s"))
    for ax, values, title in panels:
        im = ax.imshow(values[:, feature_order].T, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                       extent=(0, n * dt, values.shape[1], 0), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("time (s)")
    axes[0].set_ylabel("feature (index, sorted by preferred state)")
    fig.colorbar(im, ax=axes[1], shrink=0.8).set_label("feature value (z-score)", fontsize=8)
    return save_figure(fig, path)


def plot_hmm_figures(result, out: str | os.PathLike, prefix: str = "hmm_") -> list[Path]:
    """All figures of a `run_hmm` result into the folder `out`; returns their paths."""
    out = Path(out)
    a = result.analysis
    control = result.control.analysis if result.control is not None else None
    return [
        plot_transitions(result.transition_matrix, a.order, a.sparsity, out / f"{prefix}transitions.png",
                         None if control is None else control.sparsity),
        plot_state_raster(result.states, a.order, result.dt, out / f"{prefix}states.png"),
        plot_lifetimes(a.lifetimes_s, a.run_s, out / f"{prefix}lifetimes.png",
                       None if control is None else control.lifetimes_s),
        plot_sequence_lengths(a.sequence_counts, a.shuffled_counts, out / f"{prefix}sequences.png"),
        plot_sample_vs_data(result.x, result.sampled, np.asarray(result.params.means), a.order, result.dt,
                            out / f"{prefix}sample.png"),
    ]
