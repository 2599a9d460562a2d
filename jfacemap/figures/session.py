"""Figures of a session's behaviour and keypoints."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jfacemap.figures import pyplot
from jfacemap.figures.axes import window_label
from jfacemap.io.atomic import atomic_path

# Units of the synthetic behavioural latents (jfacemap.synth.behavior); anything else is "a.u.".
LATENT_UNITS = {
    "whisk_angle": "deg", "whisk_setpoint": "deg", "whisk_amplitude": "deg", "whisk_phase": "rad",
    "whisk_freq": "Hz", "sniff_freq": "Hz", "nose_x": "px", "nose_y": "px", "blink": "0-1", "pupil": "0-1",
    "jaw": "0-1", "paw_height": "0-1", "eye_x": "-1 to 1", "eye_y": "-1 to 1", "paw_stroke": "-1 to 1",
}
MIN_SPAN_PX = 4.0  # a keypoint row is never taller than this zoom: sub-pixel jitter must not look like motion


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    plt = pyplot()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


def plot_latents(latents: dict[str, np.ndarray], fps: float, path: str | os.PathLike, seconds: float = 10.0,
                 units: dict[str, str] | None = None) -> Path:
    """One row per behavioural latent (T,) over the first `seconds`; `state` as a raster.

    units: name -> unit for the y labels, over LATENT_UNITS."""
    plt = pyplot()
    units = LATENT_UNITS | (units or {})
    names = [k for k, v in latents.items() if np.ndim(v) == 1 and len(v) > 1 and k != "state"]
    n_total = len(latents[names[0]] if names else latents["state"])
    n_show = int(min(n_total, seconds * fps))
    t = np.arange(n_show) / fps
    rows = len(names) + ("state" in latents)
    fig, axes = plt.subplots(
        rows, 1, figsize=(9, 0.8 * rows + 0.6), sharex=True, squeeze=False, layout="constrained"
    )
    axes = axes[:, 0]
    for ax, name in zip(axes, names):
        ax.plot(t, np.asarray(latents[name])[:n_show], lw=0.8, color="k")
        ax.set_ylabel(f"{name}\n({units.get(name, 'a.u.')})", rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
    if "state" in latents:
        ax = axes[-1]
        ax.imshow(np.asarray(latents["state"])[None, :n_show], aspect="auto", cmap="tab10",
                  extent=(0, n_show / fps, 0, 1), interpolation="nearest")
        ax.set_yticks([])
        ax.set_ylabel("state\n(colour = index)", rotation=0, ha="right", va="center", fontsize=8)
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(f"behavioural latents ({fps:g} Hz), {window_label(n_show, n_total, 1 / fps)}", fontsize=10)
    return save_figure(fig, path)


def trace_limits(*traces: np.ndarray | None, min_span: float = MIN_SPAN_PX) -> tuple[float, float] | None:
    """y limits (px) holding every finite value of every trace, at least `min_span` tall; None if none is finite.

    Tracked and true traces share these limits, so a tracking error is drawn at its size in px;
    the full range (not percentiles) keeps a tracker's jumps visible instead of clipped."""
    values = np.concatenate([np.ravel(np.asarray(tr, np.float64)) for tr in traces if tr is not None])
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    lo, hi = float(values.min()), float(values.max())
    pad = max(0.05 * (hi - lo), (min_span - (hi - lo)) / 2)
    return lo - pad, hi + pad


def plot_keypoint_traces(
    keypoints: np.ndarray,
    bodyparts: list[str],
    fps: float,
    path: str | os.PathLike,
    seconds: float = 10.0,
    reference: np.ndarray | None = None,
    min_span_px: float = MIN_SPAN_PX,
) -> Path:
    """x and y of each keypoint over time; keypoints (T, K, 3) in pixels.

    One small plot per keypoint and coordinate, its y axis in px (see `trace_limits`).
    With `reference` (same shape), it is drawn in grey under the traces, on the same
    axis: the ground truth beneath a prediction, so an offset is a bias in px.
    """
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    n_show = int(min(len(keypoints), seconds * fps))
    t = np.arange(n_show) / fps
    rows = len(bodyparts)
    fig, axes = plt.subplots(rows, 2, figsize=(12, 0.55 * rows + 1.4), sharex=True, squeeze=False,
                             layout="constrained")
    for k, name in enumerate(bodyparts):
        colour = plt.cm.turbo(0.05 + 0.9 * k / max(rows - 1, 1))
        for column, ax in enumerate(axes[k]):
            trace = keypoints[:n_show, k, column]
            truth = None if reference is None else reference[:n_show, k, column]
            limits = trace_limits(trace, truth, min_span=min_span_px)
            ax.set_ylabel(f"{name} (px)", rotation=0, ha="right", va="center", fontsize=7)
            ax.tick_params(labelsize=6)
            if limits is None:
                ax.text(0.5, 0.5, "not visible", transform=ax.transAxes, ha="center", va="center", fontsize=7)
                ax.set_yticks([])
                continue
            if truth is not None:
                ax.plot(t, truth, color="0.65", lw=1.8)
            ax.plot(t, trace, lw=0.7, color=colour)
            ax.set_ylim(*limits)
            ax.yaxis.set_major_locator(MaxNLocator(nbins=3))
    axes[0, 0].set_title("x position (px)", fontsize=9)
    axes[0, 1].set_title("y position (px)", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    what = "tracked (colour) on ground truth (grey)" if reference is not None else "keypoint positions"
    fig.suptitle(f"{what}, {window_label(n_show, len(keypoints), 1 / fps)}; each row has its own y axis "
                 f"in px, at least {min_span_px:g} px tall", fontsize=10)
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
    ax.set_xlabel("bodypart (scored ones)")
    ax.set_ylabel("error (px)")
    ax.set_title(f"tracking error against ground truth (mean {np.nanmean(errors_px):.2f} px, "
                 f"{len(errors_px)} frames)", fontsize=10)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
