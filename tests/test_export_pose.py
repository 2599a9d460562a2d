"""`jfacemap export nwb|dlc-h5|dlc-csv`: each consumer opens the export itself, values to 1e-6, bodyparts in order.

Consumers: pandas (`read_hdf`, `read_csv` as DeepLabCut reads its CSV), movement's DeepLabCut loader
(run where movement is installed; its documented reading steps otherwise), pynwb's validator and reader.
Legacy Facemap `_FacemapPose.h5` files (a pandas DataFrame under `df_with_missing`) read as keypoints.
"""

from __future__ import annotations

import re
import sys

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from jfacemap.cli.app import app, main
from jfacemap.io.behavior import read_behavior
from jfacemap.io.extras import MissingExtraError
from jfacemap.io.keypoints import KeypointFileError, read_dlc_csv, read_keypoints, write_facemap_pose

# Not alphabetical, with h5-awkward names: the order must survive every format.
BODYPARTS = ["whisker(I)", "eye(back)", "nose(tip)", "paw"]
T = 9


@pytest.fixture
def pose(tmp_path):
    """A `_FacemapPose.h5` of T frames: random pixels, likelihoods, a gap, and its keypoints."""
    rng = np.random.default_rng(15)
    keypoints = np.concatenate([rng.uniform(0, 640, (T, len(BODYPARTS), 2)),
                                rng.uniform(0, 1, (T, len(BODYPARTS), 1))], axis=-1).astype(np.float32)
    keypoints[3, 2, :2] = np.nan  # nose(tip) lost in frame 3
    path = write_facemap_pose(tmp_path / "mouse_FacemapPose.h5", keypoints, BODYPARTS)
    return path, keypoints


def export(*args) -> None:
    result = CliRunner().invoke(app, ["export", *map(str, args)])
    assert result.exit_code == 0, result.output


