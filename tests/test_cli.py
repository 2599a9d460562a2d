"""The `jfacemap` command end to end, through a real subprocess where errors matter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jfacemap.io.keypoints import read_facemap_pose
from jfacemap.io.video import read_frames, video_info
from jfacemap.skeleton import FACEMAP_BODYPARTS
from jfacemap.synth.session import make_session


def run_cli(*args: str, cwd=None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jfacemap.cli.app", *args],
        capture_output=True, text=True, cwd=cwd, timeout=timeout,
    )


def test_help_lists_every_stage():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for command in ("demo", "synth", "info"):
        assert command in result.stdout


def test_synth_writes_video_ground_truth_and_latents(tmp_path):
    out = tmp_path / "mouse.mp4"
    result = run_cli("synth", str(out), "--frames", "40", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert video_info(out).n_frames == 40
    keypoints, bodyparts = read_facemap_pose(tmp_path / "mouse_FacemapPose.h5")
    assert list(bodyparts) == list(FACEMAP_BODYPARTS)
    assert keypoints.shape == (40, 15, 3)
    expected = make_session(40, seed=3).render(0, 40)[1]
    np.testing.assert_allclose(keypoints[..., :2], expected[..., :2], equal_nan=True, atol=1e-4)
    # likelihood is 1 where visible, and x/y are NaN exactly where it is not
    visible = np.isfinite(keypoints[..., 0])
    assert np.all(keypoints[..., 2][visible] == 1.0)
    assert np.array_equal(visible, np.isfinite(expected[..., 0]))
    latents = np.load(tmp_path / "mouse_latents.npz")
    meta = json.loads(str(latents["meta"]))
    assert meta["seed"] == 3 and meta["n_frames"] == 40
    # the decoded video is the rendered one up to codec loss
    frames = read_frames(out, [0, 20, 39])
    rendered = make_session(40, seed=3).render(0, 40)[0][[0, 20, 39]]
    assert np.abs(frames.astype(float) - rendered).mean() < 4.0


def test_synth_lab2_looks_different(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    assert run_cli("synth", str(a), "--frames", "5", "--seed", "1").returncode == 0
    assert run_cli("synth", str(b), "--frames", "5", "--seed", "1", "--style", "lab2").returncode == 0
    fa, fb = read_frames(a, [0]), read_frames(b, [0])
    assert np.abs(fa.astype(float) - fb).mean() > 10


@pytest.mark.parametrize(
    "args, needle",
    [
        (("synth", "{tmp}/x.mp4", "--style", "nope"), "unknown style"),
        (("synth", "{tmp}/x.txt"), "x.txt"),
        (("synth", "{tmp}/x.mp4", "--frames", "0"), "n_frames"),
        (("info", "{tmp}/missing.mp4"), "missing.mp4"),
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path, args, needle):
    result = run_cli(*[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("jfacemap: error:") and needle in lines[0]
    assert not (tmp_path / "x.mp4").exists()


def test_info_reports_frames(tmp_path):
    out = tmp_path / "s.mp4"
    assert run_cli("synth", str(out), "--frames", "12").returncode == 0
    result = run_cli("info", str(out))
    assert result.returncode == 0
    assert result.stdout.splitlines()[1].split()[:3] == ["12", "256", "256"]


def test_demo_writes_report_and_figures(tmp_path):
    out = tmp_path / "demo"
    result = run_cli("demo", "--out", str(out), "--frames", "60")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["video"]["n_frames_decoded"] == 60
    assert summary["video"]["mean_abs_error_vs_render"] < 4.0
    report = (out / "report.txt").read_text()
    assert report.startswith("jfacemap demo report")
    png = (out / "contact_sheet.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    for name in ("behavior_latents.png", "keypoint_traces.png", "tracked_traces.png", "tracking_error.png"):
        assert (out / name).stat().st_size > 10_000
    # the shipped tracker on a session it never saw (seed 1000) lands near the ground truth
    tracking = summary["tracking"]
    assert tracking["model"] == "base" and tracking["mean_px"] < 4.0, tracking
    # too short for the encoder's train/test segments: said, not failed
    assert "skipped: encoding needs at least" in report and "--frames" in report
    # the ROI measures on a session with a known pupil and treadmill
    roi = summary["roi"]
    assert roi["pupil_area_r"] > 0.95 and roi["pupil_center_err_median_px"] < 1.0, roi
    assert max(roi["running_err_median_dx"], roi["running_err_median_dy"]) < 0.1, roi
    assert (out / "roi" / "roi_session_roi.npz").is_file() and (out / "roi_traces.png").stat().st_size > 10_000


@pytest.mark.slow
def test_demo_runs_the_chain_on_tracked_keypoints(tmp_path):
    """The default demo: tracked keypoints -> encoders (vs ground truth) -> HMM on the deep features."""
    out = tmp_path / "demo"
    # the full 15,000-frame demo takes ~25 min on one core
    result = run_cli("demo", "--out", str(out), timeout=3600)
    assert result.returncode == 0, result.stderr
    assert_demo_ran_the_chain(out)


def assert_demo_ran_the_chain(out: Path) -> None:
    """What the default demo's outputs in `out` must show (also run by hand on a finished demo folder)."""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tracking"]["mean_px"] < 4.0
    encode = summary["encode"]
    assert encode["behavior_source"] == "tracked"
    truth = encode["ground_truth_keypoints"]
    # tracking error costs some, not most: tracked keypoints keep most of what the true ones predict
    # (measured: 0.79 of the deep and 0.83 of the linear encoder's variance explained)
    assert encode["ve_deep"] > 0.7 * truth["ve_deep"] > 0, encode
    assert encode["ve_linear"] > 0.7 * truth["ve_linear"] > 0, encode
    # the demo's neurons are linear in the keypoints: both encoders reach well over half the best achievable
    for model in ("ve_deep", "ve_linear"):
        assert 0.5 * encode["best_ve"] < encode[model] < encode["best_ve"], encode
    assert abs(encode["explainable_ve"] / encode["true_explainable_ve"] - 1) < 0.3, encode
    with np.load(out / "encode" / "features.npz") as features:
        assert features["features"].shape == (15000, 256)
    assert (out / "encode_ground_truth" / "summary.json").is_file()
    # HMM on those features: states last longer than in the time-shuffled control, which fits worse
    hmm = summary["hmm"]
    assert "tracked" in hmm["features"]
    assert hmm["test_loglik"] > hmm["control_test_loglik"], hmm
    assert hmm["lifetime_median_s"] > 2 * hmm["control_lifetime_median_s"], hmm
    params = np.load(out / "hmm" / "params.npz")
    np.testing.assert_allclose(params["transition_matrix"].sum(1), 1.0, rtol=1e-5)


