"""Figures of the encode stage: variance explained (linear vs deep, normalised) and example neurons."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jfacemap.figures import pyplot
from jfacemap.figures.session import save_figure


def scatter_limits(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Shared axis limits of a per-neuron scatter: the 1st-99th percentile of both, padded 5%.

    A few neurons with tiny explainable variance have huge normalised VEs; they would
    squash everyone else, so they are drawn on the edge instead (`pin_to_limits`)."""
    values = np.r_[x, y]
    lo, hi = np.nanpercentile(values[np.isfinite(values)], [1, 99]) if np.isfinite(values).any() else (0.0, 1.0)
    pad = 0.05 * max(hi - lo, 1e-9)
    return float(lo - pad), float(hi + pad)


def pin_to_limits(x: np.ndarray, y: np.ndarray, lo: float, hi: float):
    """Finite points clipped to [lo, hi], and a mask of those that were outside: (x, y, outside)."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = np.asarray(x, np.float64)[keep], np.asarray(y, np.float64)[keep]
    outside = (x < lo) | (x > hi) | (y < lo) | (y > hi)
    return np.clip(x, lo, hi), np.clip(y, lo, hi), outside


def plot_variance_explained(ve: dict[str, np.ndarray], explainable: np.ndarray | None, path: str | os.PathLike,
                            best: np.ndarray | None = None) -> Path:
    """Left: population means (% of variance) of each model's test VE, the
    explainable VE and, when given, the best achievable (simulations).
    Right: per-neuron deep vs linear VE (%), normalised by explainable VE where known;
    neurons beyond the axes are drawn on its edge as red crosses and counted in the title."""
    plt = pyplot()
    fig, (ax_bar, ax_scatter) = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    names = list(ve)
    bars = {f"{n}": 100 * np.nanmean(ve[n]) for n in names}
    if explainable is not None:
        bars["explainable"] = 100 * np.nanmean(explainable)
    if best is not None:
        bars["best (truth)"] = 100 * np.nanmean(best)
    colors = {"linear": "#7f7f7f", "deep": "#d62728", "explainable": "#1f77b4", "best (truth)": "#2ca02c"}
    ax_bar.bar(list(bars), list(bars.values()), color=[colors.get(k, "k") for k in bars])
    if explainable is not None:
        for i, n in enumerate(names):
            norm = np.nanmean(ve[n]) / np.nanmean(explainable)
            ax_bar.text(i, bars[n], f"{100 * norm:.0f}%\nnormalised", ha="center", va="bottom", fontsize=7)
    ax_bar.set_xlabel("model")
    ax_bar.set_ylabel("variance explained (%, test)")
    ax_bar.set_title("population mean", fontsize=9)
    if "linear" in ve and "deep" in ve:
        x, y, label = ve["linear"], ve["deep"], "VE (%)"
        if explainable is not None:
            keep = explainable > 1e-3
            x, y, label = x[keep] / explainable[keep], y[keep] / explainable[keep], "normalised VE (%)"
        lo, hi = scatter_limits(100 * x, 100 * y)
        px, py, outside = pin_to_limits(100 * x, 100 * y, lo, hi)
        ax_scatter.scatter(px[~outside], py[~outside], s=2, alpha=0.3, color="k", rasterized=True)
        title = f"per neuron ({len(px)})"
        if outside.any():
            ax_scatter.scatter(px[outside], py[outside], s=12, marker="x", lw=0.8, color="#d62728", clip_on=False,
                               label=f"{outside.sum()} beyond the axes, drawn on the edge")
            ax_scatter.legend(fontsize=7, loc="upper left", frameon=False)
            title += "; axes span the 1st-99th percentile"
        ax_scatter.plot([lo, hi], [lo, hi], color="#d62728", lw=0.8)
        ax_scatter.set_xlim(lo, hi)
        ax_scatter.set_ylim(lo, hi)
        ax_scatter.set_xlabel(f"linear {label}")
        ax_scatter.set_ylabel(f"deep {label}")
        ax_scatter.set_title(title, fontsize=9)
    else:
        ax_scatter.axis("off")
    return save_figure(fig, path)


def plot_example_neurons(activity: np.ndarray, predictions: dict[str, np.ndarray], times: np.ndarray,
                         path: str | os.PathLike, names: list[str] | None = None) -> Path:
    """Rows of neurons: z-scored activity (black) and each model's prediction, on test frames.

    activity: (n, T) z-scored; predictions: model -> (n, T); times: (T,) s.
    """
    plt = pyplot()
    n = activity.shape[0]
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.1 * n + 0.6), sharex=True, squeeze=False, layout="constrained")
    colors = {"linear": "#7f7f7f", "deep": "#d62728"}
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(times, activity[i], color="k", lw=0.7, label="activity")
        for model, pred in predictions.items():
            ax.plot(times, pred[i], color=colors.get(model, "C0"), lw=0.9, label=model)
        ax.set_ylabel(f"{names[i] if names else f'neuron {i}'}\n(z-score)", rotation=0, ha="right", va="center",
                      fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7, ncol=3, loc="upper right", frameon=False)
    span = f", {times[0]:.0f}-{times[-1]:.0f} s" if len(times) else ""
    axes[-1, 0].set_xlabel(f"time (s), one test segment{span}")
    return save_figure(fig, path)