def test_dlc_h5_opens_in_pandas_and_reads_back(pose, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    path, keypoints = pose
    export("dlc-h5", path, "--out", tmp_path / "dlc", "--scorer", "facemap-net")
    out = tmp_path / "dlc" / "mouse.h5"
    frame = pd.read_hdf(out)  # no key: the file holds exactly one table, df_with_missing
    assert list(frame.columns.names) == ["scorer", "bodyparts", "coords"]
    assert list(frame.columns.get_level_values("bodyparts").unique()) == BODYPARTS
    assert set(frame.columns.get_level_values("scorer")) == {"facemap-net"}
    assert list(frame.columns.get_level_values("coords")[:3]) == ["x", "y", "likelihood"]
    assert list(frame.index) == list(range(T))
    np.testing.assert_allclose(frame.to_numpy().reshape(T, len(BODYPARTS), 3), keypoints, atol=1e-6)
    with h5py.File(out) as f:
        assert list(f.keys()) == ["df_with_missing"]
    again, bodyparts = read_keypoints(out)  # and jfacemap's own h5py-only reader
    assert bodyparts == BODYPARTS
    np.testing.assert_allclose(again, keypoints, atol=1e-6)


def _movement_positions(path, pd):
    """movement's `load_poses.from_dlc_file` where movement is installed; otherwise its documented steps:
    the h5 must hold a `df_with_missing` dataset, read with `pd.read_hdf(key="df_with_missing")`, bodyparts
    from the `bodyparts` column level in order, values reshaped (time, individuals, keypoints, x/y/likelihood)."""
    try:
        from movement.io import load_poses
    except ImportError:
        with h5py.File(path) as f:
            assert "df_with_missing" in f
        frame = pd.read_hdf(path, key="df_with_missing")
        names = list(frame.columns.get_level_values("bodyparts").unique())
        values = frame.to_numpy().reshape(len(frame), 1, len(names), 3)[:, 0]
        return names, values[..., :2], values[..., 2]
    ds = load_poses.from_dlc_file(path, fps=None)
    # movement >= 0.1: position (time, space, keypoints, individuals)
    position = ds.position.transpose("time", "individuals", "keypoints", "space").values[:, 0]
    confidence = ds.confidence.transpose("time", "individuals", "keypoints").values[:, 0]
    return [str(k) for k in ds.keypoints.values], position, confidence


def test_dlc_h5_opens_in_movement(pose, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    path, keypoints = pose
    export("dlc-h5", path, "--out", tmp_path)
    names, position, confidence = _movement_positions(tmp_path / "mouse.h5", pd)
    assert names == BODYPARTS
    np.testing.assert_allclose(position, keypoints[..., :2], atol=1e-6)
    np.testing.assert_allclose(confidence, keypoints[..., 2], atol=1e-6)


def test_dlc_csv_is_the_track_csv_and_opens_in_pandas(pose, tmp_path):
    path, keypoints = pose
    export("dlc-csv", path, "--out", tmp_path)
    out = tmp_path / "mouse.csv"
    table = read_dlc_csv(out)
    assert table.bodyparts == BODYPARTS and table.with_likelihood and table.frame_indices() == list(range(T))
    np.testing.assert_allclose(table.keypoints, keypoints, atol=1e-6)
    pd = pytest.importorskip("pandas")
    frame = pd.read_csv(out, header=[0, 1, 2], index_col=0)  # how DeepLabCut reads its CSVs
    assert list(frame.columns.get_level_values(1).unique()) == BODYPARTS
    np.testing.assert_allclose(frame.to_numpy().reshape(T, len(BODYPARTS), 3), keypoints, atol=1e-6)


@pytest.mark.parametrize("layout", ["fixed", "table"])
def test_legacy_pandas_facemap_pose_reads_as_keypoints(pose, tmp_path, layout):
    """Older Facemap saved `DataFrame.to_hdf(<video>_FacemapPose.h5, "df_with_missing")`, scorer Facemap."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    _, keypoints = pose
    columns = pd.MultiIndex.from_product([["Facemap"], BODYPARTS, ["x", "y", "likelihood"]],
                                         names=["scorer", "bodyparts", "coords"])
    legacy = tmp_path / "old_FacemapPose.h5"
    pd.DataFrame(keypoints.reshape(T, -1).astype(np.float64), columns=columns).to_hdf(
        legacy, key="df_with_missing", mode="w", format=layout)
    values, bodyparts = read_keypoints(legacy)
    assert bodyparts == BODYPARTS
    np.testing.assert_allclose(values, keypoints, atol=1e-6)
    behavior = read_behavior(legacy, fps=50)
    assert behavior.kind == "keypoints" and behavior.names[:2] == ("whisker(I)_x", "whisker(I)_y")
    export("dlc-csv", legacy, "--out", tmp_path / "csv")  # and it exports like any keypoint file
    np.testing.assert_allclose(read_dlc_csv(tmp_path / "csv" / "old.csv").keypoints, keypoints, atol=1e-6)


def test_nwb_validates_and_reads_back_in_order(pose, tmp_path):
    pynwb = pytest.importorskip("pynwb")
    pytest.importorskip("ndx_pose")
    from jfacemap.io.nwb_pose import read_pose_nwb

    path, keypoints = pose
    export("nwb", path, "--out", tmp_path, "--fps", 50, "--session-start", "2024-05-01T09:30:00+00:00")
    out = tmp_path / "mouse.nwb"
    assert pynwb.validate(path=str(out)) == []
    with pynwb.NWBHDF5IO(str(out), "r") as io:
        nwbfile = io.read()
        pose_estimation = nwbfile.processing["behavior"]["PoseEstimation"]
        assert list(pose_estimation.skeleton.nodes[:]) == BODYPARTS
        assert set(pose_estimation.pose_estimation_series) == set(BODYPARTS)
        series = pose_estimation.pose_estimation_series["eye(back)"]
        np.testing.assert_allclose(series.data[:], keypoints[:, 1, :2], atol=1e-6)
        np.testing.assert_allclose(series.confidence[:], keypoints[:, 1, 2], atol=1e-6)
        assert pose_estimation.source_software == "jfacemap"
    values, bodyparts, times = read_pose_nwb(out)
    assert bodyparts == BODYPARTS
    np.testing.assert_allclose(values, keypoints, atol=1e-6)
    np.testing.assert_allclose(times, np.arange(T) / 50, atol=1e-12)
    values, bodyparts = read_keypoints(out)  # an .nwb is keypoint input like any other
    assert bodyparts == BODYPARTS and values.dtype == np.float32
    np.testing.assert_allclose(values, keypoints, atol=1e-6)
    not_nwb = tmp_path / "not.nwb"
    not_nwb.write_bytes(b"plain text")
    with pytest.raises(KeypointFileError, match=r"not\.nwb: not a readable NWB file"):
        read_keypoints(not_nwb)


def test_nwb_opens_in_movement(pose, tmp_path):
    """movement lists an NWB file's keypoints alphabetically (it reads the series dict): mapped by name."""
    load_poses = pytest.importorskip("movement.io.load_poses")
    path, keypoints = pose
    export("nwb", path, "--out", tmp_path, "--fps", 50)
    ds = load_poses.from_nwb_file(tmp_path / "mouse.nwb")
    names = [str(k) for k in ds.keypoints.values]
    assert sorted(names) == sorted(BODYPARTS)
    position = ds.position.transpose("time", "individuals", "keypoints", "space").values[:, 0]
    np.testing.assert_allclose(position[:, [names.index(b) for b in BODYPARTS]], keypoints[..., :2], atol=1e-6)


def test_nwb_appends_to_an_existing_session(pose, tmp_path):
    pynwb = pytest.importorskip("pynwb")
    pytest.importorskip("ndx_pose")
    from datetime import datetime, timezone

    from jfacemap.io.nwb_pose import read_pose_nwb

    path, keypoints = pose
    session = tmp_path / "session.nwb"
    nwbfile = pynwb.NWBFile(session_description="a lab's session", identifier="s1",
                            session_start_time=datetime(2024, 5, 1, tzinfo=timezone.utc))
    nwbfile.add_acquisition(pynwb.TimeSeries(name="lick", data=np.arange(5.0), unit="V", rate=10.0))
    with pynwb.NWBHDF5IO(str(session), "w") as io:
        io.write(nwbfile)
    times = tmp_path / "times.npy"
    np.save(times, 2.0 + np.arange(T) / 30)
    export("nwb", path, "--append-to", session, "--times", times)
    assert pynwb.validate(path=str(session)) == []
    with pynwb.NWBHDF5IO(str(session), "r") as io:
        back = io.read()
        assert back.identifier == "s1" and list(back.acquisition["lick"].data[:]) == [0, 1, 2, 3, 4]
    values, bodyparts, clock = read_pose_nwb(session)
    assert bodyparts == BODYPARTS
    np.testing.assert_allclose(values, keypoints, atol=1e-6)
    np.testing.assert_allclose(clock, 2.0 + np.arange(T) / 30, atol=1e-12)


def test_nwb_takes_the_clock_and_size_of_the_video_beside_it(pose, tmp_path):
    pytest.importorskip("ndx_pose")
    from jfacemap.io.nwb_pose import read_pose_nwb
    from jfacemap.io.video import write_video

    path, _ = pose
    write_video(tmp_path / "mouse.mp4", np.zeros((T, 48, 64), np.uint8), fps=25)
    export("nwb", path, "--out", tmp_path / "nwb")
    _, _, times = read_pose_nwb(tmp_path / "nwb" / "mouse.nwb")
    np.testing.assert_allclose(times, np.arange(T) / 25, atol=1e-9)
    pynwb = pytest.importorskip("pynwb")
    assert pynwb.validate(path=str(tmp_path / "nwb" / "mouse.nwb")) == []
    with pynwb.NWBHDF5IO(str(tmp_path / "nwb" / "mouse.nwb"), "r") as io:
        video = io.read().processing["behavior"]["PoseEstimation"].source_video
        assert list(video.external_file[:]) == [str(tmp_path / "mouse.mp4")]
        assert list(video.dimension[:]) == [64, 48]  # width, height
        np.testing.assert_allclose(video.timestamps[:], np.arange(T) / 25, atol=1e-9)


@pytest.mark.parametrize("module, extra", [("pandas", "dlc"), ("pynwb", "nwb")])
def test_missing_extra_says_what_to_install(pose, tmp_path, monkeypatch, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    fmt = {"dlc": "dlc-h5", "nwb": "nwb"}[extra]
    with pytest.raises(MissingExtraError, match=rf'needs {module}, which is not installed: pip install "jfacemap\[{extra}\]"'):
        from jfacemap.io.pose_export import export_pose

        export_pose(fmt, pose[0], tmp_path / "out", fps=50)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("args, words", [
    (["dlc-h5", "{missing}"], r"missing_FacemapPose\.h5: no such file"),
    (["dlc-csv", "{garbage}"], r"garbage\.h5: not an HDF5 file"),
    (["dlc-csv", "{csv}"], r"mouse\.csv: the dlc-csv export would overwrite its input"),
    (["nwb", "{pose}", "--out", "{tmp}"], r"mouse_FacemapPose\.h5: NWB needs timestamps"),
    (["xml", "{pose}"], r"FORMAT must be one of nwb, dlc-h5, dlc-csv, proc, got 'xml'"),
    (["dlc-h5", "{pose}", "--fps", "30"], r"--fps: only for the nwb format"),
    (["nwb", "{pose}", "{pose}", "--video", "{pose}"], r"--video names one file: give one INPUT"),
])
def test_bad_inputs_fail_with_one_line(pose, tmp_path, capsys, args, words):
    path, _ = pose
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5 at all")
    csv = tmp_path / "mouse.csv"
    export("dlc-csv", path, "--out", tmp_path)
    names = {"missing": tmp_path / "missing_FacemapPose.h5", "garbage": garbage, "csv": csv, "pose": path,
             "tmp": tmp_path / "nwb"}
    with pytest.raises(SystemExit) as exit_:
        main(["export", *[a.format(**names) for a in args]])
    assert exit_.value.code == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("jfacemap: error: ")
    assert re.search(words, line), line
