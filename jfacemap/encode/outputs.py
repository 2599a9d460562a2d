"""An `encode_recording` result on disk: the folder `jfacemap encode` (and the demo) writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jfacemap.io.atomic import write_npz_atomic, write_text_atomic
from jfacemap.io.jsonable import jsonable

__all__ = ["write_encode_outputs"]


def write_encode_outputs(out: Path, result, behavior: np.ndarray, behavior_times: np.ndarray,
                         neural_times: np.ndarray, xpos=None, ypos=None, inputs: dict | None = None) -> dict[str, Path]:
    """Write an `encode_recording` result to the folder `out`; summary.json last (it marks a finished run).

    predictions.npz: test_idx, train_idx, neural_times, U (neurons x k, absent when neurons are predicted
      directly), targets and <model> predicted targets (T_neural x k); activity = targets @ U.T.
    per_neuron.npz: ve_<model>, explainable_ve, normalized_ve_<model>, xpos, ypos.
    clusters.npz (with clusters): labels, scales, sizes, r_<model>, locality.
    features.npz (deep): features (T_video x 256) at the video times `times`, features_neural at neural_times.
    encoder/ (deep): the trained network (orbax); linear.npz: the RRR weights.
    Returns the path of each output by name.
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = {"predictions": out / "predictions.npz", "per_neuron": out / "per_neuron.npz"}
    write_npz_atomic(paths["predictions"], test_idx=result.split.test_idx, train_idx=result.split.train_idx,
                     neural_times=neural_times, U=result.U, targets=result.targets,
                     **{name: pred for name, pred in result.predictions.items()})
    per_neuron = {f"ve_{k}": v for k, v in result.ve.items()}
    per_neuron |= {f"normalized_ve_{k}": v for k, v in result.normalized.items()}
    write_npz_atomic(paths["per_neuron"], explainable_ve=result.explainable_ve, xpos=xpos, ypos=ypos, **per_neuron,
                     **{f"cumulative_ve_{k}": v for k, v in result.cumulative_ve.items() if v is not None})
    if result.clusters:
        paths["clusters"] = out / "clusters.npz"
        write_npz_atomic(paths["clusters"], **result.clusters)
    if result.linear_fit is not None:
        fit = result.linear_fit
        paths["linear"] = out / "linear.npz"
        write_npz_atomic(paths["linear"], A=fit.A, B=fit.B, x_mean=fit.x_mean, y_mean=fit.y_mean)
    if result.deep_model is not None:
        from jfacemap.encode.deep import save_encoder  # JAX: only when there is a network

        paths["features"] = out / "features.npz"
        write_npz_atomic(paths["features"], features=result.features, times=behavior_times,
                         features_neural=result.features_neural, neural_times=neural_times)
        paths["encoder"] = save_encoder(out / "encoder", result.deep_model,
                                        {"behavior_mean": result.behavior_zscore[0],
                                         "behavior_sd": result.behavior_zscore[1],
                                         "history": result.deep_history})
    paths["summary"] = out / "summary.json"
    write_text_atomic(paths["summary"], json.dumps(jsonable(result.summary | {"inputs": inputs or {}}), indent=2) + "\n")
    return paths
