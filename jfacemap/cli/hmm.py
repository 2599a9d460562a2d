"""`jfacemap hmm`: discrete behavioural states from deep features or keypoints (a Gaussian HMM)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

import jfacemap.hmm as hmm_defaults  # the package's constants only: its modules (JAX) load in the command
from jfacemap import DEFAULT_FPS
from jfacemap.cli.progress import progress_bar
from jfacemap.errors import JfacemapError
from jfacemap.figures import have_matplotlib
from jfacemap.io.hmm_outputs import load_features, write_hmm_outputs
from jfacemap.series import N_SEGMENTS


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
    features: Annotated[Path, typer.Argument(metavar="FEATURES", help="Features: .npy/.npz (time x features), an encode output folder "
                                                  "(or its features.npz), a _FacemapPose.h5 (keypoints), a Facemap _proc.npy (motion PCs) or a _roi.npz (ROI traces).")],
    states: Annotated[int, typer.Option("--states", "-k", help="Number of hidden states.")] = hmm_defaults.N_STATES,
    downsample: Annotated[int, typer.Option("--downsample", help="Block-mean downsampling factor (50 Hz -> 5 Hz).")] = hmm_defaults.DOWNSAMPLE,
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
    steps: Annotated[int, typer.Option("--steps", help="Most gradient steps per fit, both phases (early stopping on test log-likelihood).")] = hmm_defaults.MAX_STEPS,
    test_fraction: Annotated[float, typer.Option("--test-fraction", help=f"Held-out end of each of {N_SEGMENTS} segments.")] = hmm_defaults.TEST_FRACTION,
    learning_rate: Annotated[float, typer.Option("--learning-rate", help="Adam learning rate of the state means.")] = hmm_defaults.LEARNING_RATE,
    transition_learning_rate: Annotated[Optional[float], typer.Option(
        "--transition-learning-rate",
        help="Adam learning rate of the transitions and initial probabilities while the means are fitted "
             "(default: --learning-rate / 10); afterwards they are fitted alone at --learning-rate.")] = None,
    inits: Annotated[int, typer.Option("--inits", help="Fits from different seeds; the best training log-likelihood is kept.")] = 1,
    refine: Annotated[int, typer.Option("--refine", help="Rounds of re-seeding states left without data and refitting (0: one plain fit).")] = hmm_defaults.REFINE,
    control: Annotated[bool, typer.Option("--control", help="Also fit the data shuffled in time (the paper's control).")] = False,
    fps: Annotated[Optional[float], typer.Option("--fps", help=f"Frame rate of the features (default: from their times, else {DEFAULT_FPS:g}).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="FOLDER", help="Output folder.")] = Path("hmm"),
) -> None:
    """Fit a Gaussian HMM of behavioural states to FEATURES by gradient ascent on the exact log-likelihood.

    Writes the parameters, Viterbi states, analyses (lifetimes, sparsity, forward sequences) and figures.
    """
    for name, value in (("--states", states), ("--downsample", downsample), ("--steps", steps), ("--inits", inits)):
        if value < 1:
            raise JfacemapError(f"{name} must be >= 1, got {value}")
    if refine < 0:
        raise JfacemapError(f"--refine must be >= 0, got {refine}")
    if states < 2:
        raise JfacemapError(f"--states must be >= 2, got {states}")
    if not 0 <= test_fraction < 1:
        raise JfacemapError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    if sigma2 is not None and not sigma2 > 0:
        raise JfacemapError(f"--sigma2 must be > 0, got {sigma2}")
    for name, rate in (("--learning-rate", learning_rate), ("--transition-learning-rate", transition_learning_rate)):
        if rate is not None and not rate > 0:
            raise JfacemapError(f"{name} must be > 0, got {rate}")
    if fps is not None and not fps > 0:
        raise JfacemapError(f"--fps must be > 0, got {fps}")
    if out.exists() and not out.is_dir():
        raise JfacemapError(f"{out}: --out must be a folder")
    x, rate, kind = load_features(features, fps)
    from jfacemap.hmm.fit import check_features
    from jfacemap.hmm.pipeline import run_hmm

    n_fits = (inits + refine) * (2 if control else 1)  # at most; refits stop when nothing is left to re-seed
    try:
        check_features(x, 1)
        with progress_bar(n_fits * steps, f"fitting {states} states", unit="steps") as advance:
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
    except JfacemapError as error:
        raise JfacemapError(f"{features}: {error}") from error
    inputs = {"features": str(features), "kind": kind, "n_frames": int(x.shape[0])}
    figures = None
    if have_matplotlib():
        from jfacemap.figures.hmm import plot_hmm_figures

        def figures():
            return plot_hmm_figures(result, out)
    paths = write_hmm_outputs(out, result, inputs, figures=figures)
    print_summary(result.summary())
    typer.echo(f"outputs       {out}/ ({', '.join(p.name for p in paths.values())})")
