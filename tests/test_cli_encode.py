"""`jfacemap encode` end to end through a real subprocess: outputs on disk, one-line errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jfacemap.io.keypoints import write_facemap_pose
from jfacemap.synth.neural import simulate_neural

ENV = os.environ | {"OPENBLAS_NUM_THREADS": "1"}


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jfacemap.cli.app", "encode", *map(str, args)],
                          capture_output=True, text=True, timeout=600, env=ENV)


def one_line_error(result) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jfacemap: error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    sim = simulate_neural(n_neurons=300, duration_s=900, seed=5)
    np.savez(root / "neural.npz", spks=sim.spks, xpos=sim.xpos, ypos=sim.ypos, timestamps=sim.neural_times)
    np.save(root / "spks.npy", sim.spks)
    np.save(root / "neural_times.npy", sim.neural_times)
    write_facemap_pose(root / "cam_FacemapPose.h5", sim.keypoints, sim.bodyparts)
    np.save(root / "cam_times.npy", sim.behavior_times)
    return root, sim


def test_both_models_write_every_output(recording, tmp_path):
    root, sim = recording
    out = tmp_path / "enc"
    result = run_cli("--neural", root / "neural.npz", "--behavior", root / "cam_FacemapPose.h5",
                     "--behavior-times", root / "cam_times.npy", "--out", out, "--epochs", 3)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    for key in ("explainable_ve", "ve_linear", "ve_deep", "normalized_ve_linear", "normalized_ve_deep"):
        assert np.isfinite(summary[key]), key
    assert "normalised VE, deep" in result.stdout
    with np.load(out / "per_neuron.npz") as z:
        assert z["ve_linear"].shape == (300,) and z["explainable_ve"].shape == (300,)
        assert np.nanmean(z["ve_linear"]) == pytest.approx(summary["ve_linear"])
    with np.load(out / "predictions.npz") as z:
        assert z["deep"].shape == z["linear"].shape == (sim.n_frames, 128)
        assert len(z["test_idx"]) == summary["n_test"]
    with np.load(out / "features.npz") as z:
        assert z["features"].shape == (len(sim.behavior_times), 256)
        assert z["features_neural"].shape == (sim.n_frames, 256)
    assert (out / "encoder" / "model.json").exists()
    with np.load(out / "clusters.npz") as z:  # 100 clusters capped at neurons / 10
        assert z["labels"].shape == (300,) and z["r_deep"].shape == z["locality"].shape == (30,)
    assert "cluster prediction r, deep" in result.stdout
    assert not [p for p in out.iterdir() if "partial" in p.name]


def test_bare_npy_needs_a_neural_rate_and_has_no_peer_prediction(recording, tmp_path):
    root, sim = recording
    args = ("--neural", root / "spks.npy", "--behavior", root / "cam_FacemapPose.h5",
            "--behavior-times", root / "cam_times.npy", "--model", "linear", "--out", tmp_path / "o", "--clusters", "5")
    assert "--neural-fps" in one_line_error(run_cli(*args))
    result = run_cli(*args, "--neural-times", root / "neural_times.npy")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert "explainable_ve" not in summary and summary["ve_linear"] > 0
    assert "peer prediction" in result.stderr


def test_errors_are_one_line(recording, tmp_path):
    root, sim = recording
    beh = ("--behavior", root / "cam_FacemapPose.h5")
    line = one_line_error(run_cli("--neural", root / "neural.npz", *beh, "--fps", 50, "--out", tmp_path / "x"))
    assert "does not cover the neural recording" in line  # frame-rate clock starts at 0, neural at 4 s + ...
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
    bad = sim.spks.copy()
    bad[3, 7] = np.nan
    np.savez(tmp_path / "nan.npz", spks=bad, timestamps=sim.neural_times)
    assert "nan.npz: 1 NaN/inf values in spks" in one_line_error(run_cli("--neural", tmp_path / "nan.npz", *beh,
                                                                         "--behavior-times", root / "cam_times.npy"))
    assert "no timestamps" in one_line_error(run_cli("--neural", root / "neural.npz", *beh))
    assert "--model must be" in one_line_error(run_cli("--neural", root / "neural.npz", *beh, "--fps", 50,
                                                       "--model", "svm"))
