"""`jfacemap train / finetune / evaluate / track` end to end, through real subprocesses (tiny U-Net)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jfacemap.io.images import write_png
from jfacemap.io.keypoints import LabelTable, read_dlc_csv, read_facemap_pose, write_dlc_csv
from jfacemap.io.video import write_video
from jfacemap.synth import make_session

N_FRAMES = 24
SMALL = "8,8,16,16,16"


# These tiny runs spend most of their time compiling; XLA's cheapest CPU backend
# optimisation halves that without changing the numbers that matter here.
ENV = os.environ | {"XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()}


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jfacemap.cli.app", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300, env=ENV)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jfacemap: error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A synthetic clip, labels as image paths (train) and as frame indices (test), a trained model."""
    root = tmp_path_factory.mktemp("project")
    session = make_session(N_FRAMES, seed=4, size=64)
    frames, kp = session.render(0, N_FRAMES)
    video = root / "clip.mkv"
    write_video(video, frames, fps=50.0, lossless=True)
    names = list(session.bodyparts)
    train_rows = list(range(0, 8))  # one batch: one optimizer step per epoch
    (root / "labeled-data").mkdir()
    for i in train_rows:
        write_png(root / "labeled-data" / f"img{i:03d}.png", frames[i])
    labels = root / "labeled-data" / "CollectedData.csv"
    write_dlc_csv(labels, LabelTable([f"labeled-data/img{i:03d}.png" for i in train_rows], names,
                                     kp[train_rows], scorer="me"))
    test_rows = list(range(12, N_FRAMES))
    test = root / "test.csv"
    write_dlc_csv(test, kp[test_rows], names, index=test_rows)
    model = root / "model"
    result = run_cli("train", labels, "--out", model, "--epochs", 1, "--channels", SMALL, "--holdout", 2)
    assert result.returncode == 0, result.stderr
    assert "epoch   1/1" in result.stderr and "holdout (2 frames)" in result.stdout
    return {"root": root, "video": video, "labels": labels, "test": test, "model": model, "names": names}


def test_train_writes_a_model_with_the_labels_bodyparts(project):
    info = json.loads((project["model"] / "model.json").read_text())
    assert info["bodyparts"] == project["names"] and info["channels"] == [8, 8, 16, 16, 16]
    assert info["training"]["n_frames"] == 6 and info["errors"]["holdout"]["n_frames"] == 2
    assert not (project["model"] / "checkpoints").exists()  # the finished model replaced them


def test_evaluate_writes_json(project, tmp_path):
    out = tmp_path / "errors.json"
    result = run_cli("evaluate", project["model"], project["test"], "--video", project["video"], "--json", out)
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    for key in ("mean_px", "median_px", "per_keypoint_px", "n_frames"):
        assert key in doc
    assert doc["n_frames"] == N_FRAMES - 12 and set(doc["per_keypoint_px"]) == set(project["names"])
    assert doc["mean_px"] > 0
    # Frame-index labels without the video they index: one line saying so.
    assert "give the video" in one_line_error(run_cli("evaluate", project["model"], project["test"]))


def test_finetune_from_the_trained_model_and_unknown_bodyparts(project, tmp_path):
    out = tmp_path / "tuned"
    result = run_cli("finetune", project["labels"], "--base", project["model"], "--out", out, "--epochs", 1)
    assert result.returncode == 0, result.stderr
    info = json.loads((out / "model.json").read_text())
    assert info["base"] == str(project["model"]) and info["recipe"]["name"] == "finetune"

    table = read_dlc_csv(project["labels"])
    table.bodyparts = ["tail" if b == "paw" else b for b in table.bodyparts]
    bad = project["root"] / "bad.csv"
    write_dlc_csv(bad, table)
    line = one_line_error(run_cli("finetune", bad, "--base", project["model"], "--out", tmp_path / "x"))
    assert "bad.csv" in line and "unknown bodyparts 'tail'" in line and "--new-bodyparts" in line
    assert not (tmp_path / "x").exists()

    # A new skeleton on purpose: the base network with new output heads for the labels' bodyparts.
    result = run_cli("finetune", bad, "--base", project["model"], "--out", tmp_path / "x", "--epochs", 1,
                     "--new-bodyparts")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "x" / "model.json").read_text())["bodyparts"] == table.bodyparts


def test_track_with_csv_and_filter(project, tmp_path):
    result = run_cli("track", project["video"], project["video"], "--model", project["model"],
                     "--out", tmp_path, "--csv", "--filter", "--batch-size", 4, "--chunk-size", 10)
    assert result.returncode == 0, result.stderr
    kp, names = read_facemap_pose(tmp_path / "clip_FacemapPose.h5")
    assert names == project["names"] and kp.shape == (N_FRAMES, len(names), 3)
    table = read_dlc_csv(tmp_path / "clip_FacemapPose.csv")
    np.testing.assert_allclose(table.keypoints, kp, atol=1e-4)
    assert "filtered" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip_FacemapPose.csv", "clip_FacemapPose.h5"]


