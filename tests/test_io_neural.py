"""Reading neural recordings: .npz, bare .npy, Suite2p folders (restricted unpickling), clear errors."""

import os

import numpy as np
import pytest

from jfacemap.io.neural import NeuralFileError, load_object_npy, read_neural


def _spks(n=6, t=40, seed=0):
    return np.random.default_rng(seed).normal(size=(n, t)).astype(np.float32)


def test_npz_with_positions_and_timestamps(tmp_path):
    spks, path = _spks(), tmp_path / "rec.npz"
    times = 0.5 + np.arange(40) / 3.0
    np.savez(path, spks=spks, xpos=np.arange(6) * 10.0, ypos=np.arange(6) * 20.0, timestamps=times)
    data = read_neural(path)
    np.testing.assert_array_equal(data.spks, spks)
    np.testing.assert_array_equal(data.xpos, np.arange(6) * 10.0)
    np.testing.assert_array_equal(data.timestamps, times)
    assert (data.n_neurons, data.n_frames) == (6, 40)


def test_bare_npy(tmp_path):
    spks, path = _spks(), tmp_path / "spks_plain.npy"
    np.save(path, spks.astype(np.float64))
    data = read_neural(path)
    assert data.spks.dtype == np.float32 and data.xpos is None and data.timestamps is None
    np.testing.assert_allclose(data.spks, spks)


def _suite2p(folder, n=5, t=30, iscell=None):
    folder.mkdir()
    np.save(folder / "spks.npy", _spks(n, t))
    stat = np.empty(n, dtype=object)
    for i in range(n):
        stat[i] = {"med": np.array([10 + i, 100 + 2 * i]), "npix": np.int64(30), "radius": np.float64(4.5),
                   "ypix": np.arange(3), "xpix": np.arange(3)}
    np.save(folder / "stat.npy", stat, allow_pickle=True)
    if iscell is not None:
        np.save(folder / "iscell.npy", np.stack([iscell, np.full(n, 0.9)], axis=1).astype(np.float64))
    return folder


def test_suite2p_folder_positions_from_roi_medians_and_iscell(tmp_path):
    folder = _suite2p(tmp_path / "plane0", iscell=np.array([1, 0, 1, 1, 0.0]))
    data = read_neural(folder, um_per_pixel=2.0)
    keep = [0, 2, 3]
    np.testing.assert_array_equal(data.spks, np.load(folder / "spks.npy")[keep])
    np.testing.assert_array_equal(data.xpos, 2.0 * (100 + 2 * np.array(keep)))
    np.testing.assert_array_equal(data.ypos, 2.0 * (10 + np.array(keep)))
    # the spks.npy path with stat.npy beside it reads as the same recording
    np.testing.assert_array_equal(read_neural(folder / "spks.npy", um_per_pixel=2.0).xpos, data.xpos)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_object_npy_with_code_is_refused(tmp_path):
    path = tmp_path / "stat.npy"
    evil = np.empty(1, dtype=object)
    evil[0] = _Evil()
    np.save(path, evil, allow_pickle=True)
    with pytest.raises(NeuralFileError, match="refusing to load"):
        load_object_npy(path)
    # and a pickled dict of arrays does round-trip
    ok = np.empty(2, dtype=object)
    ok[0], ok[1] = {"med": np.array([1, 2])}, {"med": np.array([3.0, 4.0])}
    np.save(path, ok, allow_pickle=True)
    back = load_object_npy(path)
    np.testing.assert_array_equal(back[1]["med"], [3.0, 4.0])


@pytest.mark.parametrize("arrays, message", [
    ({"spks": np.zeros((3, 10)), "xpos": np.zeros(4), "ypos": np.zeros(3)}, "xpos has 4 values but spks has 3 neurons"),
    ({"spks": np.zeros((3, 10)), "timestamps": np.arange(9.0)}, r"timestamps: 9 timestamps, need one per frame of spks \(10\)"),
    ({"spks": np.zeros((3, 10)), "timestamps": np.zeros(10)}, "timestamps is not strictly increasing"),
    ({"spks": np.zeros((3, 10)), "xpos": np.zeros(3)}, "xpos without the other"),
    ({"spks": np.zeros(10)}, "must be 2-D"),
    ({"activity": np.zeros((3, 10))}, "no 'spks' array"),
    ({"spks": np.where(np.eye(3, 10) > 0, np.nan, 0.0)}, "3 NaN/inf values in spks"),
])
def test_bad_npz_one_line_errors(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(NeuralFileError, match=message) as info:
        read_neural(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(NeuralFileError, match="no such file"):
        read_neural(tmp_path / "nothing.npz")
    (tmp_path / "rec.mat").write_bytes(b"x")
    with pytest.raises(NeuralFileError, match="unknown neural file type .mat"):
        read_neural(tmp_path / "rec.mat")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(NeuralFileError, match="cannot read it as .npz"):
        read_neural(tmp_path / "junk.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NeuralFileError, match="without spks.npy"):
        read_neural(tmp_path / "empty")
