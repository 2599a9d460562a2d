"""Reading behaviour for the encode / HMM stages: keypoint files, arrays, timestamps, clear errors."""

import numpy as np
import pytest

from jfacemap.io.behavior import BehaviorFileError, read_behavior, read_timestamps
from jfacemap.io.keypoints import write_dlc_csv, write_facemap_pose
from jfacemap.skeleton import ANALYSIS_BODYPARTS, FACEMAP_BODYPARTS
from jfacemap.synth import make_session


@pytest.fixture(scope="module")
def keypoints():
    return make_session(200, seed=3).keypoints()


def test_facemap_pose_gives_the_22_analysis_coordinates_with_gaps_filled(tmp_path, keypoints):
    kp = keypoints.copy()
    j = FACEMAP_BODYPARTS.index("nose(tip)")
    kp[50:60, j, :2] = np.nan
    path = tmp_path / "v_FacemapPose.h5"
    write_facemap_pose(path, kp, FACEMAP_BODYPARTS)
    b = read_behavior(path, fps=50.0)
    assert b.kind == "keypoints" and b.values.shape == (200, 22)
    assert b.names[:2] == (f"{ANALYSIS_BODYPARTS[0]}_x", f"{ANALYSIS_BODYPARTS[0]}_y")
    col = b.names.index("nose(tip)_x")
    expected = np.interp(np.arange(50, 60), [49, 60], kp[[49, 60], j, 0])
    np.testing.assert_allclose(b.values[50:60, col], expected, rtol=1e-5)
    np.testing.assert_allclose(b.values[:, b.names.index("eye(top)_y")], kp[:, FACEMAP_BODYPARTS.index("eye(top)"), 1])
    np.testing.assert_allclose(b.times, np.arange(200) / 50.0)


def test_dlc_csv_with_other_bodyparts_uses_all_of_them(tmp_path, keypoints):
    path = tmp_path / "pose.csv"
    write_dlc_csv(path, keypoints[:, :3], ["a", "b", "c"], index=list(range(200)))
    times = 10 + np.arange(200) / 30.0
    np.save(tmp_path / "t.npy", times)
    b = read_behavior(path, times=tmp_path / "t.npy")
    assert b.names == ("a_x", "a_y", "b_x", "b_y", "c_x", "c_y")
    np.testing.assert_allclose(b.times, times)


def test_arrays_and_errors(tmp_path):
    x = np.random.default_rng(0).normal(size=(100, 4))
    np.save(tmp_path / "feat.npy", x)
    b = read_behavior(tmp_path / "feat.npy", fps=10)
    np.testing.assert_allclose(b.values, x, rtol=1e-6)
    assert b.kind == "array"
    with pytest.raises(BehaviorFileError, match="give the video frame rate"):
        read_behavior(tmp_path / "feat.npy")
    x[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(BehaviorFileError, match="nan.npy: 1 NaN/inf values"):
        read_behavior(tmp_path / "nan.npy", fps=10)
    np.save(tmp_path / "t.npy", np.arange(99.0))
    with pytest.raises(BehaviorFileError, match=r"t.npy: 99 timestamps, need one per frame \(100\)"):
        read_behavior(tmp_path / "feat.npy", times=tmp_path / "t.npy")
    np.save(tmp_path / "t2.npy", np.r_[np.arange(50.0), np.arange(50.0)])
    with pytest.raises(BehaviorFileError, match="t2.npy is not strictly increasing"):
        read_timestamps(tmp_path / "t2.npy", 100)
    np.save(tmp_path / "flat.npy", np.zeros(5))
    with pytest.raises(BehaviorFileError, match="2-D"):
        read_behavior(tmp_path / "flat.npy", fps=10)
    with pytest.raises(BehaviorFileError, match="unknown behaviour file type .txt"):
        (tmp_path / "x.txt").write_text("1")
        read_behavior(tmp_path / "x.txt", fps=10)


def test_movie_svd_file_gives_motion_or_movie_pcs(tmp_path):
    from jfacemap.encode.movie_pcs import movie_svd
    from jfacemap.encode.movie_pcs_store import save_movie_svd
    from jfacemap.io.video import write_video

    frames = make_session(60, seed=2, size=32).render(0, 60)[0]
    video = tmp_path / "cam.mkv"
    write_video(video, frames, fps=50.0, lossless=True)
    result = movie_svd(video, n_components=5)
    save_movie_svd(tmp_path / "cam_svd.npz", result)
    motion = read_behavior(tmp_path / "cam_svd.npz", fps=50.0)
    movie = read_behavior(tmp_path / "cam_svd.npz", fps=50.0, svd_kind="movie")
    assert motion.kind == "motion_pcs" and movie.kind == "movie_pcs"
    assert motion.values.shape == movie.values.shape == (60, 5)
    np.testing.assert_allclose(movie.values, result.full.movie_pcs, rtol=1e-5)


def test_a_bodypart_never_visible_is_left_out_with_a_warning(tmp_path, keypoints):
    from jfacemap.io.behavior import UnusableBodypartWarning

    kp = keypoints[:, :3].copy()
    kp[:, 1, :2] = np.nan  # "b" is never visible, like a synthetic session's hidden paw
    path = tmp_path / "pose.csv"
    write_dlc_csv(path, kp, ["a", "b", "c"], index=list(range(200)))
    with pytest.warns(UnusableBodypartWarning, match=r"pose\.csv: left out bodypart 'b': never visible"):
        b = read_behavior(path, fps=50.0)
    assert b.names == ("a_x", "a_y", "c_x", "c_y")
    np.testing.assert_allclose(b.values[:, 2], kp[:, 2, 0], rtol=1e-5)
    kp[:, :, :2] = np.nan
    write_dlc_csv(path, kp, ["a", "b", "c"], index=list(range(200)))
    with pytest.raises(BehaviorFileError, match=r"pose\.csv: no bodypart is ever visible"):
        read_behavior(path, fps=50.0)
