"""DeepLabCut .h5 read without pandas: real pandas-written fixtures against pandas' own CSV of them.

tests/data/dlc/*.h5 were written by pandas (tests/data/dlc/make_fixtures.py, run
in a scratch venv; pandas is no dependency of jfacemap) together with the
DataFrame's `to_csv`, which `read_dlc_csv` reads as the independent reference.
"""

import os
import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from jfacemap.io.dlc_h5 import is_pandas_h5, read_dlc_h5
from jfacemap.io.images import write_png
from jfacemap.io.keypoints import KeypointFileError, read_dlc_csv, read_keypoints, write_facemap_pose

DATA = Path(__file__).parent / "data" / "dlc"
SINGLE = ["labels_table", "labels_fixed", "labels_multiindex", "predictions_table", "predictions_fixed"]


@pytest.mark.parametrize("name", SINGLE)
def test_h5_matches_the_csv_pandas_wrote(name):
    table, reference = read_dlc_h5(DATA / f"{name}.h5"), read_dlc_csv(DATA / f"{name}.csv")
    assert table.index == reference.index
    assert table.bodyparts == reference.bodyparts == ["eye(back)", "nose(tip)", "whisker(I)"]
    assert table.scorer == reference.scorer == "Jos\u00e9"
    assert table.with_likelihood == reference.with_likelihood == name.startswith("predictions")
    assert table.keypoints.dtype == np.float64 and table.keypoints.shape == reference.keypoints.shape
    np.testing.assert_array_equal(table.keypoints, reference.keypoints)  # NaNs in the same places
    assert np.isnan(table.keypoints).any()
    assert table.source == DATA / f"{name}.h5"


def test_index_kinds():
    labels = read_dlc_h5(DATA / "labels_multiindex.h5")  # (labeled-data, session1, img) joined
    assert labels.index[0] == "labeled-data/session1/img000.png" and labels.frame_indices() is None
    predictions = read_dlc_h5(DATA / "predictions_table.h5")
    assert predictions.frame_indices() == list(range(6))
    # labels without likelihood: 1 where labelled, NaN where not (as the CSV reader)
    kp = read_dlc_h5(DATA / "labels_fixed.h5").keypoints
    labelled = np.isfinite(kp[..., :2]).all(-1)
    assert not labelled.all()
    np.testing.assert_array_equal(kp[..., 2], np.where(labelled, 1.0, np.nan))


def test_multi_animal_is_refused_in_one_line():
    with pytest.raises(KeypointFileError, match=r"multi_animal\.h5: multi-animal .*individuals") as info:
        read_dlc_h5(DATA / "multi_animal.h5")
    assert "\n" not in str(info.value)


def test_other_h5_layouts_are_refused(tmp_path):
    facemap = write_facemap_pose(tmp_path / "a_FacemapPose.h5", np.zeros((2, 1, 3)), ["nose"])
    assert not is_pandas_h5(facemap) and is_pandas_h5(DATA / "labels_table.h5")
    with pytest.raises(KeypointFileError, match=r"a_FacemapPose\.h5: no pandas DataFrame .*Facemap"):
        read_dlc_h5(facemap)
    random = tmp_path / "random.h5"
    with h5py.File(random, "w") as f:
        f["x"] = np.arange(3)
        f.create_group("df_with_missing").attrs["pandas_type"] = "series"
    with pytest.raises(KeypointFileError, match=r"random\.h5: .*pandas 'series'; expected a DataFrame"):
        read_dlc_h5(random)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(KeypointFileError, match=r"text\.h5: not an HDF5 file"):
        read_dlc_h5(tmp_path / "text.h5")
    # a table whose data blocks lack a column the column labels name
    broken = shutil.copy(DATA / "labels_table.h5", tmp_path / "broken.h5")
    with h5py.File(broken, "a") as f:
        f["df_with_missing/table"].attrs["values_block_0_kind"] = np.bytes_(b"(lp0\n(Va\nVb\nVx\ntp1\na.")
    with pytest.raises(KeypointFileError, match=r"broken\.h5: table field values_block_0 has 6 columns"):
        read_dlc_h5(broken)


