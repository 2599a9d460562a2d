"""Live tracking: the batch-1 tracker equals track_video, sessions drop rather than lag, the log survives a kill."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from typer.testing import CliRunner

from jfacemap.errors import JfacemapError
from jfacemap.io.video import write_video
from jfacemap.live import LiveError, LiveTracker, VideoClock, read_keypoint_log, run_live
from jfacemap.live.sources import open_source
from jfacemap.nets.unet import FacemapUNet
from jfacemap.skeleton import FACEMAP_BODYPARTS
from jfacemap.synth import make_session
from jfacemap.track.filter import detect_outliers
from jfacemap.track.predict import track_video

SMALL = (8, 8, 16, 16, 16)
N_FRAMES = 24
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("live")
    session = make_session(N_FRAMES, seed=3, size=64)
    frames, _ = session.render(0, N_FRAMES)
    frames = np.concatenate([frames, frames[:, :, :16]], axis=2)  # 64 x 80: not square
    video = folder / "mouse.mkv"
    write_video(video, frames, fps=50.0, lossless=True)
    model = FacemapUNet(len(session.bodyparts), SMALL, rngs=nnx.Rngs(0))
    model.heatmap_head.bias.set_value(model.heatmap_head.bias.get_value() + 0.5)  # a peak in every channel
    reference = track_video(video, model, session.bodyparts, out_path=folder / "ref.h5")
    return video, frames, model, list(session.bodyparts), reference


@pytest.fixture(scope="module")
def tracker(clip):
    _, frames, model, _, _ = clip
    return LiveTracker(model, frames.shape[1:])


def _compiles():
    """A list that grows by one per XLA compilation while the listener is registered."""
    seen: list[float] = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            seen.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    return seen, listen


def test_equals_track_video_and_never_compiles_after_construction(clip, tracker):
    _, frames, _, _, reference = clip
    seen, listen = _compiles()
    try:
        got = np.stack([tracker(frame) for frame in frames])
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert not seen, f"{len(seen)} compilations after the constructor"
    assert got.shape == reference.shape and got.dtype == np.float32
    np.testing.assert_allclose(got[..., :2], reference[..., :2], atol=1e-4, rtol=0)
    np.testing.assert_allclose(got[..., 2], reference[..., 2], atol=1e-5, rtol=0)


def test_stats_are_latency_percentiles(clip, tracker):
    tracker.reset_stats()
    assert tracker.stats()["frames"] == 0
    for frame in clip[1][:5]:
        tracker(frame)
    stats = tracker.stats()
    assert stats["frames"] == 5 and len(tracker.latencies_ms) == 5
    assert 0 < stats["median_ms"] <= stats["p90_ms"] <= stats["p99_ms"] <= stats["max_ms"]


@pytest.mark.parametrize("frame", [np.zeros((64, 81), np.uint8), np.zeros((64, 80), np.float32), [[0]]])
def test_a_wrong_frame_is_a_one_line_error(tracker, frame):
    with pytest.raises(LiveError, match="must be") as err:
        tracker(frame)
    assert isinstance(err.value, JfacemapError) and "\n" not in str(err.value)


def test_missing_sources_are_one_line_errors(tmp_path):
    for source, words in ((tmp_path / "none.mp4", "no such video"), ("/dev/video_jfacemap_missing", "no such camera")):
        with pytest.raises(LiveError, match=words) as err:
            open_source(source)
        assert "\n" not in str(err.value)


def test_a_session_tracks_in_order_and_drops_rather_than_lags(clip, tracker, tmp_path):
    video, frames, _, names, reference = clip
    calls: list[int] = []

    def slow(index, keypoints):  # the tracker falls behind a 50 frames/s clock played 4x
        calls.append(index)
        np.testing.assert_allclose(keypoints[:, :2], reference[index, :, :2], atol=1e-4)
        time.sleep(0.03)

    out = tmp_path / "live.h5"
    summary = run_live(VideoClock(video, speed=4.0), tracker, names, out, on_keypoints=slow, flush_every=3)
    assert summary.frames_seen == N_FRAMES
    assert calls == sorted(set(calls)), "a frame tracked twice or out of order"
    assert summary.dropped and sorted(set(calls) | set(summary.dropped)) == list(range(N_FRAMES))
    assert not set(calls) & set(summary.dropped) and summary.tracked == len(calls)
    assert "dropped" in summary.line()
    log = read_keypoint_log(out)
    assert log["complete"] and log["dropped"] == len(summary.dropped) and log["frames_seen"] == N_FRAMES
    assert log["frame_index"].tolist() == calls and log["bodyparts"] == names
    assert (np.diff(log["arrival_s"]) > 0).all() and (log["tracked_s"] >= log["arrival_s"]).all()
    np.testing.assert_allclose(log["keypoints"][..., :2], reference[calls, :, :2], atol=1e-4)


def test_a_fast_enough_tracker_drops_nothing(clip, tracker):
    video, _, _, names, reference = clip
    got = {}
    summary = run_live(VideoClock(video, max_frames=6, speed=0.2), tracker, names, None,
                       on_keypoints=lambda i, kp: got.setdefault(i, kp))
    assert summary.tracked == 6 and summary.dropped == [] and sorted(got) == list(range(6))


def test_a_source_of_another_size_is_refused(clip, tracker, tmp_path):
    _, frames, model, names, _ = clip
    other = tmp_path / "small.mkv"
    write_video(other, frames[:3, :, :64], fps=50.0, lossless=True)
    with pytest.raises(LiveError, match="tracker is built for"):
        run_live(VideoClock(other), tracker, names)


WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from jfacemap.live.store import KeypointLog
    log = KeypointLog(sys.argv[1], ["a", "b"], flush_every=4)
    i = 0
    while True:  # rows until killed: frame i has keypoints all equal to i
        log.append(i, i * 0.01, i * 0.01 + 0.001, np.full((2, 3), i, np.float32))
        i += 1
        time.sleep(0.0005)
""")


