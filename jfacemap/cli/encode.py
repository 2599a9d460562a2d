"""`jfacemap encode`: predict neural activity from behaviour (keypoints or movie PCs)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from jfacemap.cli.progress import progress_bar
from jfacemap.encode.outputs import write_encode_outputs
from jfacemap.errors import JfacemapError

MODEL_CHOICES = {"both": ("linear", "deep"), "linear": ("linear",), "deep": ("deep",)}
SUMMARY_ROWS = (("explainable_ve", "explainable variance (peer prediction)"),
                ("ve_linear", "variance explained, linear (RRR)"),
                ("ve_deep", "variance explained, deep"),
                ("normalized_ve_linear", "normalised VE, linear"),
                ("normalized_ve_deep", "normalised VE, deep"))


def print_summary(summary: dict) -> None:
    typer.echo(f"{'':42s}{'test, population mean':>22s}")
    doubtful = summary.get("explainable_ve_reliable") is False
    for key, label in SUMMARY_ROWS:
        if key in summary:
            note = "  (unreliable: see the warning)" if doubtful and key.startswith(("normalized", "explainable")) else ""
            typer.echo(f"{label:42s}{100 * summary[key]:21.1f}%{note}")
    for key, label in (("cluster_r_linear", "cluster prediction r, linear"), ("cluster_r_deep", "cluster prediction r, deep"),
                       ("cluster_locality", "cluster locality index (KL, nats)")):
        if key in summary:
            typer.echo(f"{label:42s}{summary[key]:22.3f}")
    if "deep_over_linear" in summary:
        typer.echo(f"{'deep vs linear (relative)':42s}{100 * summary['deep_over_linear']:+21.1f}%")


def _check_reliability(result) -> None:
    """Flag (summary) and warn (stderr) when the explainable variance cannot serve as the ceiling."""
    from jfacemap.encode.metrics import explainable_ve_reliability

    if result.explainable_ve is None:
        return
    normalized = {k.removeprefix("normalized_ve_"): v for k, v in result.summary.items() if k.startswith("normalized_ve_")}
    reliable, why = explainable_ve_reliability(result.explainable_ve, normalized)
    result.summary["explainable_ve_reliable"] = reliable
    if not reliable:
        typer.echo(f"warning: the peer-prediction estimate of explainable variance is unreliable: {why}; "
                   "read the normalised VE with care", err=True)


def _neural_times(data, neural_times: Optional[Path], neural_fps: Optional[float]) -> np.ndarray:
    from jfacemap.io.behavior import read_timestamps

    if neural_times is not None:
        return read_timestamps(neural_times, data.n_frames, "neural frame")
    if data.timestamps is not None:
        return data.timestamps
    if neural_fps is None:
        raise JfacemapError(f"{data.source}: no neural timestamps in the file: give --neural-fps or --neural-times")
    if not neural_fps > 0:
        raise JfacemapError(f"--neural-fps must be > 0, got {neural_fps}")
    return np.arange(data.n_frames) / neural_fps


def encode(
    neural: Annotated[Path, typer.Option("--neural", metavar="PATH", help="Neural data: .npz (spks, xpos, ypos, timestamps), .npy, or a Suite2p folder.")],
    behavior: Annotated[Path, typer.Option("--behavior", metavar="FILE", help="Behaviour: _FacemapPose.h5, DeepLabCut .csv/.h5, _svd.npz, Facemap _proc.npy, _roi.npz, or a (time x features) .npy.")],
    model: Annotated[str, typer.Option("--model", metavar="deep|linear|both", help="Which encoder(s) to fit.")] = "both",
    out: Annotated[Path, typer.Option("--out", "-o", metavar="FOLDER", help="Output folder.")] = Path("encode"),
    fps: Annotated[Optional[float], typer.Option("--fps", help="Video frame rate, when no --behavior-times.")] = None,
    behavior_times: Annotated[Optional[Path], typer.Option("--behavior-times", metavar="FILE", help="Video frame times (s), .npy.")] = None,
    neural_fps: Annotated[Optional[float], typer.Option("--neural-fps", help="Neural frame rate, when the file has no timestamps.")] = None,
    neural_times: Annotated[Optional[Path], typer.Option("--neural-times", metavar="FILE", help="Neural frame times (s), .npy.")] = None,
    svd_kind: Annotated[str, typer.Option("--svd-kind", metavar="motion|movie", help="For _svd.npz or _proc.npy behaviour: motion or movie PCs.")] = "motion",
    peer: Annotated[str, typer.Option("--peer", metavar="strips|checkerboard", help="Peer-prediction split: strips (200 um) or checkerboard (400 um).")] = "strips",
    um_per_pixel: Annotated[float, typer.Option(help="Suite2p ROI positions: um per pixel.")] = 1.0,
    schedule: Annotated[str, typer.Option("--schedule", metavar="validated|paper|full", help="How the deep encoder trains: validated (default) runs the full schedule (AdamW 1e-3, 300 epochs) and keeps the epoch with the best loss on the last tenth of each training segment, stopping after 60 epochs without a better one; paper applies the paper's fixed small-data rules (fewer than 2,000 neurons or 1 h: lower LR, fewer epochs); full runs all 300 epochs whatever the data.")] = "validated",
    epochs: Annotated[Optional[int], typer.Option(help="Deep training epochs (default: 300; 200 for the paper schedule on under 1 h).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the deep model.")] = 0,
    clusters: Annotated[int, typer.Option(help="Scaled k-means clusters of neurons (0 = none; capped at neurons / 10).")] = 100,
) -> None:
    """Predict neural activity from behaviour with reduced-rank regression and/or the deep encoder.

    Prints test variance explained, normalised by peer-predicted explainable variance (warns when unreliable).
    """
    from jfacemap.io.behavior import read_behavior
    from jfacemap.io.neural import read_neural

    if model not in MODEL_CHOICES:
        raise JfacemapError(f"--model must be deep, linear or both, got {model!r}")
    if peer not in ("strips", "checkerboard"):
        raise JfacemapError(f"--peer must be strips or checkerboard, got {peer!r}")
    if epochs is not None and epochs < 1:
        raise JfacemapError(f"--epochs must be >= 1, got {epochs}")
    if schedule not in ("validated", "paper", "full"):
        raise JfacemapError(f"--schedule must be validated, paper or full, got {schedule!r}")
    if clusters < 0:
        raise JfacemapError(f"--clusters must be >= 0, got {clusters}")
    if out.exists() and not out.is_dir():
        raise JfacemapError(f"{out}: --out must be a folder")
    data = read_neural(neural, um_per_pixel=um_per_pixel)
    t_neural = _neural_times(data, neural_times, neural_fps)
    with warnings.catch_warnings(record=True) as caught:  # e.g. a bodypart never visible, left out
        warnings.simplefilter("always", UserWarning)
        beh = read_behavior(behavior, fps=fps, times=behavior_times, svd_kind=svd_kind)
    for warning in caught:
        typer.echo(f"warning: {warning.message}", err=True)

    from jfacemap.encode.pipeline import check_encode_inputs, deep_recipe, encode_recording

    kind = "keypoints" if beh.kind == "keypoints" else "pcs"
    overrides = {} if epochs is None else {"epochs": epochs}
    models = MODEL_CHOICES[model]
    check_encode_inputs(data.spks, t_neural, beh.values, beh.times, data.xpos, data.ypos, models)
    n_clusters = min(clusters, data.n_neurons // 10)
    log = lambda message: typer.echo(message, err=True)  # noqa: E731
    if "deep" in models:
        epochs_total = deep_recipe(data.n_neurons, t_neural, overrides, schedule).epochs
        with progress_bar(epochs_total, "training the deep encoder", unit="epochs") as advance:
            result = encode_recording(data.spks, t_neural, beh.values, beh.times, xpos=data.xpos, ypos=data.ypos,
                                      models=models, behavior_kind=kind, peer_mode=peer, seed=seed,
                                      n_clusters=n_clusters, deep_overrides=overrides, schedule=schedule,
                                      on_epoch=lambda epoch, row: advance(1), log=log)
    else:
        result = encode_recording(data.spks, t_neural, beh.values, beh.times, xpos=data.xpos, ypos=data.ypos,
                                  models=models, behavior_kind=kind, peer_mode=peer, seed=seed,
                                  n_clusters=n_clusters, log=log)
    _check_reliability(result)
    inputs = {"neural": str(neural), "behavior": str(behavior), "behavior_kind": beh.kind,
              "behavior_columns": list(beh.names)}
    paths = write_encode_outputs(out, result, beh.values, beh.times, t_neural, data.xpos, data.ypos, inputs)
    print_summary(result.summary)
    typer.echo(f"outputs    {out}/ ({', '.join(p.name for p in paths.values())})")