class _RunsShell:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("protocol", [0, 4])  # PyTables writes protocol 0; a crafted file may use any
def test_pickled_metadata_cannot_run_code(tmp_path, protocol):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_RunsShell(f"touch {marker}"), protocol=protocol)
    assert b"system" in payload  # the payload really imports os.system (not run here)
    evil = shutil.copy(DATA / "labels_table.h5", tmp_path / "evil.h5")
    with h5py.File(evil, "a") as f:
        f["df_with_missing"].attrs["non_index_axes"] = np.bytes_(payload)
    with pytest.raises(KeypointFileError, match=r"evil\.h5: cannot read attribute .*non_index_axes safely "
                                                r".*refusing to load (os|posix|nt)\.system"):
        read_dlc_h5(evil)
    assert not marker.exists()


def test_read_keypoints_tells_dlc_from_facemap_h5(tmp_path):
    keypoints, bodyparts = read_keypoints(DATA / "predictions_table.h5")
    reference = read_dlc_csv(DATA / "predictions_table.csv")
    assert keypoints.dtype == np.float32 and bodyparts == reference.bodyparts
    np.testing.assert_array_equal(keypoints, reference.keypoints.astype(np.float32))
    facemap = write_facemap_pose(tmp_path / "v_FacemapPose.h5", np.ones((3, 1, 3)), ["nose"])
    assert read_keypoints(facemap)[1] == ["nose"]


def test_load_labelled_frames_reads_dlc_h5_with_its_images(tmp_path):
    from jfacemap.track.labels import load_labelled_frames

    folder = tmp_path / "labeled-data" / "session1"  # DLC project layout; paths relative to tmp_path
    folder.mkdir(parents=True)
    labels = shutil.copy(DATA / "labels_multiindex.h5", folder / "CollectedData_Jose.h5")
    reference = read_dlc_csv(DATA / "labels_multiindex.csv")
    for i, name in enumerate(reference.index):
        write_png(tmp_path / name, np.full((6, 5), 10 * i, np.uint8))
    images, keypoints, bodyparts, table = load_labelled_frames(labels)
    assert images.shape == (4, 6, 5) and list(images[:, 0, 0]) == [0, 10, 20, 30]
    assert bodyparts == reference.bodyparts and table.index == reference.index
    np.testing.assert_array_equal(keypoints, reference.keypoints.astype(np.float32))


def test_load_labelled_frames_points_to_the_csv_when_h5_is_unreadable(tmp_path):
    from jfacemap.track.labels import LabelError, load_labelled_frames

    labels = shutil.copy(DATA / "multi_animal.h5", tmp_path / "CollectedData_x.h5")
    with pytest.raises(LabelError, match=r"multi-animal .*not supported$"):
        load_labelled_frames(labels)
    shutil.copy(DATA / "multi_animal.csv", tmp_path / "CollectedData_x.csv")
    with pytest.raises(LabelError, match=r"multi-animal .*the CSV beside it .*CollectedData_x\.csv"):
        load_labelled_frames(labels)


def test_read_behavior_reads_dlc_predictions_h5():
    from jfacemap.io.behavior import read_behavior

    behavior = read_behavior(DATA / "predictions_fixed.h5", fps=50.0)
    reference = read_behavior(DATA / "predictions_fixed.csv", fps=50.0)
    assert behavior.kind == "keypoints" and behavior.names == reference.names
    assert behavior.values.shape == (6, 6)
    np.testing.assert_array_equal(behavior.values, reference.values)
    np.testing.assert_allclose(behavior.times, np.arange(6) / 50.0)
    # where the file has the value, it is the raw x/y (NaN gaps are interpolated)
    raw = read_dlc_csv(DATA / "predictions_fixed.csv").keypoints[..., :2].reshape(6, -1)
    have = np.isfinite(raw)
    np.testing.assert_allclose(behavior.values[have], raw[have].astype(np.float32))
