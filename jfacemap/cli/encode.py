"""`jfacemap encode`: predict neural activity from behaviour (keypoints or movie PCs)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from jfacemap.cli.progress import progress_bar
from jfacemap.io.atomic import write_bytes_atomic, write_text_atomic
from jfacemap.io.jsonable import jsonable

MODEL_CHOICES = {"both": ("linear", "deep"), "linear": ("linear",), "deep": ("deep",)}
SUMMARY_ROWS = (("explainable_ve", "explainable variance (peer prediction)"),
                ("ve_linear", "variance explained, linear (RRR)"),
                ("ve_deep", "variance explained, deep"),
                ("normalized_ve_linear", "normalised VE, linear"),
                ("normalized_ve_deep", "normalised VE, deep"))


def write_npz(path: Path, **arrays) -> None:
    """np.savez into `path` atomically (no pickles: every value must be a plain array)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items() if v is not None})
    write_bytes_atomic(path, buffer.getvalue())


def write_encode_outputs(out: Path, result, behavior: np.ndarray, behavior_times: np.ndarray,
                         neural_times: np.ndarray, xpos=None, ypos=None, inputs: dict | None = None) -> dict[str, Path]:
    """Write an `encode_recording` result to the folder `out`; summary.json last (it marks a finished run).

    predictions.npz: test_idx, train_idx, neural_times, U (neurons x k, absent when neurons are predicted
      directly), targets and <model> predicted targets (T_neural x k); activity = targets @ U.T.
    per_neuron.npz: ve_<model>, explainable_ve, normalized_ve_<model>, xpos, ypos.
    clusters.npz (with clusters): labels, scales, sizes, r_<model>, locality.
    features.npz (deep): features (T_video x 256) at the video times `times`, features_neural at neural_times.
    encoder/ (deep): the trained network (orbax); linear.npz: the RRR weights.
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = {"predictions": out / "predictions.npz", "per_neuron": out / "per_neuron.npz"}
    write_npz(paths["predictions"], test_idx=result.split.test_idx, train_idx=result.split.train_idx,
              neural_times=neural_times, U=result.U, targets=result.targets,
              **{name: pred for name, pred in result.predictions.items()})
    per_neuron = {f"ve_{k}": v for k, v in result.ve.items()}
    per_neuron |= {f"normalized_ve_{k}": v for k, v in result.normalized.items()}
    write_npz(paths["per_neuron"], explainable_ve=result.explainable_ve, xpos=xpos, ypos=ypos, **per_neuron,
              **{f"cumulative_ve_{k}": v for k, v in result.cumulative_ve.items() if v is not None})
    if result.clusters:
        paths["clusters"] = out / "clusters.npz"
        write_npz(paths["clusters"], **result.clusters)
    if result.linear_fit is not None:
        fit = result.linear_fit
        paths["linear"] = out / "linear.npz"
        write_npz(paths["linear"], A=fit.A, B=fit.B, x_mean=fit.x_mean, y_mean=fit.y_mean)
    if result.deep_model is not None:
        from jfacemap.encode.deep import behavioural_features, save_encoder

        x = (behavior - result.behavior_zscore[0]) / result.behavior_zscore[1]
        x = x.astype(np.float32)
        paths["features"] = out / "features.npz"
        write_npz(paths["features"], features=behavioural_features(result.deep_model, x, behavior_times),
                  times=behavior_times,
                  features_neural=behavioural_features(result.deep_model, x, behavior_times, neural_times),
                  neural_times=neural_times)
        paths["encoder"] = save_encoder(out / "encoder", result.deep_model,
                                        {"behavior_mean": result.behavior_zscore[0], "behavior_sd": result.behavior_zscore[1],
                                         "history": result.deep_history})
    paths["summary"] = out / "summary.json"
    write_text_atomic(paths["summary"], json.dumps(jsonable(result.summary | {"inputs": inputs or {}}), indent=2) + "\n")
    return paths


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
        raise ValueError(f"{data.source}: no neural timestamps in the file: give --neural-fps or --neural-times")
    if not neural_fps > 0:
        raise ValueError(f"--neural-fps must be > 0, got {neural_fps}")
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
        raise ValueError(f"--model must be deep, linear or both, got {model!r}")
    if peer not in ("strips", "checkerboard"):
        raise ValueError(f"--peer must be strips or checkerboard, got {peer!r}")
    if epochs is not None and epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {epochs}")
    if clusters < 0:
        raise ValueError(f"--clusters must be >= 0, got {clusters}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: --out must be a folder")
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
