"""Keypoint files: Facemap pose h5 and DeepLabCut CSV, read and written exactly."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jfacemap.io.images import ImageError, write_png
from jfacemap.io.keypoints import (
    KeypointFileError, LabelTable, facemap_pose_path, load_label_frames, load_label_images,
    read_dlc_csv, read_facemap_pose, read_keypoints, validate_bodyparts, write_dlc_csv,
    write_facemap_pose,
)
from jfacemap.io.video import read_frames, write_video
from jfacemap.skeleton import FACEMAP_BODYPARTS

MIRROR = Path(__file__).parents[1] / ".." / "shared" / "data" / "mirror-mouse"


def random_keypoints(t: int, k: int, seed: int = 0, nan_fraction: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    kp = rng.uniform(0, 500, (t, k, 3))
    kp[..., 2] = rng.uniform(0, 1, (t, k))
    kp[rng.random((t, k)) < nan_fraction] = np.nan
    return kp


def one_line_naming(err: pytest.ExceptionInfo, path: Path) -> bool:
    return "\n" not in str(err.value) and str(path) in str(err.value)


# --- Facemap h5 ---------------------------------------------------------------


def test_facemap_pose_round_trip_keeps_order_and_nans(tmp_path):
    bodyparts = ["zeta", "eye(top)", "alpha", "nose(tip)", "a.b c"]
    kp = random_keypoints(30, len(bodyparts)).astype(np.float32)
    path = write_facemap_pose(tmp_path / "v_FacemapPose.h5", kp, bodyparts)
    got, names = read_facemap_pose(path)
    assert names == bodyparts and got.dtype == np.float32
    np.testing.assert_array_equal(got, kp)
    with h5py.File(path) as f:
        assert f["Facemap/zeta/x"].dtype == np.float32 and f["Facemap/zeta/x"].shape == (30,)
    kp2, names2 = read_keypoints(path)
    np.testing.assert_array_equal(kp2, kp)
    assert names2 == bodyparts


def test_facemap_pose_without_order_attribute_uses_facemap_order(tmp_path):
    path = tmp_path / "orig_FacemapPose.h5"
    names = ["whisker(I)", "extra_b", "eye(back)", "extra_a", "nose(tip)"]
    with h5py.File(path, "w") as f:
        for i, name in enumerate(names):
            for c, coord in enumerate(("x", "y", "likelihood")):
                f[f"Facemap/{name}/{coord}"] = np.full(4, 10 * i + c, np.float32)
    kp, got = read_facemap_pose(path)
    assert got == ["eye(back)", "nose(tip)", "whisker(I)", "extra_a", "extra_b"]
    assert kp[0, 0, 0] == 20 and kp[0, 3, 2] == 32


def test_facemap_pose_path():
    assert facemap_pose_path("/data/mouse1.mp4") == Path("/data/mouse1_FacemapPose.h5")


def test_facemap_pose_errors(tmp_path):
    not_h5 = tmp_path / "x.h5"
    not_h5.write_text("hello")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["something/else"] = np.zeros(3)
    partial = tmp_path / "partial.h5"
    with h5py.File(partial, "w") as f:
        f["Facemap/eye(top)/x"] = np.zeros(3)
    for path, match in [(not_h5, "not an HDF5"), (other, "no 'Facemap' group"),
                        (partial, "missing dataset Facemap/eye\\(top\\)/y"),
                        (tmp_path / "nope.h5", "no such file")]:
        with pytest.raises(KeypointFileError, match=match) as err:
            read_facemap_pose(path)
        assert one_line_naming(err, path)


def test_facemap_pose_failed_write_keeps_old_file(tmp_path):
    path = write_facemap_pose(tmp_path / "a.h5", random_keypoints(5, 2), ["p", "q"])
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_facemap_pose(path, random_keypoints(5, 3), ["p", "q"])  # wrong K
    with pytest.raises(ValueError):
        write_facemap_pose(path, random_keypoints(5, 2), ["p", "p"])  # duplicate
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


# --- DeepLabCut CSV ---------------------------------------------------------------


def test_dlc_labels_round_trip(tmp_path):
    kp = random_keypoints(12, 4, seed=1)
    kp[..., 2] = np.where(np.isfinite(kp[..., 0]), 1.0, np.nan)
    index = [f"labeled-data/vid/img{i:03d}.png" for i in range(12)]
    table = LabelTable(index, ["nose", "eye", "paw", "ear"], kp, scorer="me")
    path = write_dlc_csv(tmp_path / "CollectedData_me.csv", table)
    text = path.read_text()
    assert text.splitlines()[2] == "coords" + ",x,y" * 4
    back = read_dlc_csv(path)
    assert (back.index, back.bodyparts, back.scorer, back.with_likelihood) == (
        index, table.bodyparts, "me", False)
    np.testing.assert_array_equal(back.keypoints, kp)
    assert write_dlc_csv(tmp_path / "again.csv", back).read_text() == text


def test_dlc_predictions_round_trip_with_likelihood(tmp_path):
    kp = random_keypoints(20, 3, seed=2)
    path = write_dlc_csv(tmp_path / "pred.csv", kp, bodyparts=["a", "b", "c"],
                         scorer="DLC_resnet50", with_likelihood=True)
    back = read_dlc_csv(path)
    assert back.with_likelihood and back.index == [str(i) for i in range(20)]
    assert back.frame_indices() == list(range(20))
    np.testing.assert_array_equal(back.keypoints, kp)
    kp32, names = read_keypoints(path)
    assert kp32.dtype == np.float32 and names == ["a", "b", "c"]


names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_characters="\x7f"),
                min_size=1, max_size=8).map(str.strip).filter(bool)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(0, 6), k=st.integers(1, 4), with_likelihood=st.booleans())
def test_dlc_csv_round_trip_random(tmp_path_factory, data, n, k, with_likelihood):
    bodyparts = data.draw(st.lists(names, min_size=k, max_size=k, unique=True))
    index = data.draw(st.lists(names, min_size=n, max_size=n))
    floats = st.floats(allow_nan=True, allow_infinity=False, width=64)
    kp = data.draw(hnp.arrays(np.float64, (n, k, 3), elements=floats))
    if not with_likelihood:
        kp[..., 2] = np.where(np.isfinite(kp[..., :2]).all(-1), 1.0, np.nan)
    path = tmp_path_factory.mktemp("csv") / "labels.csv"
    table = LabelTable(index, bodyparts, kp, scorer="s", with_likelihood=with_likelihood)
    back = read_dlc_csv(write_dlc_csv(path, table))
    assert back.index == index and back.bodyparts == bodyparts
    np.testing.assert_array_equal(back.keypoints, kp)


def test_newer_dlc_layout_with_split_index(tmp_path):
    path = tmp_path / "CollectedData.csv"
    path.write_text(
        "scorer,,,me,me,me,me\n"
        "bodyparts,,,nose,nose,eye,eye\n"
        "coords,,,x,y,x,y\n"
        "labeled-data,vid1,img001.png,1.5,2.5,,\n"
        "labeled-data,vid1,img002.png,3,4,5,6\n"
    )
    table = read_dlc_csv(path)
    assert table.index == ["labeled-data/vid1/img001.png", "labeled-data/vid1/img002.png"]
    assert table.bodyparts == ["nose", "eye"]
    np.testing.assert_array_equal(
        table.keypoints, [[[1.5, 2.5, 1], [np.nan] * 3], [[3, 4, 1], [5, 6, 1]]])


BAD_CSVS = {
    "missing header": ("bodyparts,a,a\ncoords,x,y\nimg.png,1,2\n", "scorer, bodyparts, coords"),
    "ragged": ("scorer,s,s\nbodyparts,a,a\ncoords,x,y\nimg.png,1,2,3\n", "row 4 has 4 cells"),
    "non-numeric": ("scorer,s,s\nbodyparts,a,a\ncoords,x,y\nimg.png,1,oops\n",
                    "row 4, column 3 \\(a y\\): 'oops' is not a number"),
    "coords": ("scorer,s,s,s\nbodyparts,a,a,a\ncoords,x,y,z\nimg.png,1,2,3\n", "'a' has x,y,z"),
    "mixed coords": ("scorer,s,s,s,s,s\nbodyparts,a,a,a,b,b\ncoords,x,y,likelihood,x,y\n",
                     "'b' has x,y"),
    "duplicate": ("scorer,s,s,s,s,s,s\nbodyparts,a,a,b,b,a,a\ncoords,x,y,x,y,x,y\n",
                  "bodypart 'a' appears twice"),
    "multi-animal": ("scorer,s,s\nindividuals,m1,m1\nbodyparts,a,a\ncoords,x,y\n", "multi-animal"),
    "empty": ("", "scorer, bodyparts, coords"),
}


@pytest.mark.parametrize("kind", list(BAD_CSVS))
def test_bad_csv_gives_one_line_error_naming_file(tmp_path, kind):
    text, match = BAD_CSVS[kind]
    path = tmp_path / f"{kind.replace(' ', '_')}.csv"
    path.write_text(text)
    with pytest.raises(KeypointFileError, match=match) as err:
        read_dlc_csv(path)
    assert one_line_naming(err, path)


@pytest.mark.skipif(not (MIRROR / "CollectedData.csv").exists(), reason="mirror-mouse data absent")
def test_real_mirror_mouse_labels(tmp_path):
    path = MIRROR / "CollectedData.csv"
    table = read_dlc_csv(path)
    assert len(table.index) == 90 and len(table.bodyparts) == 17 and table.scorer == "rick"
    assert table.keypoints.shape == (90, 17, 3) and not table.with_likelihood
    # Cross-check every cell against the csv module: NaN exactly where empty.
    rows = list(csv.reader(path.open()))
    cells = np.array([[math.nan if c == "" else float(c) for c in r[1:]] for r in rows[3:]])
    np.testing.assert_array_equal(table.keypoints[..., :2].reshape(90, -1), cells)
    assert [r[0] for r in rows[3:]] == table.index
    assert table.bodyparts == list(dict.fromkeys(rows[1][1:]))
    empty = np.array([[c == "" for c in r[1:]] for r in rows[3:]]).reshape(90, 17, 2)
    np.testing.assert_array_equal(np.isnan(table.keypoints[..., :2]), empty)
    np.testing.assert_array_equal(np.isnan(table.keypoints[..., 2]), empty.any(-1))
    # Rewriting it gives the same bytes.
    assert write_dlc_csv(tmp_path / "same.csv", table).read_bytes() == path.read_bytes()
    images = load_label_images(table)
    assert images.shape == (90, 406, 396) and images.dtype == np.uint8


def _label_folder(tmp_path: Path, sizes: list[tuple[int, int]]) -> LabelTable:
    """A DeepLabCut project: CSV in labeled-data/vid/, paths relative to the project."""
    folder = tmp_path / "labeled-data" / "vid"
    folder.mkdir(parents=True)
    index = []
    for i, (h, w) in enumerate(sizes):
        write_png(folder / f"img{i}.png", np.full((h, w), 10 * i, np.uint8))
        index.append(f"labeled-data\\vid\\img{i}.png")  # as DeepLabCut on Windows writes
    kp = random_keypoints(len(sizes), 2, seed=3)
    kp[..., 2] = np.where(np.isfinite(kp[..., 0]), 1.0, np.nan)
    return read_dlc_csv(write_dlc_csv(folder / "CollectedData_me.csv",
                                      LabelTable(index, ["a", "b"], kp)))


def test_load_label_images_finds_project_root(tmp_path):
    table = _label_folder(tmp_path, [(20, 30)] * 3)
    images = load_label_images(table)
    assert images.shape == (3, 20, 30) and images[2, 0, 0] == 20
    assert load_label_images(table, root=tmp_path).shape == (3, 20, 30)


def test_label_images_found_when_run_from_inside_the_labels_folder(tmp_path, monkeypatch):
    # `jfacemap train CollectedData_me.csv` from inside labeled-data/vid/: the relative path
    # has no parents, so the project root must come from where the CSV really is.
    _label_folder(tmp_path, [(20, 30)] * 2)
    monkeypatch.chdir(tmp_path / "labeled-data" / "vid")
    images = load_label_images(read_dlc_csv("CollectedData_me.csv"))
    assert images.shape == (2, 20, 30) and images[1, 0, 0] == 10
    # ... and through a symlink to the CSV placed elsewhere.
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "elsewhere" / "labels.csv"
    link.symlink_to(tmp_path / "labeled-data" / "vid" / "CollectedData_me.csv")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load_label_images(read_dlc_csv("labels.csv")).shape == (2, 20, 30)


def test_load_label_images_errors(tmp_path):
    table = _label_folder(tmp_path / "p1", [(20, 30), (20, 31)])
    with pytest.raises(ImageError, match="must share one size") as err:
        load_label_images(table)
    assert "img1.png" in str(err.value) and "\n" not in str(err.value)
    table = _label_folder(tmp_path / "p2", [(20, 30)] * 2)
    missing = tmp_path / "p2" / "labeled-data" / "vid" / "img1.png"
    missing.unlink()
    with pytest.raises(ImageError, match="no such file") as err:
        load_label_images(table)
    assert one_line_naming(err, missing)


def test_load_label_frames_from_video(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (30, 24, 32), dtype=np.uint8)
    video = write_video(tmp_path / "v.mkv", frames, 30, lossless=True)
    table = LabelTable([7, 2, 29, 7], ["a"], random_keypoints(4, 1))
    np.testing.assert_array_equal(load_label_frames(table, video), frames[[7, 2, 29, 7]])
    np.testing.assert_array_equal(read_frames(video, [7]), frames[[7]])
    with pytest.raises(ValueError, match="load_label_frames"):
        load_label_images(table)


def test_read_keypoints_rejects_unknown_type(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{}")
    with pytest.raises(KeypointFileError, match="unknown keypoint file type") as err:
        read_keypoints(path)
    assert one_line_naming(err, path)


def test_validate_bodyparts(tmp_path):
    validate_bodyparts(["eye(top)", "paw"], FACEMAP_BODYPARTS, tmp_path / "a.csv")
    with pytest.raises(KeypointFileError) as err:
        validate_bodyparts(["eye(top)", "tail", "ear"], FACEMAP_BODYPARTS, tmp_path / "a.csv")
    assert one_line_naming(err, tmp_path / "a.csv")
    assert "'tail'" in str(err.value) and "'ear'" in str(err.value)
    assert "'eye(top)'" not in str(err.value).split(";")[0]


def test_non_utf8_csv_is_read(tmp_path):
    from jfacemap.io.keypoints import read_dlc_csv

    text = "scorer,caf\xe9,caf\xe9\nbodyparts,nose,nose\ncoords,x,y\nimg0.png,1.5,2.5\n"
    path = tmp_path / "labels.csv"
    path.write_bytes(text.encode("latin-1"))
    table = read_dlc_csv(path)
    assert table.scorer == "caf\xe9" and table.keypoints[0, 0, :2].tolist() == [1.5, 2.5]


def test_mirror_permutation_pairs_left_and_right_by_name():
    from jfacemap.skeleton import FACEMAP_BODYPARTS, mirror_permutation

    # DeepLabCut-style names (the mirror-mouse labels): digits differ between partners
    names = ["paw1LH_top", "paw2LF_top", "paw3RF_top", "paw4RH_top", "nose_top", "obsLow_bot", "obsHigh_bot"]
    assert mirror_permutation(names) == (3, 2, 1, 0, 4, 5, 6)
    assert mirror_permutation(["leftEar", "rightEar", "ear_l", "ear_r", "bright", "eye_L", "eye_R"]) == (
        1, 0, 3, 2, 4, 6, 5)
    # a name with two candidate partners stays unpaired; the face has no pairs
    assert mirror_permutation(["paw_L", "paw_R", "paw_R2"]) == (0, 1, 2)
    assert mirror_permutation(FACEMAP_BODYPARTS) == tuple(range(len(FACEMAP_BODYPARTS)))
