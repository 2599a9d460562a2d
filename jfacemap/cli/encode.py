"""`jfacemap encode`: predict neural activity from behaviour (keypoints or movie PCs)."""

from __future__ import annotations

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
    for key, label in SUMMARY_ROWS:
        if key in summary:
            typer.echo(f"{label:42s}{100 * summary[key]:21.1f}%")
    for key, label in (("cluster_r_linear", "cluster prediction r, linear"), ("cluster_r_deep", "cluster prediction r, deep"),
                       ("cluster_locality", "cluster locality index (KL, nats)")):
        if key in summary:
            typer.echo(f"{label:42s}{summary[key]:22.3f}")
    if "deep_over_linear" in summary:
        typer.echo(f"{'deep vs linear (relative)':42s}{100 * summary['deep_over_linear']:+21.1f}%")


def _neural_times(data, neural_times: Optional[Path], neural_fps: Optional[float]) -> np.ndarray:
    from jfacemap.io.behavior import read_timestamps

    if neural_times is not None:
        return read_timestamps(neural_times, data.n_frames, "neural frames")
    if data.timestamps is not None:
        return data.timestamps
    if neural_fps is None:
        raise JfacemapError(f"{data.source}: no neural timestamps in the file: give --neural-fps or --neural-times")
    if not neural_fps > 0:
        raise JfacemapError(f"--neural-fps must be > 0, got {neural_fps}")
    return np.arange(data.n_frames) / neural_fps


def encode(
    neural: Annotated[Path, typer.Option("--neural", help="Neural data: .npz (spks, xpos, ypos, timestamps), .npy, or a Suite2p folder.")],
    behavior: Annotated[Path, typer.Option("--behavior", help="Behaviour: _FacemapPose.h5, DeepLabCut .csv/.h5, _svd.npz, or a (time x features) .npy.")],
    model: Annotated[str, typer.Option("--model", help="deep, linear or both.")] = "both",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("encode"),
    fps: Annotated[Optional[float], typer.Option("--fps", help="Video frame rate, when no --behavior-times.")] = None,
    behavior_times: Annotated[Optional[Path], typer.Option("--behavior-times", help="Video frame times (s), .npy.")] = None,
    neural_fps: Annotated[Optional[float], typer.Option("--neural-fps", help="Neural frame rate, when the file has no timestamps.")] = None,
    neural_times: Annotated[Optional[Path], typer.Option("--neural-times", help="Neural frame times (s), .npy.")] = None,
    svd_kind: Annotated[str, typer.Option("--svd-kind", help="For _svd.npz behaviour: motion or movie PCs.")] = "motion",
    peer: Annotated[str, typer.Option("--peer", help="Peer-prediction split: strips (200 um) or checkerboard (400 um).")] = "strips",
    um_per_pixel: Annotated[float, typer.Option(help="Suite2p ROI positions: um per pixel.")] = 1.0,
    epochs: Annotated[Optional[int], typer.Option(help="Deep training epochs (default: the paper's schedule for the data size).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the deep model.")] = 0,
    clusters: Annotated[int, typer.Option(help="Scaled k-means clusters of neurons (SPEC 100; 0 = none; capped at neurons / 10).")] = 100,
) -> None:
    """Predict neural activity from behaviour: reduced-rank regression and/or the deep encoder;
    variance explained on test segments, normalised by peer-predicted explainable variance."""
    from jfacemap.io.behavior import read_behavior
    from jfacemap.io.neural import read_neural

    if model not in MODEL_CHOICES:
        raise JfacemapError(f"--model must be deep, linear or both, got {model!r}")
    if peer not in ("strips", "checkerboard"):
        raise JfacemapError(f"--peer must be strips or checkerboard, got {peer!r}")
    if epochs is not None and epochs < 1:
        raise JfacemapError(f"--epochs must be >= 1, got {epochs}")
    if clusters < 0:
        raise JfacemapError(f"--clusters must be >= 0, got {clusters}")
    if out.exists() and not out.is_dir():
        raise JfacemapError(f"{out}: --out must be a folder")
    data = read_neural(neural, um_per_pixel=um_per_pixel)
    t_neural = _neural_times(data, neural_times, neural_fps)
    beh = read_behavior(behavior, fps=fps, times=behavior_times, svd_kind=svd_kind)

    from jfacemap.encode.pipeline import check_encode_inputs, deep_recipe, encode_recording

    kind = "keypoints" if beh.kind == "keypoints" else "pcs"
    overrides = {} if epochs is None else {"epochs": epochs}
    models = MODEL_CHOICES[model]
    check_encode_inputs(data.spks, t_neural, beh.values, beh.times, data.xpos, data.ypos, models)
    n_clusters = min(clusters, data.n_neurons // 10)
    log = lambda message: typer.echo(message, err=True)  # noqa: E731
    if "deep" in models:
        with progress_bar(deep_recipe(data.n_neurons, t_neural, overrides).epochs, "training the deep encoder") as advance:
            result = encode_recording(data.spks, t_neural, beh.values, beh.times, xpos=data.xpos, ypos=data.ypos,
                                      models=models, behavior_kind=kind, peer_mode=peer, seed=seed,
                                      n_clusters=n_clusters, deep_overrides=overrides, on_epoch=lambda epoch, row: advance(1), log=log)
    else:
        result = encode_recording(data.spks, t_neural, beh.values, beh.times, xpos=data.xpos, ypos=data.ypos,
                                  models=models, behavior_kind=kind, peer_mode=peer, seed=seed,
                                  n_clusters=n_clusters, log=log)
    inputs = {"neural": str(neural), "behavior": str(behavior), "behavior_kind": beh.kind,
              "behavior_columns": list(beh.names)}
    paths = write_encode_outputs(out, result, beh.values, beh.times, t_neural, data.xpos, data.ypos, inputs)
    print_summary(result.summary)
    typer.echo(f"outputs    {out}/ ({', '.join(p.name for p in paths.values())})")
