"""`jfacemap demo`: every stage that exists, run on a synthetic session, with a report.

Each stage is a function `(report, context) -> None` that adds a section and
its figures; later stages append themselves to `STAGES`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from jfacemap.cli.progress import progress_bar
from jfacemap.cli.report import Report
from jfacemap.errors import JfacemapError
from jfacemap.figures import have_matplotlib
from jfacemap.io.keypoints import read_facemap_pose
from jfacemap.io.video import VideoError, iter_chunks, read_frames, video_info
from jfacemap.synth.contact_sheet import save_contact_sheet
from jfacemap.synth.export import SessionFiles, save_synthetic_session
from jfacemap.synth.session import SyntheticSession, check_session_args, make_session


@dataclass
class DemoContext:
    """What the stages share: the session on disk and how it was made."""

    out: Path
    files: SessionFiles
    session: SyntheticSession
    n_frames: int
    seed: int
    fps: float


def stage_session(report: Report, ctx: DemoContext) -> None:
    """Ground truth as written: visibility per bodypart, a contact sheet of decoded frames."""
    keypoints, bodyparts = read_facemap_pose(ctx.files.keypoints)
    visible = np.isfinite(keypoints[..., 0]).mean(axis=0)
    lines = [
        f"video       {ctx.files.video.name}  ({ctx.n_frames} frames at {ctx.fps:g} Hz, seed {ctx.seed})",
        f"keypoints   {ctx.files.keypoints.name}  ({len(bodyparts)} bodyparts)",
        f"latents     {ctx.files.latents.name}",
        "visible fraction per bodypart:",
        *[f"  {name:<14} {frac:6.1%}" for name, frac in zip(bodyparts, visible)],
    ]
    picks = np.linspace(0, ctx.n_frames - 1, 8).round().astype(int)
    sheet = ctx.out / "contact_sheet.png"
    save_contact_sheet(sheet, read_frames(ctx.files.video, picks), keypoints[picks], bodyparts)
    report.figure(sheet)
    if have_matplotlib():
        from jfacemap.figures.session import plot_keypoint_traces, plot_latents

        with np.load(ctx.files.latents) as saved:
            latents = {name: saved[name] for name in saved.files if name != "meta"}
        report.figure(plot_latents(latents, ctx.fps, ctx.out / "behavior_latents.png"))
        report.figure(plot_keypoint_traces(keypoints, bodyparts, ctx.fps, ctx.out / "keypoint_traces.png"))
    else:
        lines.append("(plots skipped: pip install 'jfacemap[plot]' for matplotlib figures)")
    report.section("Synthetic session", lines, {"visible_fraction": dict(zip(bodyparts, visible.tolist()))})


def stage_video_io(report: Report, ctx: DemoContext) -> None:
    """Decode the video back: frame count, decode speed, and loss against the rendered frames."""
    meta = video_info(ctx.files.video)
    session = ctx.session
    start = time.perf_counter()
    decoded = sum(len(chunk) for chunk in iter_chunks(ctx.files.video, chunk_size=250))
    decode_seconds = time.perf_counter() - start
    abs_error = 0.0
    for chunk, (rendered, _) in zip(iter_chunks(ctx.files.video, chunk_size=250), session.iter_chunks(250)):
        abs_error += np.abs(chunk.astype(np.float32) - rendered.astype(np.float32)).sum()
    mae = abs_error / max(decoded * meta.height * meta.width, 1)
    numbers = {
        "n_frames_decoded": decoded,
        "n_frames_reported": meta.n_frames,
        "decode_fps": decoded / max(decode_seconds, 1e-9),
        "mean_abs_error_vs_render": float(mae),
    }
    lines = [
        f"frames decoded {decoded} (video_info says {meta.n_frames}), {meta.width}x{meta.height} at {meta.fps:g} fps",
        f"decode speed   {numbers['decode_fps']:.0f} frames/s",
        f"codec loss     {mae:.2f} grey levels mean absolute error against the rendered frames",
    ]
    if decoded != ctx.n_frames:
        raise VideoError(f"{ctx.files.video}: wrote {ctx.n_frames} frames but decoded {decoded}")
    report.section("Video round trip", lines, numbers)


def stage_tracking(report: Report, ctx: DemoContext) -> None:
    """Track the session with the shipped tracker and score it against the ground truth."""
    from jfacemap import DEFAULT_TRACKER
    from jfacemap.track.model_store import list_trackers, load_tracker
    from jfacemap.track.predict import track_video

    if DEFAULT_TRACKER not in list_trackers():
        report.section("Tracking", [f"skipped: no shipped tracker named {DEFAULT_TRACKER!r} in weights/"])
        return
    model, bodyparts, meta = load_tracker(DEFAULT_TRACKER)
    truth, truth_names = read_facemap_pose(ctx.files.keypoints)
    start = time.perf_counter()
    with progress_bar(ctx.n_frames, f"tracking with {DEFAULT_TRACKER!r}") as advance:
        tracked = track_video(ctx.files.video, model, bodyparts, out_path=ctx.out / "tracked" / "session_FacemapPose.h5",
                              on_progress=advance)
    seconds = time.perf_counter() - start
    columns = [bodyparts.index(name) for name in truth_names]
    errors = np.linalg.norm(tracked[:, columns, :2] - truth[..., :2], axis=-1)  # NaN where not visible
    per_keypoint = {name: float(np.nanmean(errors[:, k])) for k, name in enumerate(truth_names)
                    if np.isfinite(errors[:, k]).any()}
    numbers = {
        "model": DEFAULT_TRACKER,
        "mean_px": float(np.nanmean(errors)),
        "median_px": float(np.nanmedian(errors)),
        "p90_px": float(np.nanpercentile(errors, 90)),
        "per_keypoint_px": per_keypoint,
        "frames_per_s": ctx.n_frames / seconds,
    }
    lines = [
        f"model {DEFAULT_TRACKER!r}: {meta.get('description', 'shipped tracker')}",
        f"tracked {ctx.n_frames} frames at {numbers['frames_per_s']:.1f} frames/s (decode + network, this machine)",
        f"error vs ground truth: mean {numbers['mean_px']:.2f} px, median {numbers['median_px']:.2f} px, "
        f"90th percentile {numbers['p90_px']:.2f} px (256 x 256 frames)",
        *[f"  {name:<14} {px:6.2f} px" for name, px in per_keypoint.items()],
    ]
    if have_matplotlib():
        from jfacemap.figures.session import plot_error_percentiles, plot_keypoint_traces

        report.figure(plot_keypoint_traces(tracked[:, columns], truth_names, ctx.fps,
                                           ctx.out / "tracked_traces.png", reference=truth))
        report.figure(plot_error_percentiles(errors, truth_names, ctx.out / "tracking_error.png"))
    report.section("Tracking", lines, numbers)


ENCODE_NEURONS = 2000
ENCODE_MINUTES = 20.0


def stage_encode(report: Report, ctx: DemoContext) -> None:
    """Simulated neurons driven by this mouse's behaviour, predicted by the linear and the deep model."""
    from jfacemap.encode.outputs import write_encode_outputs
    from jfacemap.encode.pipeline import deep_recipe, encode_recording
    from jfacemap.io.behavior import keypoint_coordinates
    from jfacemap.synth.neural import ground_truth_ve, simulate_neural

    start = time.perf_counter()
    sim = simulate_neural(n_neurons=ENCODE_NEURONS, duration_s=ENCODE_MINUTES * 60, seed=ctx.seed)
    x, _ = keypoint_coordinates(sim.keypoints, sim.bodyparts)
    epochs = deep_recipe(sim.n_neurons, sim.neural_times).epochs
    with progress_bar(epochs, "training the deep encoder") as advance:
        result = encode_recording(sim.spks, sim.neural_times, x, sim.behavior_times, xpos=sim.xpos, ypos=sim.ypos,
                                  on_epoch=lambda epoch, row: advance(1))
    write_encode_outputs(ctx.out / "encode", result, x, sim.behavior_times, sim.neural_times, sim.xpos, sim.ypos,
                         {"neural": "jfacemap.synth.simulate_neural", "behavior": "ground-truth keypoints"})
    test = result.split.test_idx
    truth = ground_truth_ve(sim, test)
    s = result.summary
    best_normalized = float(truth["best_ve"].mean() / truth["explainable_ve"].mean())
    numbers = {k: s[k] for k in ("explainable_ve", "ve_linear", "ve_deep", "normalized_ve_linear", "normalized_ve_deep")}
    numbers |= {"true_explainable_ve": float(truth["explainable_ve"].mean()), "best_ve": float(truth["best_ve"].mean()),
                "best_normalized_ve": best_normalized, "seconds": time.perf_counter() - start}
    lines = [
        f"{ENCODE_NEURONS} simulated neurons at 3 Hz for {ENCODE_MINUTES:g} min, driven by non-linear, filtered "
        "functions of this mouse's keypoints (ground truth, 50 Hz) plus shared latents and noise",
        f"explainable variance: peer prediction {100 * s['explainable_ve']:.1f}% "
        f"(simulator's truth {100 * numbers['true_explainable_ve']:.1f}%)",
        f"variance explained (test): linear {100 * s['ve_linear']:.1f}%, deep {100 * s['ve_deep']:.1f}% "
        f"(best achievable {100 * numbers['best_ve']:.1f}%)",
        f"normalised: linear {100 * s['normalized_ve_linear']:.0f}%, deep {100 * s['normalized_ve_deep']:.0f}% "
        f"(best achievable {100 * best_normalized:.0f}%)",
        f"outputs in {ctx.out / 'encode'} ({numbers['seconds']:.0f} s)",
    ]
    if have_matplotlib():
        from jfacemap.encode.neural_pcs import predicted_activity
        from jfacemap.figures.encode import plot_example_neurons, plot_variance_explained

        report.figure(plot_variance_explained(result.ve, result.explainable_ve, ctx.out / "encode_variance.png",
                                              best=truth["best_ve"]))
        neurons = np.argsort(-np.nan_to_num(result.explainable_ve))[:5]
        segment = result.split.test[len(result.split.test) // 2]
        z = (sim.spks[neurons] - sim.spks[neurons].mean(1, keepdims=True)) / sim.spks[neurons].std(1, keepdims=True)
        preds = {m: predicted_activity(p[segment], None if result.U is None else result.U[neurons])
                 for m, p in result.predictions.items()}
        report.figure(plot_example_neurons(z[:, segment], preds, sim.neural_times[segment],
                                           ctx.out / "encode_neurons.png", [f"neuron {i}" for i in neurons]))
    report.section("Encode (neural prediction)", lines, numbers)


DEMO_STATES = 20
DEMO_MAX_STEPS = 300  # early stopping on the test blocks usually ends the fit well before
DEMO_REFINE = 3       # rounds of re-seeding unused states (jfacemap.hmm.refine)


def stage_hmm(report, ctx) -> None:
    """The HMM stage: fit DEMO_STATES states to the deep encoder's 256 features (10x downsampled) and a
    temporally shuffled control; report lifetimes, test log-likelihood and forward sequences."""
    from jfacemap.hmm.pipeline import run_hmm
    from jfacemap.io.hmm_outputs import load_features, write_hmm_outputs

    title = "HMM (behavioural states)"
    source = ctx.out / "encode" / "features.npz"
    if not source.is_file():
        report.section(title, [f"skipped: no deep features at {source} (the encode stage writes them)"])
        return
    x, fps, _ = load_features(source)
    total = 2 * (1 + DEMO_REFINE) * DEMO_MAX_STEPS
    with progress_bar(total, f"fitting {DEMO_STATES} HMM states") as advance:
        done = [0]

        def on_step(fit_index, step, train_ll, test_ll):
            target = fit_index * DEMO_MAX_STEPS + step + 1
            advance(target - done[0])
            done[0] = target

        result = run_hmm(x, fps, DEMO_STATES, max_steps=DEMO_MAX_STEPS, refine=DEMO_REFINE, seed=ctx.seed,
                         control=True, on_step=on_step)
        advance(total - done[0])
    paths = write_hmm_outputs(ctx.out / "hmm", result, {"features": str(source), "kind": "deep features"})
    s, c = result.summary(), result.summary()["control"]
    numbers = {k: s[k] for k in ("n_states", "states_used", "train_loglik", "test_loglik", "sigma2", "steps",
                                 "lifetime_median_s", "lifetime_min_s", "lifetime_max_s", "run_median_s",
                                 "sparsity_top5", "mean_sequence_length", "mean_sequence_length_shuffled",
                                 "seconds")}
    numbers |= {"control_test_loglik": c["test_loglik"], "control_lifetime_median_s": c["lifetime_median_s"],
                "control_sparsity_top5": c["sparsity_top5"]}
    near = s["near_weighted"]
    lines = [
        f"{DEMO_STATES} states on {s['n_features']} deep features, {x.shape[0]} frames at {fps:g} Hz -> "
        f"{s['n_timepoints']} timepoints at {s['model_fps']:g} Hz; {s['split']}",
        f"test log-likelihood {s['test_loglik']:.2f} nats/timepoint vs {c['test_loglik']:.2f} for the same model "
        f"fitted to time-shuffled data ({s['steps']} and {c['steps']} steps)",
        f"state lifetimes: median {s['lifetime_median_s']:.2f} s (range {s['lifetime_min_s']:.2f}-"
        f"{s['lifetime_max_s']:.2f} s); shuffled control median {c['lifetime_median_s']:.2f} s",
        f"transition sparsity: top 5 next states hold {100 * s['sparsity_top5']:.0f}% "
        f"(shuffled control {100 * c['sparsity_top5']:.0f}%)",
        f"near transitions (weighted): forward {near['forward']:.2f}, reverse {near['reverse']:.2f}, "
        f"chance {near['chance']:.3f}",
        f"forward sequences: mean {s['mean_sequence_length']:.2f} states vs {s['mean_sequence_length_shuffled']:.2f} "
        f"for shuffled runs",
        f"outputs in {ctx.out / 'hmm'} ({s['seconds']:.0f} s)",
    ]
    if have_matplotlib():
        from jfacemap.figures.hmm import plot_hmm_figures

        for figure in plot_hmm_figures(result, ctx.out, prefix="hmm_"):
            report.figure(figure)
    report.section(title, lines, numbers | {"outputs": sorted(p.name for p in paths.values())})


STAGES = [stage_session, stage_video_io, stage_tracking, stage_encode, stage_hmm]
DEMO_SEED = 1000  # the shipped tracker trained on seeds 0-39 and tested on 100000+ and 200000+


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the session, figures and report.")] = Path("jfacemap-demo"),
    frames: Annotated[int, typer.Option(help="Length of the synthetic session in frames (at 50 Hz).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic mouse and its behaviour (the default was never used to train the shipped tracker).")] = DEMO_SEED,
) -> None:
    """Run every stage on a synthetic session and write a report (report.txt, summary.json, PNG figures)."""
    fps = 50.0
    try:  # before any work
        check_session_args(frames, seed, "lab1", 256, fps)
    except ValueError as err:  # TODO(issue 14): check_session_args should raise JfacemapError (synth/session.py)
        raise JfacemapError(str(err)) from err
    out.mkdir(parents=True, exist_ok=True)
    with progress_bar(frames, "rendering synthetic session") as advance:
        files = save_synthetic_session(out / "session.mp4", n_frames=frames, seed=seed, fps=fps, on_progress=advance)
    session = make_session(frames, seed=seed, fps=fps)  # the same one the files hold; renders lazily
    ctx = DemoContext(out=out, files=files, session=session, n_frames=frames, seed=seed, fps=fps)
    report = Report(out)
    for stage in STAGES:
        stage(report, ctx)
    path = report.write()
    typer.echo(report.text())
    typer.echo(f"report written to {path}")