def test_info_reports_every_bad_file_and_keeps_going(tmp_path):
    good = tmp_path / "good.mp4"
    assert run_cli("synth", str(good), "--frames", "7").returncode == 0
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    result = run_cli("info", str(bad), str(good), str(tmp_path / "gone.avi"))
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and "bad.mp4" in errors[0] and "gone.avi" in errors[1]
    assert result.stdout.splitlines()[1].split()[0] == "7"


@pytest.mark.parametrize(
    "option, value, needle", [("--fps", "0", "fps"), ("--seed", "-1", "seed"), ("--size", "8", "size")]
)
def test_synth_rejects_impossible_options_before_any_work(tmp_path, option, value, needle):
    result = run_cli("synth", str(tmp_path / "x.mp4"), "--frames", "3", option, value)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line, no progress bar
    assert needle in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_interrupted_synth_keeps_the_old_session_whole(tmp_path, monkeypatch):
    from jfacemap.io.video import VideoWriter
    from jfacemap.synth.export import save_synthetic_session

    video = tmp_path / "s.mp4"
    save_synthetic_session(video, n_frames=5, seed=1, size=64)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def boom(self, frames):
        raise KeyboardInterrupt

    monkeypatch.setattr(VideoWriter, "write", boom)
    with pytest.raises(KeyboardInterrupt):
        save_synthetic_session(video, n_frames=5, seed=2, size=64)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