def test_the_log_reads_while_growing_and_after_a_kill(tmp_path):
    path = tmp_path / "log.h5"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env, stderr=subprocess.PIPE)
    try:
        sizes = []
        deadline = time.monotonic() + 60
        while len(sizes) < 3 and time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                log = read_keypoint_log(path)
            except (OSError, KeyError):  # not created yet, or not in SWMR mode yet
                continue
            n = len(log["frame_index"])
            assert log["frame_index"].tolist() == list(range(n)) and not log["complete"]
            assert (log["keypoints"] == np.arange(n, dtype=np.float32)[:, None, None]).all()
            if n and (not sizes or n > sizes[-1]):
                sizes.append(n)
        assert len(sizes) == 3, f"the log did not grow while being read: {sizes}"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    log = read_keypoint_log(path)  # after the kill: every flushed row, whole
    n = len(log["frame_index"])
    assert n >= sizes[-1] and n % 4 == 0 and log["frame_index"].tolist() == list(range(n))
    assert (log["keypoints"] == np.arange(n, dtype=np.float32)[:, None, None]).all()
    assert np.allclose(log["arrival_s"], np.arange(n) * 0.01)


def test_the_live_command(clip, tracker, tmp_path, monkeypatch):
    from jfacemap.cli.app import app

    video, _, model, names, reference = clip
    # the module's model and compiled tracker (a model folder and a new compile would only add seconds)
    monkeypatch.setattr("jfacemap.track.model_store.load_tracker", lambda name: (model, names, {}))
    flips = []  # live tracking leaves flip averaging off unless asked (latency)
    monkeypatch.setattr("jfacemap.live.tracker.LiveTracker",
                        lambda net, shape, bbox, flip_average: flips.append(flip_average) or tracker)
    out = tmp_path / "cli.h5"
    args = ["live", str(video), "--model", "small", "--out", str(out), "--max-frames", "6", "--speed", "0.2"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert flips == [False]
    assert "tracked 6 of 6 frames" in result.output and "dropped 0" in result.output
    log = read_keypoint_log(out)
    assert log["frame_index"].tolist() == list(range(6))
    np.testing.assert_allclose(log["keypoints"][..., :2], reference[:6, :, :2], atol=1e-4)
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and "--overwrite" in str(again.exception)
    flipped = CliRunner().invoke(app, [*args, "--overwrite", "--flip-average"], catch_exceptions=False)
    assert flipped.exit_code == 0, flipped.output
    assert flips == [False, True]


def test_the_live_command_filters_outliers(clip, tracker, tmp_path, monkeypatch):
    from jfacemap.cli.app import app

    video, _, model, names, reference = clip
    monkeypatch.setattr("jfacemap.track.model_store.load_tracker", lambda name: (model, names, {}))
    monkeypatch.setattr("jfacemap.live.tracker.LiveTracker", lambda net, shape, bbox, flip_average: tracker)
    # Frame 4 of keypoint 0 far off, by way of the tracker's output: a jump the filter must flag.
    real = tracker.__call__
    monkeypatch.setattr(type(tracker), "__call__", lambda self, frame: _spike(real(frame), frame, clip[1][4]))
    expected = reference[:N_FRAMES].copy()
    expected[4, 0, :2] += 100.0
    out = tmp_path / "filtered.h5"
    args = ["live", str(video), "--model", "small", "--out", str(out), "--max-frames", "6", "--speed", "0.2",
            "--filter"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "tracked 6 of 6 frames" in result.output
    # The offline filter on the same six frames (its jump rule is the causal one) is the reference.
    flagged = detect_outliers(expected[:6], 50.0)
    assert flagged[4, 0]
    shown = re.search(r"outliers flagged (\d+\.\d+)% of points", result.output)
    assert shown and float(shown.group(1)) == pytest.approx(100 * flagged.mean(), abs=0.01), result.output
    log = read_keypoint_log(out)
    assert log["flagged_fraction"] == pytest.approx(flagged.mean()) and "max_jump_px" in log["outlier_filter"]
    held = expected[:6].copy()
    for t, k in zip(*np.nonzero(flagged)):  # a flagged point holds the last accepted position (NaN before one)
        before = np.flatnonzero(~flagged[:t, k])
        held[t, k, :2] = expected[before[-1], k, :2] if before.size else np.nan
    np.testing.assert_allclose(log["keypoints"], held, atol=1e-4)


def _spike(keypoints, frame, spiked_frame):
    """keypoints, with keypoint 0 moved 100 px when `frame` is `spiked_frame`."""
    if np.array_equal(frame, spiked_frame):
        keypoints = keypoints.copy()
        keypoints[0, :2] += 100.0
    return keypoints


@pytest.mark.parametrize("source, words", [("missing.mp4", "no such video file"),
                                           ("/dev/video_jfacemap_missing", "no such camera device")])
def test_the_command_says_a_missing_source_in_one_line(tmp_path, capsys, monkeypatch, source, words):
    from jfacemap.cli.app import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["live", source])
    assert exit_.value.code == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("jfacemap: error:") and words in line


SESSION = textwrap.dedent("""
    import sys
    from flax import nnx
    from jfacemap.live import LiveTracker, VideoClock, run_live
    from jfacemap.nets.unet import FacemapUNet
    from jfacemap.skeleton import FACEMAP_BODYPARTS
    model = FacemapUNet(len(FACEMAP_BODYPARTS), (8, 8, 16, 16, 16), rngs=nnx.Rngs(0))  # the clip fixture's model
    model.heatmap_head.bias.set_value(model.heatmap_head.bias.get_value() + 0.5)
    source = VideoClock(sys.argv[1], speed=0.1)
    run_live(source, LiveTracker(model, source.frame_shape), list(FACEMAP_BODYPARTS), sys.argv[2], flush_every=2)
""")


@pytest.mark.slow
def test_a_killed_session_leaves_a_readable_log(clip, tmp_path):
    video, _, _, names, reference = clip
    assert names == list(FACEMAP_BODYPARTS)  # what the session's script names them
    out = tmp_path / "killed.h5"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    session = subprocess.Popen([sys.executable, "-c", SESSION, str(video), str(out)], env=env, stderr=subprocess.PIPE)
    try:
        deadline, rows = time.monotonic() + 120, 0
        while rows < 4 and time.monotonic() < deadline and session.poll() is None:
            time.sleep(0.2)
            try:
                rows = len(read_keypoint_log(out)["frame_index"])
            except (OSError, KeyError):
                continue
        assert rows >= 4 and session.poll() is None, "the session ended before it could be killed"
    finally:
        session.send_signal(signal.SIGKILL)
        session.wait()
    log = read_keypoint_log(out)
    index = log["frame_index"]
    assert len(index) >= rows and not log["complete"] and (np.diff(index) > 0).all()
    np.testing.assert_allclose(log["keypoints"][..., :2], reference[index, :, :2], atol=1e-4)
