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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_latents(latents: dict[str, np.ndarray], fps: float, path: str | os.PathLike, seconds: float = 10.0) -> Path:
    """One row per behavioural latent (T,) over the first `seconds`; `state` as a raster."""
    plt = pyplot()
    names = [k for k, v in latents.items() if np.ndim(v) == 1 and len(v) > 1 and k != "state"]
    n_show = int(min(len(next(iter(latents.values()))), seconds * fps))
    t = np.arange(n_show) / fps
    rows = len(names) + ("state" in latents)
    fig, axes = plt.subplots(rows, 1, figsize=(9, 1.1 * rows + 0.6), sharex=True, squeeze=False)
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
    fig.suptitle("behavioural latents (50 Hz)", fontsize=10)
    return save_figure(fig, path)


def plot_keypoint_traces(
    keypoints: np.ndarray,
    bodyparts: list[str],
    fps: float,
    path: str | os.PathLike,
    seconds: float = 10.0,
    reference: np.ndarray | None = None,
) -> Path:
    """x and y of each keypoint over time, (T, K, 3) in pixels, mean removed.

    With `reference` (same shape), it is drawn in grey under the traces: the
    ground truth beneath a prediction.
    """
    plt = pyplot()
    n_show = int(min(len(keypoints), seconds * fps))
    t = np.arange(n_show) / fps
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.42 * len(bodyparts) + 1.2))
    for column, (ax, coord) in enumerate(zip(axes, "xy")):
        spread = np.nanpercentile(keypoints[:n_show, :, column], 99, axis=0) - np.nanpercentile(
            keypoints[:n_show, :, column], 1, axis=0
        ) if np.isfinite(keypoints[:n_show, :, column]).any() else np.ones(1)
        gap = float(np.nanmax(np.r_[spread, 1.0])) * 1.1
        for k, name in enumerate(bodyparts):
            trace = keypoints[:n_show, k, column]
            offset = np.nanmean(trace) if np.isfinite(trace).any() else 0.0
            if reference is not None:
                ref = reference[:n_show, k, column]
                ax.plot(t, ref - offset - gap * k, color="0.7", lw=2.0)
            ax.plot(t, trace - offset - gap * k, lw=0.7, color=plt.cm.turbo(k / max(len(bodyparts) - 1, 1)))
        ax.set_title(f"{coord} (px, one row per keypoint, {gap:.0f} px apart)", fontsize=9)
        ax.set_xlabel("time (s)")
        ax.set_yticks([-gap * k for k in range(len(bodyparts))])
        ax.set_yticklabels(bodyparts, fontsize=7)
    return save_figure(fig, path)
