"""Figures of a session's behaviour and keypoints."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jfacemap.figures import pyplot
from jfacemap.io.atomic import atomic_path


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    plt = pyplot()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


def plot_latents(latents: dict[str, np.ndarray], fps: float, path: str | os.PathLike, seconds: float = 10.0) -> Path:
    """One row per behavioural latent (T,) over the first `seconds`; `state` as a raster."""
    plt = pyplot()
    names = [k for k, v in latents.items() if np.ndim(v) == 1 and len(v) > 1 and k != "state"]
    n_show = int(min(len(next(iter(latents.values()))), seconds * fps))
    t = np.arange(n_show) / fps
    rows = len(names) + ("state" in latents)
    fig, axes = plt.subplots(
        rows, 1, figsize=(9, 0.8 * rows + 0.6), sharex=True, squeeze=False, layout="constrained"
    )
    axes = axes[:, 0]
    for ax, name in zip(axes, names):
        ax.plot(t, np.asarray(latents[name])[:n_show], lw=0.8, color="k")
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
    if "state" in latents:
        ax = axes[-1]
        ax.imshow(np.asarray(latents["state"])[None, :n_show], aspect="auto", cmap="tab10",
                  extent=(0, n_show / fps, 0, 1), interpolation="nearest")
        ax.set_yticks([])
        ax.set_ylabel("state", rotation=0, ha="right", va="center", fontsize=8)
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(f"behavioural latents ({fps:g} Hz)", fontsize=10)
    return save_figure(fig, path)


def plot_keypoint_traces(
    keypoints: np.ndarray,
    bodyparts: list[str],
    fps: float,
    path: str | os.PathLike,
    seconds: float = 10.0,
    reference: np.ndarray | None = None,
) -> Path:
    """x and y of each keypoint over time; keypoints (T, K, 3) in pixels.

    Each row is centred on its median and scaled to its own 1st-99th
    percentile range (printed beside the name; the reference's, when given), so a 2 px whisker and a 60 px
    paw are both readable. With `reference` (same shape), it is drawn in grey
    under the traces: the ground truth beneath a prediction.
    """
    plt = pyplot()
    n_show = int(min(len(keypoints), seconds * fps))
    t = np.arange(n_show) / fps
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(bodyparts) + 1.2), layout="constrained")
    for column, (ax, coord) in enumerate(zip(axes, "xy")):
        labels = []
        for k, name in enumerate(bodyparts):
            trace = keypoints[:n_show, k, column]
            if not np.isfinite(trace).any():
                labels.append(f"{name} (not visible)")
                continue
            # With a reference, rows sit on the ground truth, so a bias shows as an offset.
            anchor = trace if reference is None or not np.isfinite(reference[:n_show, k, column]).any() \
                else reference[:n_show, k, column]
            low, centre, high = np.nanpercentile(anchor, [1, 50, 99])
            scale = max(high - low, 0.5)
            labels.append(f"{name} ({scale:.1f} px)")
            if reference is not None:
                ax.plot(t, (reference[:n_show, k, column] - centre) / scale - k, color="0.7", lw=2.0)
            ax.plot(t, (trace - centre) / scale - k, lw=0.7, color=plt.cm.turbo(k / max(len(bodyparts) - 1, 1)))
        ax.set_title(f"{coord} position, each row scaled to its own range", fontsize=9)
        ax.set_xlabel("time (s)")
        ax.set_yticks([-k for k in range(len(bodyparts))])
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_ylim(-len(bodyparts) + 0.3, 0.8)
    return save_figure(fig, path)


def plot_error_percentiles(errors_px: np.ndarray, bodyparts: list[str], path: str | os.PathLike) -> Path:
    """Tracking error percentiles per keypoint; errors_px (T, K) Euclidean px, NaN where not scored."""
    plt = pyplot()
    qs = np.array([50, 75, 90, 95])
    fig, ax = plt.subplots(figsize=(9, 3.6), layout="constrained")
    scored = [k for k in range(len(bodyparts)) if np.isfinite(errors_px[:, k]).any()]
    table = np.array([np.nanpercentile(errors_px[:, k], qs) for k in scored])
    for j, q in enumerate(qs):
        ax.plot(range(len(scored)), table[:, j], "o-", lw=1, ms=4, label=f"{q}th percentile")
    ax.set_xticks(range(len(scored)))
    ax.set_xticklabels([bodyparts[k] for k in scored], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("error (px)")
    ax.set_title(f"tracking error against ground truth (mean {np.nanmean(errors_px):.2f} px)", fontsize=10)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
