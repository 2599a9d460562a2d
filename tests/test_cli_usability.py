"""The command line as a person meets it: help text, -h, --version, Ctrl-C, progress, several videos."""

from __future__ import annotations

import io
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

import jfacemap
from jfacemap.cli import app as app_module
from jfacemap.cli import progress as progress_module
from jfacemap.cli.app import app, main
from jfacemap.cli.track import VIDEO_SUFFIXES, expand_videos
from jfacemap.errors import JfacemapError

COMMANDS = ("demo", "synth", "info", "track", "train", "finetune", "evaluate", "encode", "svd", "timescales", "hmm",
            "refine", "export", "roi", "live")
# typer's raw type labels and required-argument braces; any mention of the unshipped SPEC document.
UNCLEAN = re.compile(r"<(bool|int|float|str|path|list\[[^>]*\]|int,[^>]*)>|\{[a-z_]+\}|SPEC", re.IGNORECASE)


def invoke(*args: str):
    return CliRunner().invoke(app, list(map(str, args)), catch_exceptions=False)


# ------------------------------------------------------------------ help ---


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_reads_cleanly_with_h_and_help(command):
    args = [] if command is None else [command]
    short, long = invoke(*args, "-h"), invoke(*args, "--help")
    assert short.exit_code == long.exit_code == 0, short.output
    assert short.output == long.output
    assert not UNCLEAN.search(short.output), UNCLEAN.search(short.output)
    assert "Usage: " in short.output


def test_help_names_values_plainly():
    text = invoke("track", "-h").output
    assert "VIDEO..." in text.splitlines()[1]  # the usage line
    assert "FOLDER" in text and "X0 X1 Y0 Y1" in text and "--keep-going" in text
    assert "--no-resume" in text


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output == f"jfacemap {jfacemap.__version__}\n"


def test_every_command_is_registered_with_plain_help():
    registered = {info.name: info for info in app.registered_commands}
    assert set(registered) == set(COMMANDS)
    assert all(info.cls is app_module.PlainCommand for info in registered.values())


# ---------------------------------------------------------------- Ctrl-C ---


@pytest.mark.parametrize("command, module, name, resumes", [
    ("track", "jfacemap.cli.track", "expand_videos", True),
    ("info", "jfacemap.cli.info", "video_info", False),
])
def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys, tmp_path, command, module, name, resumes):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(f"{module}.{name}", interrupted)
    with pytest.raises(SystemExit) as exit_:
        main([command, str(tmp_path / "v.mp4")])
    assert exit_.value.code == 130
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("jfacemap: interrupted")
    assert ("rerun the same command to resume" in line) == resumes


