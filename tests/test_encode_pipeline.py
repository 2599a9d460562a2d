"""encode_recording end to end on simulated recordings, checked against the simulator's ground truth."""

import numpy as np
import pytest

from jfacemap.encode.pipeline import encode_recording
from jfacemap.io.behavior import keypoint_coordinates
from jfacemap.synth.neural import ground_truth_ve, simulate_neural


@pytest.fixture(scope="module")
def linear_sim():
    return simulate_neural(n_neurons=600, duration_s=1800, seed=3, linear=True)


def _inputs(sim):
    x, _ = keypoint_coordinates(sim.keypoints, sim.bodyparts)
    return x


def test_linear_model_reaches_the_best_value_on_a_linear_simulation(linear_sim):
    sim = linear_sim
    result = encode_recording(sim.spks, sim.neural_times, _inputs(sim), sim.behavior_times,
                              xpos=sim.xpos, ypos=sim.ypos, models=["linear"], n_clusters=8)
    truth = ground_truth_ve(sim, result.split.test_idx)
    s = result.summary
    assert set(s) >= {"ve_linear", "explainable_ve", "normalized_ve_linear", "n_test", "rrr_rank"}
    assert s["rrr_rank"] == 21 and result.U.shape == (600, 128)
    best = truth["best_ve"].mean()
    assert 0.85 * best < s["ve_linear"] < 1.05 * best, (s["ve_linear"], best)
    # peer prediction against the true explainable variance (600 neurons: a loose bound)
    assert abs(s["explainable_ve"] / truth["explainable_ve"].mean() - 1) < 0.25
    per_neuron = np.corrcoef(result.ve["linear"], truth["best_ve"])[0, 1]
    assert per_neuron > 0.8
    # clusters average the private noise away: their predictions follow them closely; they sit in patches
    c = result.clusters
    assert c["labels"].shape == (600,) and c["r_linear"].shape == (8,) and c["sizes"].sum() == 600
    assert s["cluster_r_linear"] > 0.6 and s["cluster_locality"] > 0.5  # random labels: ~0.2 (sampling noise)
    assert s["normalized_ve_linear"] == pytest.approx(np.nanmean(result.ve["linear"]) / np.nanmean(result.explainable_ve))
    # the cumulative VE across PCs ends at the pooled VE of the predicted activity
    test = result.split.test_idx
    z = (sim.spks - sim.spks.mean(1, keepdims=True)) / sim.spks.std(1, keepdims=True)
    pred = result.U @ result.predictions["linear"][test].T
    zt = z[:, test]
    pooled = 1 - ((zt - pred) ** 2).sum() / ((zt - zt.mean(1, keepdims=True)) ** 2).sum()
    assert result.cumulative_ve["linear"][-1] == pytest.approx(pooled, abs=0.01)


def test_deep_model_trains_and_predicts_every_frame(linear_sim):
    sim = linear_sim
    result = encode_recording(sim.spks, sim.neural_times, _inputs(sim), sim.behavior_times,
                              models=["deep"], deep_overrides={"epochs": 40, "lr_tail": ((10, 0.1),)})
    assert result.predictions["deep"].shape == (sim.n_frames, 128)
    assert len(result.deep_history) == 40 and result.deep_history[-1]["train_loss"] < result.deep_history[0]["train_loss"]
    assert result.summary["ve_deep"] > 0.3 * ground_truth_ve(sim, result.split.test_idx)["best_ve"].mean()
    assert "explainable_ve" not in result.summary  # no positions: no peer prediction


def test_bad_inputs(linear_sim):
    sim = linear_sim
    x = _inputs(sim)
    with pytest.raises(ValueError, match="does not cover the neural recording"):
        encode_recording(sim.spks, sim.neural_times + 1e4, x, sim.behavior_times)
    with pytest.raises(ValueError, match="neural times: .* timestamps, need one per neural frame"):
        encode_recording(sim.spks[:, :-1], sim.neural_times, x, sim.behavior_times)
    bad = x.copy()
    bad[5, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        encode_recording(sim.spks, sim.neural_times, bad, sim.behavior_times)
    with pytest.raises(ValueError, match="models must be"):
        encode_recording(sim.spks, sim.neural_times, x, sim.behavior_times, models=["svm"])
