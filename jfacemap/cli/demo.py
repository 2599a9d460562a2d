"""`jfacemap demo`: every stage that exists, run on a synthetic session, with a report.

Each stage is a function `(report, context) -> None` that adds a section and
its figures; later stages append themselves to `STAGES`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from jfacemap import DEFAULT_FPS
from jfacemap.cli.progress import progress_bar
from jfacemap.cli.report import Report
from jfacemap.figures import have_matplotlib
from jfacemap.io.keypoints import read_facemap_pose
from jfacemap.io.video import VideoError, iter_chunks, read_frames, video_info
from jfacemap.synth.contact_sheet import save_contact_sheet
from jfacemap.synth.export import SessionFiles, save_synthetic_session
from jfacemap.synth.session import RENDER_CHUNK, SyntheticSession, check_session_args, make_session


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
    save_contact_sheet(sheet, read_frames(ctx.files.video, picks), keypoints[picks], bodyparts,
                       frame_indices=picks, fps=ctx.fps)
    report.figure(sheet)
    if have_matplotlib():
        from jfacemap.figures.session import plot_keypoint_traces, plot_latents

        with np.load(ctx.files.latents) as saved:
            latents = {name: saved[name] for name in saved.files if name != "meta"}
        report.figure(plot_latents(latents, ctx.fps, ctx.out / "behavior_latents.png"))
        report.figure(plot_keypoint_traces(keypoints, bodyparts, ctx.fps, ctx.out / "keypoint_traces.png"))
    else:
        lines.append("(plots skipped: pip install 'jfacemap[plot]' for matplotlib figures)")
    report.section("Synthetic session", lines, {"visible_fraction": dict(zip(bodyparts, visible.tolist()))},
                   key="session")


def stage_video_io(report: Report, ctx: DemoContext) -> None:
    """Decode the video back: frame count, decode speed, and loss against the rendered frames."""
    meta = video_info(ctx.files.video)
    session = ctx.session
    start = time.perf_counter()
    decoded = sum(len(chunk) for chunk in iter_chunks(ctx.files.video, chunk_size=RENDER_CHUNK))
    decode_seconds = time.perf_counter() - start
    abs_error = 0.0
    for chunk, (rendered, _) in zip(iter_chunks(ctx.files.video, chunk_size=RENDER_CHUNK), session.iter_chunks(RENDER_CHUNK)):
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
    report.section("Video round trip", lines, numbers, key="video")


def report_tracking(report: Report, ctx: DemoContext, tracked: np.ndarray, bodyparts, meta: dict,
                    seconds: float) -> None:
    """Score the tracked keypoints (before outlier filling) against the session's ground truth;
    meta: the tracker's model.json."""
    from jfacemap import DEFAULT_TRACKER

    truth, truth_names = read_facemap_pose(ctx.files.keypoints)
    columns = [list(bodyparts).index(name) for name in truth_names]
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
    report.section("Tracking", lines, numbers, key="tracking")