# -------------------------------------------------------------- progress ---


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_time_left_after_a_resume_counts_only_this_runs_rate(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    bar = progress_module.Progress(1000, "x", "frames", io.StringIO(), tty=False, every_s=1e9)
    bar.skip(900)  # an earlier run's frames: instant, not a rate
    assert bar.seconds_left() is None
    clock.now += 10.0
    bar(10)  # 1 frame/s now, 90 frames to go
    assert bar.seconds_left() == pytest.approx(90.0)
    assert bar.done == 910 and bar.skipped == 900


def test_terminal_bar_never_hides_the_cursor_and_ends_its_line(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(progress_module, "_is_tty", lambda s: True)
    monkeypatch.setattr(progress_module.typer, "get_text_stream", lambda name: stream)
    with pytest.raises(KeyboardInterrupt), progress_module.progress_bar(10, "tracking v.mp4") as advance:
        advance(3)
        raise KeyboardInterrupt
    text = stream.getvalue()
    assert "\033[?25l" not in text and "tracking v.mp4 [" in text and "3/10 frames" in text
    assert text.endswith("\n")


def test_plain_progress_lines_show_time_left(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    with progress_module.progress_bar(100, "fitting", unit="steps") as advance:
        clock.now += 5.0
        advance(50)
        clock.now += 5.0
        advance(50)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["fitting: 50/100 steps (50%), about 0:05 left", "fitting: 100/100 steps (100%)"]


# -------------------------------------------------------- track's inputs ---


def test_folders_and_patterns_expand_to_their_videos(tmp_path):
    for name in ("b.mp4", "a.AVI", "c.mj2", "a_FacemapPose.h5", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    videos = [tmp_path / "a.AVI", tmp_path / "b.mp4", tmp_path / "c.mj2"]
    assert expand_videos([tmp_path]) == videos
    assert expand_videos([Path(f"{tmp_path}/*")]) == videos
    assert expand_videos([Path(f"{tmp_path}/b*")]) == [tmp_path / "b.mp4"]
    named = tmp_path / "missing.mp4"  # a plain name is kept: the checks report it, naming the file
    assert expand_videos([named, tmp_path / "notes.txt"]) == [named, tmp_path / "notes.txt"]
    with pytest.raises(JfacemapError, match=r"\*\.mov: no video matches"):
        expand_videos([Path(f"{tmp_path}/*.mov")])
    with pytest.raises(JfacemapError, match="sub: a folder with no videos"):
        expand_videos([tmp_path / "sub"])
    assert {".mp4", ".avi", ".mkv", ".mov", ".mj2", ".h264"} <= set(VIDEO_SUFFIXES)


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    """Two short clips and a tiny random tracker saved as a model folder."""
    from flax import nnx

    from jfacemap.io.video import write_video
    from jfacemap.nets.unet import FacemapUNet
    from jfacemap.synth import make_session
    from jfacemap.track.model_store import save_tracker

    root = tmp_path_factory.mktemp("track")
    session = make_session(12, seed=2, size=64)
    frames, _ = session.render(0, 12)
    (root / "clips").mkdir()
    for name in ("a.mkv", "b.mkv"):
        write_video(root / "clips" / name, frames, fps=50.0, lossless=True)
    model = FacemapUNet(len(session.bodyparts), (8, 8, 16, 16, 16), rngs=nnx.Rngs(0))
    model.heatmap_head.bias.set_value(model.heatmap_head.bias.get_value() + 0.5)  # every channel peaks
    save_tracker(root / "model", model, list(session.bodyparts))
    return root


def test_track_keeps_going_past_bad_videos_and_counts_them(tracker, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video" * 100)
    args = ["track", bad, f"{tracker}/clips/*.mkv", tmp_path / "gone.avi", "--model", tracker / "model",
            "--out", tmp_path / "out", "--chunk-size", 8]
    result = CliRunner().invoke(app, list(map(str, [*args, "--keep-going"])))
    assert result.exit_code == 1, result.output
    errors = result.stderr.strip().splitlines()
    skipped = [line for line in errors if line.startswith("jfacemap: error: ")]
    assert len(skipped) == 2 and "broken.mp4" in skipped[0] and "gone.avi" in skipped[1]
    assert all(line.endswith("(skipped)") for line in skipped)
    assert "2 of 4 videos tracked, 2 failed" in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_FacemapPose.h5", "b_FacemapPose.h5"]
    # Without --keep-going: the first bad video stops the command before any tracking.
    result = CliRunner().invoke(app, list(map(str, [*args[:-4], "--out", tmp_path / "out2"])))
    assert result.exit_code != 0 and "broken.mp4" in str(result.exception)
    assert not (tmp_path / "out2").exists()


def test_track_videos_reports_a_failure_mid_run_and_goes_on(tracker, tmp_path, monkeypatch):
    """A video that fails while tracking (not in the checks) is skipped through track_videos' callback."""
    from jfacemap.io.video import VideoError
    from jfacemap.track import predict

    real = predict.track_video

    def flaky(video, *args, **kwargs):
        if Path(video).name == "a.mkv":
            raise VideoError(f"{video}: decoding failed at frame 5")
        return real(video, *args, **kwargs)

    monkeypatch.setattr(predict, "track_video", flaky)
    result = CliRunner().invoke(app, ["track", str(tracker / "clips"), "--model", str(tracker / "model"),
                                      "--out", str(tmp_path), "--keep-going"])
    assert result.exit_code == 1, result.output
    assert "a.mkv: decoding failed at frame 5 (skipped)" in result.stderr
    assert "1 of 2 videos tracked, 1 failed" in result.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["b_FacemapPose.h5"]


def test_interrupted_track_says_how_to_resume_and_resumes(tracker, tmp_path, monkeypatch):
    from jfacemap.track import predict

    real, calls = predict._finish, []

    def stop_after_one_chunk(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    args = ["track", str(tracker / "clips" / "a.mkv"), "--model", str(tracker / "model"), "--out", str(tmp_path),
            "--chunk-size", "4"]
    monkeypatch.setattr(predict, "_finish", stop_after_one_chunk)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1].startswith("jfacemap: interrupted; the frames tracked so far")
    assert (tmp_path / "a_FacemapPose.h5.partial").is_file()
    monkeypatch.setattr(predict, "_finish", real)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "resuming a.mkv" in result.stderr
    assert "tracked 8 frames" in result.stdout and "(4 more came from the interrupted run)" in result.stdout


# ----------------------------------------------------------- encode, hmm ---


def test_encode_warns_and_flags_an_unreliable_explainable_variance(capsys):
    from jfacemap.cli.encode import _check_reliability, print_summary

    result = SimpleNamespace(explainable_ve=np.full(50, 0.003),
                             summary={"explainable_ve": 0.003, "ve_linear": 0.008, "normalized_ve_linear": 2.68})
    _check_reliability(result)
    assert result.summary["explainable_ve_reliable"] is False
    [warning] = capsys.readouterr().err.strip().splitlines()
    assert warning.startswith("warning: the peer-prediction estimate of explainable variance is unreliable: ")
    print_summary(result.summary)
    rows = capsys.readouterr().out.splitlines()
    assert "268.0%  (unreliable" in next(r for r in rows if r.startswith("normalised VE, linear"))
    assert "unreliable" not in next(r for r in rows if r.startswith("variance explained, linear"))
    good = SimpleNamespace(explainable_ve=np.full(50, 0.2), summary={"normalized_ve_linear": 0.4})
    _check_reliability(good)
    assert good.summary["explainable_ve_reliable"] is True and capsys.readouterr().err == ""


def test_hmm_refuses_too_few_timepoints_before_any_work(tmp_path):
    from jfacemap.hmm.pipeline import run_hmm

    x = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(JfacemapError, match=r"5 timepoints after downsample_factor=1, too few.*n_segments=10"):
        run_hmm(x, 50.0, 2, downsample_factor=1)
    with pytest.raises(JfacemapError, match=r"need at least 31 .*n_states=30"):
        run_hmm(np.zeros((300, 3)), 50.0, 30, downsample_factor=10)
    np.save(tmp_path / "tiny.npy", x)
    result = CliRunner().invoke(app, ["hmm", str(tmp_path / "tiny.npy"), "--downsample", "1", "--states", "2",
                                      "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, JfacemapError) and "tiny.npy" in str(result.exception)
    assert "too few" in str(result.exception) and "\n" not in str(result.exception)
    assert not (tmp_path / "out").exists()