def test_track_errors_are_one_line(project, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    assert "broken.mp4" in one_line_error(run_cli("track", bad, "--model", project["model"]))
    line = one_line_error(run_cli("track", project["video"], "--model", project["model"],
                                  "--bbox", 0, 500, 0, 64, "--out", tmp_path))
    assert "clip.mkv" in line and "outside" in line


def test_track_never_overwrites_synth_ground_truth(project, tmp_path):
    video = tmp_path / "mouse.mp4"
    assert run_cli("synth", video, "--frames", 6, "--size", 64).returncode == 0
    truth = tmp_path / "mouse_FacemapPose.h5"
    before = truth.read_bytes()
    line = one_line_error(run_cli("track", video, "--model", project["model"]))
    assert "ground truth" in line and "--out" in line
    assert truth.read_bytes() == before
    # into another folder it tracks as usual
    assert run_cli("track", video, "--model", project["model"], "--out", tmp_path / "tracked").returncode == 0
    assert (tmp_path / "tracked" / "mouse_FacemapPose.h5").exists()


# ------------------------------------------------------ labels, in-process ---


def test_labels_from_facemap_h5_with_video_or_images(project, tmp_path):
    import h5py

    from jfacemap.io.keypoints import write_facemap_pose
    from jfacemap.io.video import read_frames
    from jfacemap.track.labels import load_labelled_frames

    names = project["names"]
    kp = np.full((N_FRAMES, len(names), 3), np.nan, np.float32)
    kp[[3, 7]] = read_dlc_csv(project["test"]).keypoints[:2]  # two labelled frames, the rest empty
    pose = write_facemap_pose(tmp_path / "clip_FacemapPose.h5", kp, names)
    images, got, bodyparts, table = load_labelled_frames(pose, project["video"], bodyparts=names[::-1])
    assert table.index == ["3", "7"] and bodyparts == names[::-1]
    np.testing.assert_array_equal(images, read_frames(project["video"], [3, 7]))
    np.testing.assert_allclose(got, kp[[3, 7]][:, ::-1])
    with pytest.raises(ValueError, match="give the video"):
        load_labelled_frames(pose)

    with h5py.File(pose, "a") as f:  # the same labels with their images inside the file
        f["images"] = np.zeros((N_FRAMES, 8, 9), np.uint8) + np.arange(N_FRAMES, dtype=np.uint8)[:, None, None]
    images, _, _, _ = load_labelled_frames(pose)
    assert images.shape == (2, 8, 9) and list(images[:, 0, 0]) == [3, 7]


def test_broken_dlc_h5_names_the_file_and_points_to_the_csv(tmp_path):
    import h5py

    from jfacemap.track.labels import load_labelled_frames

    path = tmp_path / "CollectedData_me.h5"
    with h5py.File(path, "w") as f:  # a pandas group with none of the table's data
        f.create_group("df_with_missing").attrs["pandas_type"] = "frame_table"
    with pytest.raises(ValueError, match=r"CollectedData_me\.h5: .*table_type") as plain:
        load_labelled_frames(path)
    assert "CSV" not in str(plain.value)
    path.with_suffix(".csv").write_text("scorer\n")
    with pytest.raises(ValueError, match=r"the CSV beside it .*CollectedData_me\.csv"):
        load_labelled_frames(path)


def test_track_reports_frames_per_second_without_a_terminal(project, tmp_path, monkeypatch):
    """CliRunner's stderr is not a terminal: sparse progress lines, then frames/s on stdout."""
    from typer.testing import CliRunner

    from jfacemap.cli.app import app

    monkeypatch.setenv("XLA_FLAGS", ENV["XLA_FLAGS"])
    result = CliRunner().invoke(app, ["track", str(project["video"]), "--model", str(project["model"]),
                                      "--out", str(tmp_path), "--chunk-size", "4"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    [rate] = [ln for ln in lines if ln.startswith("tracked ")]
    assert rate.startswith(f"tracked {N_FRAMES} frames in ") and rate.endswith(" frames/s)")
    progress = [ln for ln in lines if "frames (" in ln and "%" in ln]
    assert 1 <= len(progress) <= 11 and progress[-1].endswith(f"{N_FRAMES}/{N_FRAMES} frames (100%)")


def test_track_follows_the_models_flip_average_and_the_option_overrides_it(project, tmp_path):
    """A model that asks for flip averaging (model.json) is tracked with it; --no-flip-average tracks
    without, as a model without the setting is."""
    import shutil

    from jfacemap.io.video import read_frames
    from jfacemap.track.inference import make_predict_fn
    from jfacemap.track.model_store import load_tracker

    flip = tmp_path / "flip-model"
    shutil.copytree(project["model"], flip)
    info = json.loads((flip / "model.json").read_text())
    (flip / "model.json").write_text(json.dumps(info | {"flip_average": True}))
    outs = {}
    for name, extra in [("default", []), ("off", ["--no-flip-average"])]:
        result = run_cli("track", project["video"], "--model", flip, "--out", tmp_path / name, *extra)
        assert result.returncode == 0, result.stderr
        outs[name] = read_facemap_pose(tmp_path / name / "clip_FacemapPose.h5")[0]
    model, _, _ = load_tracker(flip)
    frames = read_frames(project["video"], np.arange(N_FRAMES))
    for name, on in [("default", True), ("off", False)]:
        want = np.asarray(make_predict_fn(model, None, frames.shape[1:], flip_average=on)(frames))
        np.testing.assert_allclose(outs[name][..., :2], want[..., :2], atol=0.05)
    assert np.nanmax(np.abs(outs["default"][..., :2] - outs["off"][..., :2])) > 0.05
