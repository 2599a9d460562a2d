"""`jfacemap timescales POSE_FILE --out FOLDER`: keypoint timescales from a pose file, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.signal import lfilter
from typer.testing import CliRunner

from jfacemap.cli.app import app, main
from jfacemap.io.behavior import keypoint_coordinates
from jfacemap.io.keypoints import write_facemap_pose
from jfacemap.skeleton import ANALYSIS_BODYPARTS, FACEMAP_BODYPARTS
from jfacemap.track.timescales import keypoint_timescales

FPS, T = 50.0, 6000


def ou(n, tau_s, rng):
    a = np.exp(-1.0 / (FPS * tau_s))
    return lfilter([1.0], [1.0, -a], rng.normal(size=n) * np.sqrt(1 - a * a))


@pytest.fixture(scope="module")
def pose(tmp_path_factory):
    """A pose file whose keypoints move as OU processes (0.2 s to 2 s), one hidden paw."""
    rng = np.random.default_rng(4)
    K = len(FACEMAP_BODYPARTS)
    keypoints = np.ones((T, K, 3), np.float32)
    taus = np.geomspace(0.2, 2.0, 2 * K).reshape(K, 2)
    for k in range(K):
        for c in range(2):
            keypoints[:, k, c] = 100 + 5 * ou(T, taus[k, c], rng)
    keypoints[:, FACEMAP_BODYPARTS.index("paw"), :2] = np.nan  # not an analysis bodypart: never read
    path = tmp_path_factory.mktemp("pose") / "cam_FacemapPose.h5"
    write_facemap_pose(path, keypoints, FACEMAP_BODYPARTS)
    return path, keypoints


def invoke(*args):
    return CliRunner().invoke(app, ["timescales", *map(str, args)], catch_exceptions=False)


def test_writes_the_timescales_of_each_analysis_coordinate(pose, tmp_path):
    path, keypoints = pose
    out = tmp_path / "ts"
    result = invoke(path, "--out", out, "--no-filter")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "timescales.npz"]  # nothing half-written
    coords, names = keypoint_coordinates(keypoints, FACEMAP_BODYPARTS, dtype=np.float64)
    expected = keypoint_timescales(coords, FPS)
    saved = np.load(out / "timescales.npz")
    assert list(saved["names"]) == names and len(names) == 2 * len(ANALYSIS_BODYPARTS)
    np.testing.assert_allclose(saved["timescale_s"], expected.timescale_s)
    np.testing.assert_allclose(saved["variance_explained"], expected.variance_explained)
    np.testing.assert_allclose(saved["lags_s"], expected.lags_s)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"]["filtered"] is False and summary["inputs"]["n_frames"] == T
    assert summary["timescale_s"]["nose(tip)_x"] == pytest.approx(expected.timescale_s[names.index("nose(tip)_x")])
    assert np.isfinite(saved["timescale_s"]).all()  # the accuracy itself: tests/test_timescales.py
    rows = result.output.splitlines()
    assert rows[0].split()[:3] == ["keypoint", "x", "y"]
    eye = next(r for r in rows if r.startswith("eye(back) "))
    assert f"{summary['timescale_s']['eye(back)_x']:.2f} s" in eye
    assert not any(r.startswith("paw") for r in rows)


def test_filters_outliers_by_default(pose, tmp_path):
    path, _ = pose
    result = invoke(path, "-o", tmp_path / "ts")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "ts" / "summary.json").read_text())
    assert summary["inputs"]["filtered"] is True and 0 <= summary["inputs"]["outlier_fraction"] < 0.1


@pytest.mark.parametrize("case, args, words", [
    ("missing", ["nothing_FacemapPose.h5"], "nothing_FacemapPose.h5: no such file"),
    ("fps", ["POSE", "--fps", "0"], "--fps must be > 0"),
    ("out", ["POSE", "--out", "FILE"], "--out must be a folder"),
    ("short", ["SHORT"], "too few"),
])
def test_bad_inputs_fail_with_one_line(pose, tmp_path, capsys, case, args, words):
    (tmp_path / "FILE").write_text("x")
    short = tmp_path / "short_FacemapPose.h5"
    write_facemap_pose(short, pose[1][:150], FACEMAP_BODYPARTS)
    paths = {"POSE": pose[0], "FILE": tmp_path / "FILE", "SHORT": short}
    with pytest.raises(SystemExit) as exit_:
        main(["timescales", *[str(paths.get(a, tmp_path / a if a.endswith(".h5") else a)) for a in args],
              "--no-filter"])
    assert exit_.value.code == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("jfacemap: error: ") and words in line