def report_encode(report: Report, ctx: DemoContext, sim, tracked, truth, seconds: float) -> None:
    """Both encoders from tracked keypoints, and from the ground truth: what tracking error costs."""
    from jfacemap.synth.neural import ground_truth_ve

    test = tracked.split.test_idx
    gt = ground_truth_ve(sim, test)
    best_normalized = float(gt["best_ve"].mean() / gt["explainable_ve"].mean())
    keys = ("explainable_ve", "ve_linear", "ve_deep", "normalized_ve_linear", "normalized_ve_deep")
    numbers = {"behavior_source": "tracked", **{k: tracked.summary[k] for k in keys},
               "ground_truth_keypoints": {k: truth.summary[k] for k in keys if k != "explainable_ve"},
               "true_explainable_ve": float(gt["explainable_ve"].mean()), "best_ve": float(gt["best_ve"].mean()),
               "best_normalized_ve": best_normalized, "n_neurons": sim.n_neurons, "neural_fps": DEMO_NEURAL_FPS,
               "n_test_frames": int(len(test)), "deep_schedule": tracked.summary["deep_recipe"],
               "seconds": seconds}
    t, g = tracked.summary, truth.summary
    pct = lambda v: f"{100 * v:5.1f}%"  # noqa: E731
    lines = [
        f"{sim.n_neurons} simulated neurons at {DEMO_NEURAL_FPS:g} Hz over {sim.neural_times[-1] - sim.neural_times[0]:.0f} s, "
        "driven linearly by this session's own 100-ms-smoothed keypoints plus shared latents and noise",
        "(5 min is too short to learn non-linear tuning: `python -m bench.bench_encode` shows it on 1 h)",
        f"test frames: {len(test)} ({len(tracked.split.test)} segments, each after a 3 s gap); the deep encoder "
        f"stopped at epoch {t['deep_recipe'].get('best_epoch', '?')} of {t['deep_recipe']['epochs']} "
        "(best validation loss)",
        f"explainable variance: peer prediction {pct(t['explainable_ve'])} (simulator's truth "
        f"{pct(numbers['true_explainable_ve'])})",
        f"{'variance explained (test)':34s}{'tracked keypoints':>18s}{'true keypoints':>16s}",
        f"{'  linear (RRR)':34s}{pct(t['ve_linear']):>18s}{pct(g['ve_linear']):>16s}",
        f"{'  deep':34s}{pct(t['ve_deep']):>18s}{pct(g['ve_deep']):>16s}",
        f"{'  best achievable':34s}{pct(numbers['best_ve']):>18s}{pct(numbers['best_ve']):>16s}",
        f"outputs in {ctx.out / 'encode'} (tracked) and {ctx.out / 'encode_ground_truth'} ({seconds:.0f} s)",
    ]
    if have_matplotlib():
        from jfacemap.encode.neural_pcs import predicted_activity
        from jfacemap.series import zscore
        from jfacemap.figures.encode import plot_example_neurons, plot_variance_explained

        report.figure(plot_variance_explained(tracked.ve, tracked.explainable_ve, ctx.out / "encode_variance.png",
                                              best=gt["best_ve"]))
        neurons = np.argsort(-np.nan_to_num(tracked.explainable_ve))[:5]
        segment = tracked.split.test[len(tracked.split.test) // 2]
        z = zscore(sim.spks[neurons], axis=1)[0]
        preds = {m: predicted_activity(p[segment], None if tracked.U is None else tracked.U[neurons])
                 for m, p in tracked.predictions.items()}
        report.figure(plot_example_neurons(z[:, segment], preds, sim.neural_times[segment],
                                           ctx.out / "encode_neurons.png", [f"neuron {i}" for i in neurons]))
    report.section("Encode (neural prediction)", lines, numbers, key="encode")


DEMO_STATES = 20
DEMO_MAX_STEPS = 300  # early stopping on the test blocks usually ends the fit well before
DEMO_REFINE = 3       # rounds of re-seeding unused states (jfacemap.hmm.refine)
DEMO_NEURONS = 2000
DEMO_NEURAL_FPS = 10.0  # a fast two-photon rate: a few minutes of session still give thousands of neural frames
# Neurons linear in the smoothed keypoints, most of their variance explainable (mean 2/3): measured on the
# 5-min demo session, non-linear tuning at cortex-like noise (the benchmark's) leaves both encoders at ~1 %
# of variance, far below the 13 % achievable, so tracked-vs-true would compare noise.
DEMO_EXPLAINABLE_BETA = (6.0, 3.0)
# Shortest session the chain runs on: 10 segments each of >= 12 s (75 % train, a 3 s gap, test), the
# simulator's 7 s of behaviour around the neural frames, and a margin.
DEMO_MIN_CHAIN_FRAMES = 7500


def report_hmm(report: Report, out: Path, result, source: str) -> None:
    """The HMM fitted to the deep features (and its time-shuffled control): lifetimes, likelihoods, sequences."""
    from jfacemap.io.hmm_outputs import write_hmm_outputs

    title = "HMM (behavioural states)"
    paths = write_hmm_outputs(out / "hmm", result, {"features": source, "kind": "deep features"})
    s, c = result.summary(), result.summary()["control"]
    numbers = {k: s[k] for k in ("n_states", "states_used", "train_loglik", "test_loglik", "sigma2", "steps",
                                 "lifetime_median_s", "lifetime_min_s", "lifetime_max_s", "run_median_s",
                                 "sparsity_top5", "mean_sequence_length", "mean_sequence_length_shuffled",
                                 "seconds")}
    numbers |= {"control_test_loglik": c["test_loglik"], "control_lifetime_median_s": c["lifetime_median_s"],
                "control_sparsity_top5": c["sparsity_top5"], "features": source}
    near = s["near_weighted"]
    lines = [
        f"{s['n_states']} states on {s['n_features']} deep features ({source}) -> "
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
        f"outputs in {out / 'hmm'} ({s['seconds']:.0f} s)",
    ]
    if have_matplotlib():
        from jfacemap.figures.hmm import plot_hmm_figures

        for figure in plot_hmm_figures(result, out, prefix="hmm_"):
            report.figure(figure)
    report.section(title, lines, numbers | {"outputs": sorted(p.name for p in paths.values())}, key="hmm")


def _one_bar_at_a_time(stack: contextlib.ExitStack):
    """bar(total, label) -> advance(n) that opens its progress bar on first use, closing the one before:
    the chain's stages report progress one after the other through callbacks."""
    current = {"stack": None}

    def bar(total: int, label: str):
        state = {}

        def advance(n: int) -> None:
            if "advance" not in state:
                if current["stack"] is not None:
                    current["stack"].close()
                current["stack"] = stack.enter_context(contextlib.ExitStack())
                state["advance"] = current["stack"].enter_context(progress_bar(total, label))
            state["advance"](n)

        return advance

    return bar


def _hmm_progress(advance):
    """on_step callback of `run_hmm` (fit index, step, ...) -> steps on one bar over all fits."""
    done = [0]

    def on_step(fit_index, step, train_ll, test_ll):
        target = fit_index * DEMO_MAX_STEPS + step + 1
        advance(max(target - done[0], 0))
        done[0] = max(done[0], target)

    return on_step


def stage_chain(report: Report, ctx: DemoContext) -> None:
    """The paper's chain on this session (`jfacemap.chain.run_chain`): track the video, simulate neurons
    driven by the session's behaviour, encode them from the tracked keypoints (and, for comparison, from
    the ground truth), fit the HMM to the tracked-keypoint encoder's deep features."""
    from jfacemap import DEFAULT_TRACKER
    from jfacemap.chain import run_chain, track_keypoints
    from jfacemap.encode.outputs import write_encode_outputs
    from jfacemap.encode.pipeline import deep_recipe, encode_recording
    from jfacemap.io.behavior import keypoint_coordinates
    from jfacemap.synth.neural import simulate_neural
    from jfacemap.track.model_store import list_trackers, load_tracker

    if DEFAULT_TRACKER not in list_trackers():
        report.section("Tracking", [f"skipped: no shipped tracker named {DEFAULT_TRACKER!r} in weights/"])
        return
    model, bodyparts, meta = load_tracker(DEFAULT_TRACKER)  # once, for the chain and the report
    if ctx.n_frames < DEMO_MIN_CHAIN_FRAMES:  # tracking only: too short to split into train and test segments
        start = time.perf_counter()
        with progress_bar(ctx.n_frames, f"tracking with {DEFAULT_TRACKER!r}") as advance:
            tracked, bodyparts, _ = track_keypoints(ctx.files.video, (model, bodyparts),
                                                    out_dir=ctx.out / "keypoints", on_progress=advance)
        report_tracking(report, ctx, tracked, bodyparts, meta, time.perf_counter() - start)
        why = (f"skipped: encoding needs at least {DEMO_MIN_CHAIN_FRAMES} frames "
               f"({DEMO_MIN_CHAIN_FRAMES / ctx.fps:.0f} s) for its 10 train/test segments; run with --frames "
               f"{DEMO_MIN_CHAIN_FRAMES} or more")
        report.section("Encode (neural prediction)", [why])
        report.section("HMM (behavioural states)", ["skipped: no deep features (the encode stage makes them)"])
        return

    sim = simulate_neural(DEMO_NEURONS, None, seed=ctx.seed, neural_fps=DEMO_NEURAL_FPS, session=ctx.session,
                          linear=True, explainable_beta=DEMO_EXPLAINABLE_BETA)
    epochs = deep_recipe(sim.n_neurons, sim.neural_times).epochs
    hmm_options = {"max_steps": DEMO_MAX_STEPS, "refine": DEMO_REFINE, "control": True}
    timings = {"start": time.perf_counter()}
    with contextlib.ExitStack() as bars:
        bar = _one_bar_at_a_time(bars)
        epoch_bar = bar(epochs, "training the deep encoder (tracked keypoints)")

        def on_epoch(epoch, row):
            timings.setdefault("tracked", time.perf_counter())
            epoch_bar(1)

        chain = run_chain(ctx.files.video, sim.spks, sim.neural_times, video_times=sim.behavior_times,
                          xpos=sim.xpos, ypos=sim.ypos, tracker=(model, bodyparts), n_states=DEMO_STATES,
                          seed=ctx.seed, hmm_options=hmm_options, out=ctx.out,
                          on_track_progress=bar(ctx.n_frames, f"tracking with {DEFAULT_TRACKER!r}"),
                          on_epoch=on_epoch, on_hmm_step=_hmm_progress(
                              bar(2 * (1 + DEMO_REFINE) * DEMO_MAX_STEPS, f"fitting {DEMO_STATES} HMM states")))
    timings["done"] = time.perf_counter()
    truth_x, _ = keypoint_coordinates(sim.keypoints, sim.bodyparts, "ground truth")
    with progress_bar(epochs, "training the deep encoder (true keypoints)") as advance:
        truth = encode_recording(sim.spks, sim.neural_times, truth_x, sim.behavior_times, xpos=sim.xpos,
                                 ypos=sim.ypos, seed=ctx.seed, on_epoch=lambda epoch, row: advance(1))
    write_encode_outputs(ctx.out / "encode_ground_truth", truth, truth_x, sim.behavior_times, sim.neural_times,
                         sim.xpos, sim.ypos, {"neural": "jfacemap.synth.simulate_neural",
                                              "behavior": "ground-truth keypoints"})
    track_seconds = timings.get("tracked", timings["done"]) - timings["start"]
    report_tracking(report, ctx, chain.tracked, chain.bodyparts, meta, track_seconds)
    report_encode(report, ctx, sim, chain.encode, truth, chain.encode.summary["seconds"])
    report_hmm(report, ctx.out, chain.hmm, "encode/features.npz (tracked keypoints)")


DEMO_ROI_FRAMES = 1500  # 30 s at 50 Hz: a few blinks, the pupil's slow changes, the treadmill's speed


def stage_roi(report: Report, ctx: DemoContext) -> None:
    """Facemap's ROI measures (`jfacemap roi`) on a short session of the same mouse with a known pupil,
    blinks and a treadmill (`synth --roi`), scored against that truth."""
    from jfacemap.io.atomic import write_npz_atomic
    from jfacemap.roi.pipeline import RoiRequest, roi_path, roi_video
    from jfacemap.roi.scores import roi_accuracy

    n = min(DEMO_ROI_FRAMES, ctx.n_frames)
    with progress_bar(n, "rendering the ROI session (pupil, blinks, treadmill)") as advance:
        files = save_synthetic_session(ctx.out / "roi" / "roi_session.mp4", n_frames=n, seed=ctx.seed, fps=ctx.fps,
                                       roi=True, on_progress=advance)
    with np.load(files.latents) as z:
        truth = {k: z[k] for k in z.files if k.startswith("roi_")}
    eye, treadmill = (tuple(int(v) for v in truth[k]) for k in ("roi_eye_box", "roi_treadmill_box"))
    start = time.perf_counter()
    with progress_bar(n, "measuring pupil, blink, running") as advance:
        arrays = roi_video(files.video, RoiRequest(pupil=eye, blink=eye, running=treadmill), on_progress=advance)
    seconds = time.perf_counter() - start
    write_npz_atomic(roi_path(files.video), video=str(files.video), **arrays)
    acc = roi_accuracy(arrays, truth)
    lines = [
        f"session     roi/roi_session.mp4  ({n} frames, seed {ctx.seed}); outputs roi/roi_session_roi.npz "
        f"({n / seconds:.0f} frames/s)",
        f"ROIs        pupil and blink {eye}, running {treadmill} (x0, y0, x1, y1 px)",
        f"pupil       area r = {acc['pupil_area_r']:.3f} with the true area; centre {acc['pupil_center_err_median_px']:.2f} px "
        "median error",
        f"blinks      {acc['blink_events']} found, {acc['blink_true']} true"
        + (f"; precision {acc['blink_precision']:.2f}, recall {acc['blink_recall']:.2f}"
           if acc["blink_events"] and acc["blink_true"] else ""),
        f"running     {acc['running_err_median_dx']:.3f} / {acc['running_err_median_dy']:.3f} px/frame median error "
        "(dx / dy)",
    ]
    report.section("ROI measures (pupil, blink, running)", lines, acc | {"frames": n, "seconds": seconds}, key="roi")
    if have_matplotlib():
        from jfacemap.figures.roi import plot_roi_traces

        keypoints, bodyparts = read_facemap_pose(files.keypoints)
        report.figure(plot_roi_traces(arrays, ctx.fps, ctx.out / "roi_traces.png", keypoints=keypoints,
                                      bodyparts=list(bodyparts), truth={"pupil_area": truth["roi_pupil_area"],
                                                                        "running": truth["roi_running"]}))


STAGES = [stage_session, stage_video_io, stage_chain, stage_roi]
DEMO_SEED = 1000  # the shipped tracker trained on seeds 0-39 and tested on 100000+ and 200000+
DEMO_FRAMES = 15000  # 5 min at 50 Hz: ~430 test frames of neurons at 10 Hz after the 3 s gaps


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the session, figures and report.")] = Path("jfacemap-demo"),
    frames: Annotated[int, typer.Option(help=f"Length of the synthetic session in frames (at 50 Hz); below "
                                             f"{DEMO_MIN_CHAIN_FRAMES} only tracking runs.")] = DEMO_FRAMES,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic mouse and its behaviour (the default was never used to train the shipped tracker).")] = DEMO_SEED,
) -> None:
    """Run every stage on a synthetic session and write a report (report.txt, summary.json, PNG figures)."""
    fps = DEFAULT_FPS
    check_session_args(frames, seed, "lab1", 256, fps)  # before any work
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
