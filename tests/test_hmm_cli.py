"""`jfacemap hmm` and the demo's HMM stage: files on disk checked against float64 numpy references."""

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from scipy.special import logsumexp
from typer.testing import CliRunner

from jfacemap.cli import hmm as hmm_cli
from jfacemap.cli import demo as demo_cli
from jfacemap.cli.demo import report_hmm
from jfacemap.cli.report import Report
from jfacemap.errors import JfacemapError
from jfacemap.hmm.controls import planted_sequence_transitions, sample_markov_chain
from jfacemap.hmm.params_file import read_emissions, read_params
from jfacemap.io.keypoints import write_facemap_pose
from jfacemap.skeleton import FACEMAP_BODYPARTS

K, D, FACTOR, FPS = 4, 6, 10, 50.0
FIGURES = ("hmm_transitions.png", "hmm_states.png", "hmm_lifetimes.png", "hmm_sequences.png", "hmm_sample.png")

app = typer.Typer(pretty_exceptions_enable=False)
app.command("hmm")(hmm_cli.hmm)


@app.callback()
def _group() -> None:
    """Keeps `hmm` a subcommand, as in the real app."""


def run(*args):
    return CliRunner().invoke(app, ["hmm", *map(str, args)], catch_exceptions=True)


def sampled_frames(n_steps=200, seed=0):
    """(n_steps * FACTOR, D) frames at 50 Hz from a K-state chain held for FACTOR frames per step."""
    rng = np.random.default_rng(seed)
    states = sample_markov_chain(planted_sequence_transitions(K, p_stay=0.9, forward=(0.7,)), n_steps, seed=seed)
    means = 2.0 * rng.normal(size=(K, D))
    return np.repeat(means[states], FACTOR, axis=0) + rng.normal(size=(n_steps * FACTOR, D))


def numpy_loglik(x, A, init, means, sigma2):
    """float64 log-space forward algorithm: log p(x) in nats."""
    log_em = -0.5 * ((x[:, None] - means[None]) ** 2).sum(-1) / sigma2 - 0.5 * x.shape[1] * np.log(2 * np.pi * sigma2)
    alpha = np.log(init) + log_em[0]
    for t in range(1, len(x)):
        alpha = logsumexp(alpha[:, None] + np.log(A), axis=0) + log_em[t]
    return logsumexp(alpha)


def numpy_viterbi(x, A, init, means, sigma2):
    log_em = -0.5 * ((x[:, None] - means[None]) ** 2).sum(-1) / sigma2
    score, back = np.log(init) + log_em[0], []
    for t in range(1, len(x)):
        cand = score[:, None] + np.log(A)
        back.append(cand.argmax(0))
        score = cand.max(0) + log_em[t]
    path = [int(score.argmax())]
    for pointers in back[::-1]:
        path.append(int(pointers[path[-1]]))
    return np.array(path[::-1])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("hmm")
    x = sampled_frames()
    np.save(root / "x.npy", x.astype(np.float32))
    result = run(root / "x.npy", "--states", K, "--steps", 200, "--control", "--out", root / "out")
    assert result.exit_code == 0, result.output + repr(result.exception)
    return root / "out", x


def test_command_writes_every_file(fitted):
    out, _ = fitted
    for name in ("params.npz", "states.npy", "summary.json", "analysis.json", "analysis.npz", *FIGURES):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.partial*"))  # atomic writes leave no temporaries
    summary = json.loads((out / "summary.json").read_text())
    for key in ("train_loglik", "test_loglik", "n_states", "downsample", "sigma2", "steps", "seconds", "control"):
        assert key in summary, key
    assert (summary["n_states"], summary["downsample"], summary["model_fps"]) == (K, FACTOR, FPS / FACTOR)
    assert summary["n_train_timepoints"] + summary["n_test_timepoints"] == 200
    assert summary["inputs"]["kind"] == "array"


