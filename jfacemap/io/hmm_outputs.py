"""The HMM stage's files: features in (`load_features`), a fitted run out (`write_hmm_outputs`).

The fitting itself is `jfacemap.hmm` (arrays in, arrays out); this module is its disk side, so the
`jfacemap hmm` command and the demo share it. params.npz's arrays are `jfacemap.hmm.params_file`'s.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from jfacemap import DEFAULT_FPS  # re-exported: the rate of features that carry no timestamps
from jfacemap.errors import JfacemapError
from jfacemap.io.atomic import write_bytes_atomic, write_npz_atomic, write_text_atomic
from jfacemap.io.inputs import KEYPOINT_SUFFIXES
from jfacemap.io.jsonable import jsonable
from jfacemap.io.timestamps import check_timestamps

__all__ = ["DEFAULT_FPS", "load_features", "write_hmm_outputs"]


def _fps_from_times(times: np.ndarray, where: Path) -> float:
    t = check_timestamps(np.ravel(times), f"{where}: times")
    if t.size < 2:
        raise JfacemapError(f"{where}: one timestamp gives no frame rate: give fps")
    return 1.0 / float(np.median(np.diff(t)))


def _read_npz(p: Path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    with np.load(p, allow_pickle=False) as z:
        if "features" in z.files:  # an encode output (features at the video times)
            return np.asarray(z["features"]), (np.asarray(z["times"]) if "times" in z.files else None)
        arrays = [k for k in z.files if z[k].ndim == 2]
        if len(arrays) != 1:
            raise JfacemapError(f"{p}: expected a 'features' array or one 2-D (time x features) array, "
                                f"found {', '.join(z.files) or 'nothing'}")
        return np.asarray(z[arrays[0]]), None


def load_features(path: Path, fps: Optional[float] = None) -> tuple[np.ndarray, float, str]:
    """Features (T, D), their rate (Hz) and kind from a path the command accepts.

    An encode output folder or its features.npz (`features` at `times`), another
    .npz with one 2-D array, a .npy (time x features), keypoints
    (`_FacemapPose.h5` / DeepLabCut .csv or .h5 -> x, y of each bodypart, gaps filled),
    the original Facemap's `_proc.npy` (its full-frame motion PCs), or the
    traces of a `jfacemap roi` output (`_roi.npz`: pupil, blink, running, ROI motion PCs).
    fps: frame rate; default: from `times` when the file has them, else 50 Hz.
    """
    from jfacemap.io.behavior import read_behavior
    from jfacemap.io.facemap_proc import is_proc_path

    p = Path(path)
    if p.is_dir():
        if not (p / "features.npz").is_file():
            raise JfacemapError(f"{p}: no features.npz in this folder (expected an encode output folder)")
        p = p / "features.npz"
    if not p.exists():
        raise JfacemapError(f"{p}: no such file")
    if fps is not None and not fps > 0:
        raise JfacemapError(f"fps must be > 0, got {fps}")
    suffix = p.suffix.lower()
    times = None
    try:
        if suffix in KEYPOINT_SUFFIXES:
            beh = read_behavior(p, fps=fps or DEFAULT_FPS)
            return beh.values, fps or DEFAULT_FPS, "keypoints"
        if is_proc_path(p):
            beh = read_behavior(p, fps=fps or DEFAULT_FPS, svd_kind="motion")
            return beh.values, fps or DEFAULT_FPS, "motion PCs"
        if p.name.endswith("_roi.npz"):
            beh = read_behavior(p, fps=fps or DEFAULT_FPS)
            return beh.values, fps or DEFAULT_FPS, "roi"
        if suffix == ".npz":
            x, times = _read_npz(p)
            kind = "deep features" if times is not None else "array"
        elif suffix == ".npy":
            x, kind = np.load(p, allow_pickle=False), "array"
        else:
            raise JfacemapError(f"{p}: unknown file type {suffix or '(none)'}; expected a .npy/.npz array, "
                                "an encode output folder, a _FacemapPose.h5 or a Facemap _proc.npy")
    except (OSError, EOFError, ValueError) as error:
        if str(error).startswith(str(p)):
            raise
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise JfacemapError(f"{p}: cannot read it ({reason})") from error
    if fps is None:
        fps = _fps_from_times(times, p) if times is not None else DEFAULT_FPS
    return x, float(fps), kind


def _analysis_arrays(result, prefix: str = "") -> dict:
    a = result.analysis
    n = result.x.shape[0]
    train_mask = np.zeros(n, bool)
    for s in result.train:
        train_mask[s] = True
    test = result.history.test_loglik
    return {f"{prefix}{k}": v for k, v in {
        "lifetimes_s": a.lifetimes_s, "lifetimes_paper_s": a.lifetimes_paper_s, "run_s": a.run_s,
        "occupancy": a.occupancy, "B": a.B, "sparsity": a.sparsity, "near": a.near, "order": a.order,
        "sequence_counts": a.sequence_counts, "shuffled_counts": a.shuffled_counts,
        "history_train_loglik": result.history.train_loglik,
        "history_test_loglik": None if test is None else np.asarray(test, np.float64),
        "train_mask": train_mask,
    }.items()} | _response_arrays(getattr(result, "responses", None), prefix)


def _response_arrays(responses, prefix: str) -> dict:
    """The state-triggered responses (`HMMResult.responses`) as response_* arrays; none without them."""
    if responses is None:
        return {}
    return {f"{prefix}response_{k}": getattr(responses, k) for k in (
        "trial_state", "trial_start", "trial_length", "trial_split", "neurons", "population", "response")}


def write_hmm_outputs(out: Path, result, inputs: dict | None = None,
                      figures: Optional[Callable[[], Iterable[Path]]] = None) -> dict[str, Path]:
    """Write a `run_hmm` result to the folder `out`; summary.json last (it marks a finished run).

    params.npz: transition_matrix (K, K) rows sum to 1, means (K, D) and sigma2 () in model units
      (z-scored unless the run's zscore was False), initial (K,), log_transition, initial_logits, the transform
      zscore_mean / zscore_sd (D,) (0 / 1 without z-scoring), zscore, sigma2_learned, fps, downsample
      (`jfacemap.hmm.params_file`; `read_emissions` gives means and variance in data units).
    states.npy: (T_d,) int32 Viterbi path at fps / downsample.
    analysis.npz: per-state arrays and curves of `describe_model` (control_* for the shuffled control),
      fit histories and train_mask (T_d,); with neural activity, the state-triggered responses response_*
      (`jfacemap.hmm.analysis.StateResponses`'s fields). analysis.json: their scalar summaries and per-state
      lifetimes.
    figures: draws the figures into `out` and returns their paths (e.g. `jfacemap.figures.hmm.plot_hmm_figures`),
      called after the arrays and before summary.json; None: no figures.
    result: a `jfacemap.hmm.pipeline.HMMResult`.
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = {"params": out / "params.npz", "states": out / "states.npy", "analysis_npz": out / "analysis.npz",
             "analysis_json": out / "analysis.json"}
    write_npz_atomic(paths["params"], **result.params_file_arrays())
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(result.states, np.int32))
    write_bytes_atomic(paths["states"], buffer.getvalue())
    arrays = _analysis_arrays(result)
    analysis = {"stats": result.analysis.stats, "lifetimes_s": result.analysis.lifetimes_s,
                "order": result.analysis.order, "sparsity": result.analysis.sparsity,
                "sequence_counts": result.analysis.sequence_counts,
                "shuffled_counts": result.analysis.shuffled_counts}
    if result.control is not None:
        arrays |= _analysis_arrays(result.control, "control_")
        analysis["control"] = {"stats": result.control.analysis.stats,
                               "lifetimes_s": result.control.analysis.lifetimes_s,
                               "sparsity": result.control.analysis.sparsity}
    write_npz_atomic(paths["analysis_npz"], **arrays)
    write_text_atomic(paths["analysis_json"], json.dumps(jsonable(analysis), indent=2) + "\n")
    if figures is not None:
        for figure in figures():
            paths[Path(figure).stem] = Path(figure)
    paths["summary"] = out / "summary.json"
    summary = result.summary() | {"inputs": inputs or {}}
    write_text_atomic(paths["summary"], json.dumps(jsonable(summary), indent=2) + "\n")
    return paths
