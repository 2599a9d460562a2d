"""Simulated neurons: shapes, clocks, exact ground truth, and the linear/non-linear gap it promises."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

import jfacemap.synth.neural as neural
from jfacemap.skeleton import ANALYSIS_BODYPARTS, FACEMAP_BODYPARTS
from jfacemap.synth import ground_truth_ve, make_session, simulate_neural

N_NEURONS, DURATION, SEED = 300, 1800.0, 3  # 30 min: enough frames for split-half fits


@pytest.fixture(scope="module")
def sim():
    return simulate_neural(N_NEURONS, DURATION, seed=SEED)


@pytest.fixture(scope="module")
def linear_sim():
    return simulate_neural(N_NEURONS, DURATION, seed=SEED, linear=True)


def smoothed_coordinates_at_neural_times(sim) -> np.ndarray:
    """The linear baseline's input, computed here from the raw keypoints: (n_frames, 22)."""
    parts = [FACEMAP_BODYPARTS.index(p) for p in ANALYSIS_BODYPARTS]
    xy = sim.keypoints[:, parts, :2].astype(np.float64).reshape(len(sim.keypoints), -1)
    frames = np.arange(len(xy))
    for j in range(xy.shape[1]):
        ok = ~np.isnan(xy[:, j])
        xy[:, j] = np.interp(frames, frames[ok], xy[ok, j])
    fps = 1.0 / np.median(np.diff(sim.behavior_times))
    smooth = gaussian_filter1d(xy, 0.1 * fps, axis=0)  # 100 ms Gaussian
    return np.stack([np.interp(sim.neural_times, sim.behavior_times, c) for c in smooth.T], axis=1)


