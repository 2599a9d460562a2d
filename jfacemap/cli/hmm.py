"""`jfacemap hmm`: discrete behavioural states from deep features or keypoints (SPEC section 5)."""

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

DEFAULT_FPS = 50.0  # the paper's camera rate, used when the input carries no timestamps
KEYPOINT_SUFFIXES = (".h5", ".hdf5", ".csv")


def _fps_from_times(times: np.ndarray, where: Path) -> float:
    steps = np.diff(np.asarray(times, np.float64).ravel())
    if steps.size == 0 or not np.all(np.isfinite(steps)) or not np.all(steps > 0):
        raise ValueError(f"{where}: times must increase strictly")
    return 1.0 / float(np.median(steps))


def _read_npz(p: Path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    with np.load(p, allow_pickle=False) as z:
        if "features" in z.files:  # an encode output (features at the video times)
            return np.asarray(z["features"]), (np.asarray(z["times"]) if "times" in z.files else None)
        arrays = [k for k in z.files if z[k].ndim == 2]
        if len(arrays) != 1:
            raise ValueError(f"{p}: expected a 'features' array or one 2-D (time x features) array, "
                             f"found {', '.join(z.files) or 'nothing'}")
        return np.asarray(z[arrays[0]]), None


def load_features(path: Path, fps: Optional[float] = None) -> tuple[np.ndarray, float, str]:
    """Features (T, D), their rate (Hz) and kind from a path the command accepts.

    An encode output folder or its features.npz (`features` at `times`), another
    .npz with one 2-D array, a .npy (time x features), or keypoints
    (`_FacemapPose.h5` / DeepLabCut .csv or .h5 -> x, y of each bodypart, gaps filled).
    fps: frame rate; default: from `times` when the file has them, else 50 Hz.
    """
    from jfacemap.io.behavior import read_behavior

    p = Path(path)
    if p.is_dir():
        if not (p / "features.npz").is_file():
            raise ValueError(f"{p}: no features.npz in this folder (expected an encode output folder)")
        p = p / "features.npz"
    if not p.exists():
        raise ValueError(f"{p}: no such file")
    if fps is not None and not fps > 0:
        raise ValueError(f"--fps must be > 0, got {fps}")
    suffix = p.suffix.lower()
    times = None
    try:
        if suffix in KEYPOINT_SUFFIXES:
            beh = read_behavior(p, fps=fps or DEFAULT_FPS)
            return beh.values, fps or DEFAULT_FPS, "keypoints"
        if suffix == ".npz":
            x, times = _read_npz(p)
            kind = "deep features" if times is not None else "array"
        elif suffix == ".npy":
            x, kind = np.load(p, allow_pickle=False), "array"
        else:
            raise ValueError(f"{p}: unknown file type {suffix or '(none)'}; expected a .npy/.npz array, "
                             "an encode output folder or a _FacemapPose.h5")
    except (OSError, EOFError, ValueError) as error:
        if str(error).startswith(str(p)):
            raise
        raise ValueError(f"{p}: cannot read it ({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
    if fps is None:
        fps = _fps_from_times(times, p) if times is not None else DEFAULT_FPS
    return x, float(fps), kind


def write_npz(path: Path, **arrays) -> None:
    """np.savez into `path` atomically (plain arrays only, no pickles)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items() if v is not None})
    write_bytes_atomic(path, buffer.getvalue())


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
    }.items()}


def write_hmm_outputs(out: Path, result, inputs: dict | None = None, figures: bool = True) -> dict[str, Path]:
    """Write a `run_hmm` result to the folder `out`; summary.json last (it marks a finished run).

    params.npz: transition_matrix (K, K) rows sum to 1, means (K, D) and sigma2 () in model units
      (z-scored unless --no-zscore), initial (K,), log_transition, initial_logits, the transform
      zscore_mean / zscore_sd (D,) (0 / 1 without z-scoring), zscore, sigma2_learned, fps, downsample
      (`jfacemap.hmm.params_file`; `read_emissions` gives means and variance in data units).
    states.npy: (T_d,) int32 Viterbi path at fps / downsample.
    analysis.npz: per-state arrays and curves of `describe_model` (control_* for the shuffled control),
      fit histories and train_mask (T_d,). analysis.json: their scalar summaries and per-state lifetimes.
    hmm_*.png figures when matplotlib is installed and `figures` is True.
    """
    out.mkdir(parents=True, exist_ok=True)
    from jfacemap.hmm.params_file import params_arrays

    s = result.settings
    paths = {"params": out / "params.npz", "states": out / "states.npy", "analysis_npz": out / "analysis.npz",
             "analysis_json": out / "analysis.json"}
    write_npz(paths["params"], **params_arrays(result.params, result.transform, zscored=s["zscore"],
                                               sigma2_learned=s["learn_sigma2"], fps=s["fps"],
                                               downsample=s["downsample"]))
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
    write_npz(paths["analysis_npz"], **arrays)
    write_text_atomic(paths["analysis_json"], json.dumps(jsonable(analysis), indent=2) + "\n")
    from jfacemap.figures import have_matplotlib

    if figures and have_matplotlib():
        from jfacemap.figures.hmm import plot_hmm_figures

        for figure in plot_hmm_figures(result, out):
            paths[figure.stem] = figure
    paths["summary"] = out / "summary.json"
    summary = result.summary() | {"inputs": inputs or {}}
    write_text_atomic(paths["summary"], json.dumps(jsonable(summary), indent=2) + "\n")
    return paths


def print_summary(summary: dict) -> None:
    learned = "learned" if summary["learn_sigma2"] else "fixed"
    typer.echo(f"states        {summary['n_states']} ({summary['states_used']} used), "
               f"{summary['n_timepoints']} timepoints at {summary['model_fps']:g} Hz")
    typer.echo(f"sigma2        {summary['sigma2']:.4g} ({learned}, {summary['sigma2_units']} units; "
               f"mean over features in data units {summary['sigma2_data_units_mean']:.4g})")
    typer.echo(f"log-lik/step  train {summary['train_loglik']:.3f}, test {summary['test_loglik']:.3f} nats "
               f"({summary['steps']} steps, best {summary['best_step']}); in data units train "
               f"{summary['train_loglik_data_units']:.3f}, test {summary['test_loglik_data_units']:.3f}")
    typer.echo(f"lifetimes     median {summary['lifetime_median_s']:.2f} s "
               f"(range {summary['lifetime_min_s']:.2f}-{summary['lifetime_max_s']:.2f} s)")
    typer.echo(f"sequences     mean length {summary['mean_sequence_length']:.2f} states, "
               f"shuffled runs {summary['mean_sequence_length_shuffled']:.2f}")
    if "control" in summary:
        c = summary["control"]
        typer.echo(f"shuffled      test {c['test_loglik']:.3f} nats, lifetime median {c['lifetime_median_s']:.2f} s")


def hmm(
    features: Annotated[Path, typer.Argument(help="Features: .npy/.npz (time x features), an encode output folder "
                                                  "(or its features.npz), or a _FacemapPose.h5 (keypoints).")],
    states: Annotated[int, typer.Option("--states", "-k", help="Number of hidden states.")] = 50,
    downsample: Annotated[int, typer.Option("--downsample", help="Block-mean downsampling factor (50 Hz -> 5 Hz).")] = 10,
    sigma2: Annotated[Optional[float], typer.Option(
        "--sigma2",
        help="Shared emission variance, in the units of the data the model sees: z-scored units (each feature "
             "divided by its training SD), or the features' own units squared with --no-zscore. Default: summed "
             "training variance / 256 (= features / 256 when z-scored). With --learn-sigma2: the starting value "
             "(default: mean variance per feature).")] = None,
    learn_sigma2: Annotated[bool, typer.Option(
        "--learn-sigma2",
        help="Learn the shared emission variance with the means (as log sigma2, same optimiser, same "
             "likelihood) instead of fixing it.")] = False,
    no_zscore: Annotated[bool, typer.Option(
        "--no-zscore",
        help="Fit the (downsampled) features as they are, not z-scored: means and --sigma2 in their units. "
             "--learning-rate is then in those units too: scale it with the features' SD.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the initial means and of the sampled sequence.")] = 0,
    steps: Annotated[int, typer.Option("--steps", help="Most gradient steps per fit, both phases (early stopping on test log-likelihood).")] = 2000,
    test_fraction: Annotated[float, typer.Option("--test-fraction", help="Held-out end of each of 10 segments.")] = 0.25,
    learning_rate: Annotated[float, typer.Option("--learning-rate", help="Adam learning rate of the state means.")] = 0.05,
    transition_learning_rate: Annotated[Optional[float], typer.Option(
        "--transition-learning-rate",
        help="Adam learning rate of the transitions and initial probabilities while the means are fitted "
             "(default: --learning-rate / 10); afterwards they are fitted alone at --learning-rate.")] = None,
    inits: Annotated[int, typer.Option("--inits", help="Fits from different seeds; the best training log-likelihood is kept.")] = 1,
    refine: Annotated[int, typer.Option("--refine", help="Rounds of re-seeding states left without data and refitting (0: one plain fit).")] = 3,
    control: Annotated[bool, typer.Option("--control", help="Also fit the data shuffled in time (the paper's control).")] = False,
    fps: Annotated[Optional[float], typer.Option("--fps", help="Frame rate of the features (default: from their times, else 50).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("hmm"),
) -> None:
    """Fit a Gaussian HMM by gradient ascent on the exact log-likelihood; write parameters,
    Viterbi states, analyses (lifetimes, sparsity, forward sequences) and figures."""
    for name, value in (("--states", states), ("--downsample", downsample), ("--steps", steps), ("--inits", inits)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if refine < 0:
        raise ValueError(f"--refine must be >= 0, got {refine}")
    if states < 2:
        raise ValueError(f"--states must be >= 2, got {states}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    if sigma2 is not None and not sigma2 > 0:
        raise ValueError(f"--sigma2 must be > 0, got {sigma2}")
    for name, rate in (("--learning-rate", learning_rate), ("--transition-learning-rate", transition_learning_rate)):
        if rate is not None and not rate > 0:
            raise ValueError(f"{name} must be > 0, got {rate}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: --out must be a folder")
    x, rate, kind = load_features(features, fps)
    from jfacemap.hmm.fit import check_features
    from jfacemap.hmm.pipeline import run_hmm

    n_fits = (inits + refine) * (2 if control else 1)  # at most; refits stop when nothing is left to re-seed
    try:
        check_features(x, 1)
        with progress_bar(n_fits * steps, f"fitting {states} states") as advance:
            done = [0]

            def on_step(fit_index: int, step: int, train_ll: float, test_ll) -> None:
                target = fit_index * steps + step + 1
                advance(target - done[0])
                done[0] = target

            result = run_hmm(x, rate, states, downsample_factor=downsample, sigma2=sigma2,
                             learn_sigma2=learn_sigma2, zscore=not no_zscore, seed=seed,
                             max_steps=steps, learning_rate=learning_rate,
                             transition_learning_rate=transition_learning_rate, test_fraction=test_fraction,
                             n_inits=inits, refine=refine, control=control, on_step=on_step)
            advance(n_fits * steps - done[0])
    except ValueError as error:
        raise ValueError(f"{features}: {error}") from None
    inputs = {"features": str(features), "kind": kind, "n_frames": int(x.shape[0])}
    paths = write_hmm_outputs(out, result, inputs)
    print_summary(result.summary())
    typer.echo(f"outputs       {out}/ ({', '.join(p.name for p in paths.values())})")