def test_outputs_match_numpy_references(fitted):
    out, x = fitted
    params = np.load(out / "params.npz")
    A, init, means, sigma2 = params["transition_matrix"], params["initial"], params["means"], float(params["sigma2"])
    assert A.shape == (K, K) and means.shape == (K, D)
    np.testing.assert_allclose(A.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(init.sum(), 1.0, atol=1e-6)
    assert sigma2 == pytest.approx(D / 256, rel=1e-6)  # summed variance of z-scored features / 256
    states = np.load(out / "states.npy")
    assert states.shape == (len(x) // FACTOR,) and states.min() >= 0 and states.max() < K

    # Independent preprocessing: block means, z-scored with the training blocks' statistics.
    analysis = np.load(out / "analysis.npz")
    train = analysis["train_mask"]
    xd = x.reshape(-1, FACTOR, D).mean(1)
    z = (xd - xd[train].mean(0)) / xd[train].std(0)
    np.testing.assert_allclose(params["zscore_mean"], xd[train].mean(0), atol=1e-5)
    blocks = np.split(np.arange(len(z)), np.flatnonzero(np.diff(train.astype(int))) + 1)
    test_blocks = [b for b in blocks if not train[b[0]]]
    assert len(test_blocks) == 10 and all(len(b) == 5 for b in test_blocks)
    test_ll = sum(numpy_loglik(z[b], A, init, means, sigma2) for b in test_blocks) / (~train).sum()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_loglik"] == pytest.approx(test_ll, rel=1e-4, abs=1e-4)
    np.testing.assert_array_equal(states, numpy_viterbi(z, A, init, means, sigma2))

    saved = json.loads((out / "analysis.json").read_text())
    np.testing.assert_allclose(saved["lifetimes_s"], (FACTOR / FPS) / (1 - np.diag(A)), rtol=1e-4)
    assert sorted(saved["order"]) == list(range(K))
    # States that persist ~2 s in the data; the time-shuffled control cannot hold them.
    assert summary["lifetime_median_s"] > 2 * summary["control"]["lifetime_median_s"]


def test_params_keep_the_zscore_transform_for_data_units(fitted):
    out, x = fitted
    saved = read_params(out / "params.npz")
    assert saved.zscored and not saved.sigma2_learned and (saved.fps, saved.downsample) == (FPS, FACTOR)
    means, variance, units = read_emissions(out / "params.npz")
    assert units == "data" and means.shape == (K, D) and variance.shape == (D,)
    # In data units (block means of the frames), the model's likelihood is the z-scored one plus the
    # Jacobian: numpy forward on the raw test blocks with the data-unit emissions gives the summary's figure.
    train = np.load(out / "analysis.npz")["train_mask"]
    xd = x.reshape(-1, FACTOR, D).mean(1)
    np.testing.assert_allclose(variance, saved.params.sigma2 * xd[train].std(0) ** 2, rtol=1e-4)
    blocks = np.split(np.arange(len(xd)), np.flatnonzero(np.diff(train.astype(int))) + 1)
    A, init = np.asarray(saved.params.transition_matrix, np.float64), np.asarray(saved.params.initial, np.float64)
    test_ll = sum(numpy_loglik_diagonal(xd[b], A, init, means, variance) for b in blocks if not train[b[0]])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_loglik_data_units"] == pytest.approx(test_ll / (~train).sum(), rel=1e-4)
    assert summary["sigma2_units"] == "z-scored" and summary["zscore"] and not summary["learn_sigma2"]


def numpy_loglik_diagonal(x, A, init, means, variance):
    """float64 log-space forward algorithm with per-feature variances (D,): log p(x) in nats."""
    log_em = -0.5 * ((x[:, None] - means[None]) ** 2 / variance).sum(-1) - 0.5 * np.log(2 * np.pi * variance).sum()
    alpha = np.log(init) + log_em[0]
    for t in range(1, len(x)):
        alpha = logsumexp(alpha[:, None] + np.log(A), axis=0) + log_em[t]
    return logsumexp(alpha)


def test_raw_features_with_a_learned_variance(tmp_path):
    # Unit noise per frame, states held for FACTOR frames: the block means carry noise of variance 1 / FACTOR.
    n_steps = 600
    x = sampled_frames(n_steps, seed=4)
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    result = run(tmp_path / "x.npy", "--states", K, "--no-zscore", "--learn-sigma2", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "learned, data units" in result.output
    saved = read_params(tmp_path / "out" / "params.npz")
    assert not saved.zscored and saved.sigma2_learned and saved.transform.is_identity
    means, variance, units = read_emissions(tmp_path / "out" / "params.npz")
    # ML variance from 450 x 6 residuals: relative SD sqrt(2 / 2700) = 2.7 %; 12 % is ~4 SD.
    np.testing.assert_allclose(variance, 1 / FACTOR, rtol=0.12)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["test_loglik_data_units"] == summary["test_loglik"]  # identity transform
    # Against the true model on the test blocks: a fit pays ~(K D + K^2) / (2 N) = 0.044 nats per
    # timepoint held out for its parameters; margin 3x that. The default z-scored sigma2 (D / 256)
    # would be far off: it is 0.023 z-units, well below the noise's ~0.1 / 2.5 = 0.04.
    rng = np.random.default_rng(4)
    true_means = 2.0 * rng.normal(size=(K, D))
    A_true = planted_sequence_transitions(K, p_stay=0.9, forward=(0.7,))
    train = np.load(tmp_path / "out" / "analysis.npz")["train_mask"]
    xd = x.reshape(-1, FACTOR, D).mean(1)
    blocks = np.split(np.arange(n_steps), np.flatnonzero(np.diff(train.astype(int))) + 1)
    blocks = [b for b in blocks if not train[b[0]]]
    truth = sum(numpy_loglik_diagonal(xd[b], A_true, np.full(K, 1 / K), true_means, np.full(D, 1 / FACTOR))
                for b in blocks) / (~train).sum()
    assert summary["test_loglik"] >= truth - 3 * (K * D + K * K) / (2 * train.sum())


def test_help_gives_the_units_of_sigma2():
    result = CliRunner().invoke(app, ["hmm", "--help"])
    text = " ".join(result.output.replace("\u2502", " ").split())  # help wrapped in a box of "|" lines
    for words in ("z-scored units", "--no-zscore", "--learn-sigma2", "own units squared"):
        assert words in text, words


def test_facemap_pose_input(tmp_path):
    rng = np.random.default_rng(3)
    n = 600
    xy = 100 + np.cumsum(rng.normal(size=(n, len(FACEMAP_BODYPARTS), 2)), axis=0)
    xy[50:60, 2] = np.nan  # an occluded stretch, filled by interpolation
    keypoints = np.concatenate([xy, np.full((n, len(FACEMAP_BODYPARTS), 1), 0.9)], axis=2)
    pose = write_facemap_pose(tmp_path / "cam_FacemapPose.h5", keypoints, FACEMAP_BODYPARTS)
    result = run(pose, "--states", 3, "--steps", 10, "--refine", 0, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output + repr(result.exception)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["inputs"]["kind"] == "keypoints"
    assert summary["n_features"] == 22  # x, y of the 11 analysis bodyparts
    assert summary["sigma2"] == pytest.approx(22 / 256, rel=1e-6)
    assert np.load(tmp_path / "out" / "states.npy").shape == (n // FACTOR,)


def test_encode_folder_and_its_features_file(tmp_path):
    folder = tmp_path / "encode"
    folder.mkdir()
    x = sampled_frames(60, seed=1)
    np.savez(folder / "features.npz", features=x, times=np.arange(len(x)) / 25.0,
             features_neural=x[::8], neural_times=np.arange(len(x))[::8] / 25.0)
    for source in (folder, folder / "features.npz"):
        result = run(source, "--states", 3, "--steps", 5, "--refine", 0, "--out", tmp_path / "out")
        assert result.exit_code == 0, result.output + repr(result.exception)
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert summary["fps"] == pytest.approx(25.0) and summary["model_fps"] == pytest.approx(2.5)
        assert summary["inputs"]["kind"] == "deep features"


def _bad_inputs(root: Path) -> dict[str, Path]:
    x = sampled_frames(40).astype(np.float32)
    with_nan = x.copy()
    with_nan[7, 2] = np.nan
    files = {"nan": with_nan, "few": x[:30], "three_d": x.reshape(40, 10, D), "text": None}
    paths = {}
    for name, value in files.items():
        paths[name] = root / f"{name}.npy"
        if value is not None:
            np.save(paths[name], value)
    paths["text"] = root / "features.txt"
    paths["text"].write_text("1 2 3\n")
    np.savez(root / "two.npz", a=x, b=x)
    paths["two_arrays"] = root / "two.npz"
    paths["missing"] = root / "missing.npy"
    paths["empty_folder"] = root
    return paths


@pytest.mark.parametrize("case, words", [
    ("nan", "non-finite"), ("few", "too few"), ("three_d", "2-D"), ("text", "unknown file type"),
    ("two_arrays", "one 2-D"), ("missing", "no such file"), ("empty_folder", "no features.npz"),
])
def test_bad_inputs_fail_with_one_line_naming_the_file(tmp_path, case, words):
    path = _bad_inputs(tmp_path)[case]
    result = run(path, "--states", 4, "--out", tmp_path / "out")
    assert result.exit_code != 0 and isinstance(result.exception, JfacemapError), result.output
    message = str(result.exception)
    assert "\n" not in message and str(path) in message and words in message, message
    assert not (tmp_path / "out").exists()


def test_bad_options_fail_before_reading(tmp_path):
    result = run(tmp_path / "x.npy", "--states", 1)
    assert isinstance(result.exception, JfacemapError) and "--states" in str(result.exception)
    result = run(tmp_path / "x.npy", "--test-fraction", 1.5)
    assert isinstance(result.exception, JfacemapError) and "--test-fraction" in str(result.exception)
    result = run(tmp_path / "x.npy", "--transition-learning-rate", 0)
    assert isinstance(result.exception, JfacemapError) and "--transition-learning-rate" in str(result.exception)


def test_demo_hmm_report_writes_outputs_and_strict_json(tmp_path):
    from jfacemap.hmm.pipeline import run_hmm

    report = Report(tmp_path)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 256)).astype(np.float32)  # 300 timepoints at 5 Hz
    result = run_hmm(x, 50.0, demo_cli.DEMO_STATES, max_steps=40, refine=1, control=True)
    report_hmm(report, tmp_path, result, "random features")
    title, lines = report.sections[-1]
    numbers = report.numbers["hmm"]
    assert numbers["n_states"] == 20 and np.isfinite(numbers["test_loglik"])
    assert np.isfinite(numbers["control_test_loglik"])
    assert (tmp_path / "hmm" / "summary.json").is_file()
    assert [p.name for p in report.figures] == list(FIGURES)
    json.dumps(report.numbers, allow_nan=False)  # the report's summary.json stays strict JSON