def split_half_ve(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """Fit y ~ x (+ intercept) on the first half, return per-column test VE on the second half."""
    half = len(x) // 2
    mu, sd = x[:half].mean(0), x[:half].std(0) + 1e-12
    design = np.c_[(x - mu) / sd, np.ones(len(x))]
    gram = design[:half].T @ design[:half] + ridge * np.eye(design.shape[1])
    coef = np.linalg.solve(gram, design[:half].T @ y[:half])
    err = y[half:] - design[half:] @ coef
    return 1.0 - (err**2).mean(0) / y[half:].var(0)


def test_shapes_dtypes_positions(sim):
    n_frames = int(round(DURATION * 3.0))
    assert sim.spks.shape == (N_NEURONS, n_frames) and sim.spks.dtype == np.float32
    assert np.isfinite(sim.spks).all()
    for v in (sim.xpos, sim.ypos):
        assert v.shape == (N_NEURONS,) and v.min() >= 0.0 and v.max() <= 1200.0
        assert v.max() - v.min() > 1000.0  # neurons fill the field
    m = len(sim.factor_names)
    assert sim.factors.shape == (m, n_frames) and sim.factor_loadings.shape == (N_NEURONS, m)
    assert sim.latents.shape[1] == n_frames and sim.latent_loadings.shape == (N_NEURONS, len(sim.latents))
    np.testing.assert_allclose(sim.factors.mean(1), 0.0, atol=1e-5)
    np.testing.assert_allclose(sim.factors.std(1), 1.0, rtol=1e-4)
    assert sim.keypoints.shape == (len(sim.behavior_times), 15, 3) and sim.bodyparts == FACEMAP_BODYPARTS


def test_clocks_and_behavior(sim):
    t, bt = sim.neural_times, sim.behavior_times
    assert np.all(np.diff(t) > 0) and abs(np.median(np.diff(t)) - 1 / 3.0) < 1e-3
    np.testing.assert_allclose(np.diff(bt), 1 / 50.0, rtol=1e-9)
    assert bt[0] + 2.0 <= t[0] and t[-1] + 2.0 <= bt[-1]  # behaviour covers the kernels' 2 s
    # the behaviour is the session of the same seed, so its video can be rendered
    session = make_session(len(bt), seed=SEED)
    np.testing.assert_array_equal(session.keypoints(), sim.keypoints)


def test_deterministic_per_seed():
    a = simulate_neural(60, 120.0, seed=5)
    b = simulate_neural(60, 120.0, seed=5)
    c = simulate_neural(60, 120.0, seed=6)
    np.testing.assert_array_equal(a.spks, b.spks)
    np.testing.assert_array_equal(a.xpos, b.xpos)
    np.testing.assert_array_equal(a.neural_times, b.neural_times)
    assert not np.allclose(a.spks, c.spks)


def test_ground_truth_equals_numpy_recomputation(sim):
    a, f = sim.factor_loadings.astype(np.float64), sim.factors.astype(np.float64)
    c, z = sim.latent_loadings.astype(np.float64), sim.latents.astype(np.float64)
    y = sim.spks.astype(np.float64)
    b, s = a @ f, c @ z
    np.testing.assert_allclose(sim.behavior_drive(), b, rtol=1e-12)
    np.testing.assert_allclose(sim.best_ve, b.var(1) / y.var(1), rtol=1e-6)
    np.testing.assert_allclose(sim.explainable_ve, (b + s).var(1) / y.var(1), rtol=1e-6)
    # the parts are what spks is made of: the remainder is private noise of the stated size,
    # uncorrelated with the factors and latents
    noise = y - sim.baseline[:, None] - b - s
    np.testing.assert_allclose(noise.std(1), sim.noise_sd, rtol=1e-3)
    regressors = np.vstack([f, z])
    corr = (noise - noise.mean(1, keepdims=True)) @ regressors.T / len(f[0]) / noise.std(1)[:, None]
    assert np.abs(corr).max() < 1e-3
    # on a subset of frames, as the test set of an encoder would be
    idx = np.arange(sim.n_frames)[1::3]
    truth = ground_truth_ve(sim, idx)
    np.testing.assert_allclose(truth["best_ve"], b[:, idx].var(1) / y[:, idx].var(1), rtol=1e-6)
    np.testing.assert_allclose(truth["explainable_ve"], (b + s)[:, idx].var(1) / y[:, idx].var(1), rtol=1e-6)


def test_variance_budget(sim):
    best, expl = sim.best_ve, sim.explainable_ve
    assert np.all(best >= 0) and np.all(best <= expl + 1e-6) and np.all(expl <= 1.0)
    assert 0.1 <= expl.mean() <= 0.3
    assert 0.5 * expl.mean() < best.mean() < expl.mean()  # behaviour is the larger share


def test_oracle_reaches_best_and_linear_model_falls_short(sim):
    y = sim.spks.T.astype(np.float64)
    truth = ground_truth_ve(sim, np.arange(sim.n_frames // 2, sim.n_frames))  # the test half
    test_best, test_explainable = truth["best_ve"], truth["explainable_ve"]
    oracle = split_half_ve(sim.factors.T.astype(np.float64), y, ridge=1e-6)
    assert 0.85 * test_best.mean() < oracle.mean() < test_best.mean() + 0.005
    assert np.corrcoef(oracle, test_best)[0, 1] > 0.95
    # adding the shared latents (known only to the simulator) reaches the explainable variance
    oracle_all = split_half_ve(np.vstack([sim.factors, sim.latents]).T.astype(np.float64), y, ridge=1e-6)
    assert 0.88 * test_explainable.mean() < oracle_all.mean() < test_explainable.mean() + 0.005
    linear = split_half_ve(smoothed_coordinates_at_neural_times(sim), y, ridge=1.0)
    assert linear.mean() < 0.5 * oracle.mean()


def test_linear_simulation_is_reached_by_a_linear_model(linear_sim):
    sim = linear_sim
    y = sim.spks.T.astype(np.float64)
    test_best = ground_truth_ve(sim, np.arange(sim.n_frames // 2, sim.n_frames))["best_ve"]
    oracle = split_half_ve(sim.factors.T.astype(np.float64), y, ridge=1e-6)
    linear = split_half_ve(smoothed_coordinates_at_neural_times(sim), y, ridge=1.0)
    assert linear.mean() > 0.9 * oracle.mean()
    assert linear.mean() > 0.75 * test_best.mean()


def test_tuning_is_local_in_space(sim):
    unit = sim.factor_loadings / np.linalg.norm(sim.factor_loadings, axis=1, keepdims=True)
    similarity = unit @ unit.T
    dist = np.hypot(sim.xpos[:, None] - sim.xpos[None], sim.ypos[:, None] - sim.ypos[None])
    off_diagonal = ~np.eye(len(dist), dtype=bool)
    near = similarity[(dist < 100) & off_diagonal].mean()
    far = similarity[dist > 500].mean()
    assert near > 0.3 and far < 0.1


def test_chunked_memmap_equals_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(neural, "_BLOCK", 64)  # 150 neurons -> 3 blocks
    in_memory = simulate_neural(150, 120.0, seed=2)
    path = tmp_path / "spks.npy"
    streamed = simulate_neural(150, 120.0, seed=2, out=path)
    assert isinstance(streamed.spks, np.memmap)
    np.testing.assert_array_equal(np.load(path), in_memory.spks)
    np.testing.assert_array_equal(streamed.best_ve, in_memory.best_ve)
    truth = ground_truth_ve(streamed)  # streamed over blocks from the memmap
    np.testing.assert_allclose(truth["best_ve"], in_memory.best_ve, rtol=1e-9)
    np.testing.assert_allclose(truth["explainable_ve"], in_memory.explainable_ve, rtol=1e-9)


def test_without_latents_explainable_is_behavior():
    sim = simulate_neural(40, 120.0, seed=1, n_latents=0)
    assert sim.latents.shape == (0, sim.n_frames)
    np.testing.assert_allclose(sim.explainable_ve, sim.best_ve, rtol=1e-9)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_neurons=0),
        dict(duration_s=5.0),
        dict(seed=-1),
        dict(neural_fps=0.0),
        dict(neural_fps=30.0),  # above video_fps / 2
        dict(video_fps=10.0),
        dict(n_latents=-1),
        dict(field_um=0.0),
    ],
)
def test_bad_arguments(kwargs):
    args = dict(n_neurons=10, duration_s=60.0) | kwargs
    with pytest.raises(ValueError):
        simulate_neural(**args)


@pytest.mark.parametrize("time_idx", [np.array([3]), np.array([0, 10**6]), np.ones(5, bool)])
def test_bad_time_idx(time_idx):
    sim = simulate_neural(10, 60.0, seed=0)
    with pytest.raises(ValueError):
        ground_truth_ve(sim, time_idx)
