"""The deep neural encoder: network (jfacemap.nets.encoder), training and prediction (jfacemap.encode.deep)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.ndimage import gaussian_filter1d

from jfacemap.encode.deep import (
    EncoderRecipe,
    Window,
    behavioural_features,
    encoder_recipe,
    load_encoder,
    make_window,
    predict_neural,
    sample_frames,
    sample_positions,
    save_encoder,
    train_encoder,
    window_loss,
)
from jfacemap.nets.encoder import NeuralEncoder, count_params, gabor_bank


def _model(n_in=3, n_out=5, kernel=21, filters=4, hidden=6, feats=8, seed=0) -> NeuralEncoder:
    return NeuralEncoder(n_in, n_out, n_filters=filters, kernel_size=kernel, n_hidden=hidden,
                         n_features=feats, rngs=nnx.Rngs(seed))


def _numpy_features(model: NeuralEncoder, x: np.ndarray) -> np.ndarray:
    """Float64 reference of the core on one sequence x (T, n_in): each mixed
    channel cross-correlated with every filter (np.convolve with the flipped
    kernel, zero-padded 'same'), channel-major order c * n_filters + f."""
    p = {k: np.asarray(v, np.float64) for k, v in {
        "mw": model.mix.kernel[...], "mb": model.mix.bias[...], "w": model.wavelets[...],
        "hw": model.hidden.kernel[...], "hb": model.hidden.bias[...],
        "lw": model.latent.kernel[...], "lb": model.latent.bias[...]}.items()}
    h = x.astype(np.float64) @ p["mw"] + p["mb"]
    conv = np.stack([np.stack([np.convolve(h[:, c], p["w"][::-1, f], mode="same")
                               for f in range(p["w"].shape[1])], -1) for c in range(h.shape[1])], 1)
    a = np.maximum(conv.reshape(len(x), -1), 0)
    a = np.maximum(a @ p["hw"] + p["hb"], 0)
    return np.maximum(a @ p["lw"] + p["lb"], 0)


# ---------------------------------------------------------------- network ---


def test_parameter_shapes_and_count_match_hand_count():
    m = NeuralEncoder(22, 128, rngs=nnx.Rngs(0))
    assert m.mix.kernel.shape == (22, 22) and m.wavelets.shape == (201, 10)
    assert m.hidden.kernel.shape == (220, 50) and m.latent.kernel.shape == (50, 256)
    assert m.out.kernel.shape == (256, 128)
    hand = (22 * 22 + 22) + 201 * 10 + (220 * 50 + 50) + (50 * 256 + 256) + (256 * 128 + 128)
    assert count_params(m) == hand == 59518


def test_gabor_bank_unit_norm_even_and_odd_phases():
    bank = gabor_bank(10, 201)
    np.testing.assert_allclose(np.linalg.norm(bank, axis=0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(bank[:, :5], bank[::-1, :5], atol=1e-6)  # cosine phase: even
    np.testing.assert_allclose(bank[:, 5:], -bank[::-1, 5:], atol=1e-6)  # sine phase: odd
    zero_crossings = (np.diff(np.sign(bank[:, :5]), axis=0) != 0).sum(0)
    assert np.all(np.diff(zero_crossings) >= 0) and zero_crossings[-1] > zero_crossings[0]  # rising frequency
    # frequencies log-spaced from 1 to 40 cycles per kernel (0.25-10 Hz for 201 frames at 50 Hz)
    # (the 1-cycle filter's spectrum peaks at 0: its envelope is wider than its period)
    peaks = [np.argmax(np.abs(np.fft.rfft(bank[:, j], n=201 * 8))) / 8 for j in range(1, 5)]
    np.testing.assert_allclose(peaks, np.geomspace(1, 40, 5)[1:], rtol=0.05)


@pytest.mark.parametrize("kernel", [21, 201])
def test_core_is_shared_same_conv_like_numpy(kernel):
    m = _model(kernel=kernel)
    # random filters so a mix-up of filters, channels or kernel direction shows
    m.wavelets[...] = jnp.asarray(np.random.default_rng(1).standard_normal((kernel, 4)), jnp.float32)
    x = np.random.default_rng(2).standard_normal((2, 260, 3)).astype(np.float32)
    got = np.asarray(m(jnp.asarray(x)))
    for b in range(2):
        np.testing.assert_allclose(got[b], _numpy_features(m, x[b]), rtol=1e-4, atol=1e-4)
    pos = np.array([[0, 1, 100, 259], [5, 130, 250, 258]])
    at = np.asarray(m.features_at(jnp.asarray(x), jnp.asarray(pos)))
    np.testing.assert_allclose(at, got[np.arange(2)[:, None], pos], rtol=1e-5, atol=1e-5)


def test_invalid_frames_act_as_zero_padding():
    m = _model()
    x = np.random.default_rng(3).standard_normal((1, 150, 3)).astype(np.float32)
    padded = np.concatenate([x, 50 * np.ones((1, 40, 3), np.float32)], 1)  # garbage after the end
    valid = np.arange(190)[None] < 150
    got = np.asarray(m(jnp.asarray(padded), jnp.asarray(valid)))[:, :150]
    np.testing.assert_allclose(got, np.asarray(m(jnp.asarray(x))), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------ timestamps ---


def test_sample_frames_last_video_frame_at_or_before():
    xt = np.array([0.0, 0.1, 0.25, 0.3, 0.5])  # irregular clock; median period 0.125
    yt = np.array([0.0, 0.1, 0.29, 0.31, 0.5, 0.6])
    np.testing.assert_array_equal(sample_frames(xt, yt), [0, 1, 2, 3, 4, 4])
    with pytest.raises(ValueError, match="outside the video times"):
        sample_frames(xt, [0.1, 0.7])
    with pytest.raises(ValueError, match="outside the video times"):
        sample_frames(xt, [-0.01, 0.1])


def test_sample_positions_interpolate_between_video_frames():
    xt = np.array([0.0, 0.1, 0.25, 0.3, 0.5])
    frames, frac = sample_positions(xt, [0.0, 0.05, 0.2, 0.3, 0.5, 0.6])
    np.testing.assert_array_equal(frames, [0, 0, 1, 3, 4, 4])
    np.testing.assert_allclose(frac, [0.0, 0.5, 2 / 3, 0.0, 0.0, 0.0], atol=1e-6)


def test_features_at_neural_times_interpolate_the_video_rate_features():
    m = _model()
    rng = np.random.default_rng(4)
    X = rng.standard_normal((400, 3)).astype(np.float32)
    xt = np.cumsum(rng.uniform(0.015, 0.025, 400))  # jittered ~50 Hz
    yt = np.linspace(xt[0] + 0.001, xt[-1] - 0.001, 37)
    full = behavioural_features(m, X)
    # brute force: each feature column interpolated in time at the neural times
    expected = np.stack([np.interp(yt, xt, full[:, j]) for j in range(full.shape[1])], axis=1)
    np.testing.assert_allclose(behavioural_features(m, X, xt, yt), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(predict_neural(m, X, xt, yt),
                               np.asarray(m.readout(jnp.asarray(expected))), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------- windows / loss ---


def _loss_and_grads(model, w: Window):
    graphdef, params = nnx.split(model)
    fn = lambda p: window_loss(nnx.merge(graphdef, p), Window(*map(jnp.asarray, w)))[0]  # noqa: E731
    loss, grads = jax.jit(jax.value_and_grad(fn))(params)
    return float(loss), jax.tree.leaves(grads)


@pytest.mark.parametrize("first", [2, 300])  # at the recording's start (clipped context) and inside it
def test_padding_changes_neither_loss_nor_gradient(first):
    m = _model(kernel=31)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((900, 3)).astype(np.float32)
    frames = np.arange(first, first + 17 * 30, 30)[:17]  # 17 neural frames: bucket pads to 18
    Y = rng.standard_normal((17, 5)).astype(np.float32)
    padded = make_window(X, frames, m.half_width, Y)
    assert len(padded.pos) > 17 and len(padded.x) > frames[-1] - frames[0] + 31
    # exact window by hand: context clipped at the recording start, no bucket padding
    a = max(frames[0] - 15, 0)
    exact = Window(X[a : frames[-1] + 16], np.ones(frames[-1] + 16 - a, bool), (frames - a).astype(np.int32),
                   np.zeros(17, np.float32), Y, np.ones(17, bool))
    loss_p, grads_p = _loss_and_grads(m, padded)
    loss_e, grads_e = _loss_and_grads(m, exact)
    # independent reference: features of the whole recording (float64 numpy) at the frames
    pred = _numpy_features(m, X)[frames] @ np.asarray(m.out.kernel[...], np.float64) + np.asarray(m.out.bias[...])
    w = np.asarray(m.wavelets[...], np.float64)
    reference = np.mean((pred - Y) ** 2) + 0.5 * np.sum(np.diff(w, axis=0) ** 2)
    assert loss_p == pytest.approx(reference, rel=1e-5) and loss_e == pytest.approx(reference, rel=1e-5)
    for gp, ge in zip(grads_p, grads_e):
        np.testing.assert_allclose(gp, ge, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- predict ---


def test_chunked_prediction_equals_one_shot():
    m = _model(kernel=51)
    rng = np.random.default_rng(6)
    X = rng.standard_normal((1000, 3)).astype(np.float32)
    xt = np.arange(1000) / 50.0
    yt = np.arange(0.0, 19.9, 1 / 3)
    one_shot = np.asarray(m(jnp.asarray(X[None])))[0]
    np.testing.assert_allclose(behavioural_features(m, X, chunk=10**6), one_shot, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(behavioural_features(m, X, chunk=37), one_shot, rtol=1e-5, atol=1e-6)
    big = predict_neural(m, X, xt, yt, chunk=10**6)
    np.testing.assert_allclose(predict_neural(m, X, xt, yt, chunk=7), big, rtol=1e-5, atol=1e-6)
    frames, frac = sample_positions(xt, yt)
    between = (1 - frac[:, None]) * one_shot[frames] + frac[:, None] * one_shot[np.minimum(frames + 1, 999)]
    np.testing.assert_allclose(big, np.asarray(m.readout(jnp.asarray(between))), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------- recipe ---


def test_recipe_rules():
    base = EncoderRecipe()
    assert (base.lr, base.weight_decay, base.epochs) == (1e-3, 1e-4, 300)
    cases = {(20000, 7200): (1e-3, 1e-4, 300), (1999, 7200): (1e-4, 1e-5, 300),
             (20000, 3599): (5e-4, 5e-5, 200), (500, 600): (5e-5, 5e-6, 200), (2000, 3600): (1e-3, 1e-4, 300)}
    for (n, secs), want in cases.items():
        r = encoder_recipe(n, secs)
        assert (r.lr, r.weight_decay, r.epochs) == pytest.approx(want), (n, secs)
    assert len(encoder_recipe(500, 600).rules) == 2 and encoder_recipe(20000, 7200).rules == ()
    assert encoder_recipe(500, 600, epochs=3).epochs == 3
    # LR / 10 at 200 and again at 250 of 300; at 100 and 150 of 200
    lrs = [base.lr_at(e) for e in (0, 199, 200, 249, 250, 299)]
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5])
    short = encoder_recipe(20000, 1800)
    assert [short.lr_at(e) for e in (99, 100, 150)] == pytest.approx([5e-4, 5e-5, 5e-6])


def test_train_encoder_applies_rules_when_no_recipe():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((3000, 2)).astype(np.float32)
    Y = rng.standard_normal((180, 2)).astype(np.float32)
    xt, yt = np.arange(3000) / 50.0, np.arange(180) / 3.0
    model = _model(n_in=2, n_out=2)
    _, hist = train_encoder(X, xt, Y, yt, [np.arange(0, 90), np.arange(90, 180)], n_neurons=100,
                            on_epoch=lambda e, row: True, init_model=model)
    assert len(hist) == 1 and hist[0]["lr"] == pytest.approx(5e-5)  # few neurons, 1 min of data
    with pytest.raises(ValueError, match="n_neurons"):
        train_encoder(X, xt, Y, yt, [np.arange(90)], init_model=model)


# ---------------------------------------------------------------- training ---


def test_training_beats_linear_baseline_on_planted_problem():
    rng = np.random.default_rng(1)
    fs, n_in, n_out = 50.0, 4, 6
    X = gaussian_filter1d(rng.standard_normal((int(5 * 60 * fs), n_in)), 3, axis=0)  # 5 min
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    xt = np.arange(len(X)) / fs
    yt = np.arange(0.05, xt[-1], 1 / 3)
    frames = sample_frames(xt, yt)
    band = gaussian_filter1d(X, 5, axis=0) - gaussian_filter1d(X, 15, axis=0)  # ~0.2-0.6 s band
    band /= band.std(0)
    H = np.concatenate([np.maximum(band, 0), np.maximum(-band, 0)], 1)  # rectified both ways
    Y = H[frames] @ rng.standard_normal((2 * n_in, n_out))
    Y += 0.1 * Y.std() * rng.standard_normal(Y.shape)
    Y = ((Y - Y.mean(0)) / Y.std(0)).astype(np.float32)
    segs = np.array_split(np.arange(len(yt)), 10)
    train = [s[: int(0.75 * len(s))] for s in segs]
    test = [s[int(0.75 * len(s)) + 9 :] for s in segs]
    itr, ite = np.concatenate(train), np.concatenate(test)
    # linear baseline: least squares on 100 ms-smoothed X at the neural times, with intercept
    A = np.c_[gaussian_filter1d(X.astype(np.float64), 5, axis=0)[frames], np.ones(len(frames))]
    coef = np.linalg.lstsq(A[itr], Y[itr], rcond=None)[0]
    linear_mse = np.mean((A[ite] @ coef - Y[ite]) ** 2)
    assert 0.3 < linear_mse < 0.9  # the planted problem has a linear part, but not only
    recipe = encoder_recipe(20000, 7200, lr=3e-3, epochs=30, lr_tail=(), eval_every=10)
    model, hist = train_encoder(X, xt, Y, yt, train, recipe, test_segments=test, seed=0)
    deep_mse = np.mean((predict_neural(model, X, xt, yt)[ite] - Y[ite]) ** 2)
    assert deep_mse < 0.25 * linear_mse
    assert [r["epoch"] for r in hist] == list(range(30))
    assert hist[-1]["test_loss"] == pytest.approx(deep_mse, rel=1e-4)
    assert hist[5]["test_loss"] is None and hist[10]["test_loss"] is not None
    assert hist[-1]["train_mse"] < hist[0]["train_mse"]


def test_validation_keeps_the_best_epochs_weights_and_stops_after_patience():
    """Pure-noise targets: the encoder can only overfit, so the validation loss bottoms out early;
    the returned weights are that epoch's (their validation MSE equals the best in the history)."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((9000, 3)).astype(np.float32)
    xt = np.arange(len(X)) / 50.0
    yt = np.arange(0.05, xt[-1], 0.1)
    Y = rng.standard_normal((len(yt), 4)).astype(np.float32)
    segs = np.array_split(np.arange(len(yt)), 10)
    fit = [s[: int(0.7 * len(s))] for s in segs]
    val = [s[int(0.8 * len(s)):] for s in segs]
    recipe = EncoderRecipe(lr=3e-2, epochs=200, lr_tail=(), eval_every=2, patience=10)
    model, hist = train_encoder(X, xt, Y, yt, fit, recipe, init_model=_model(n_out=4), val_segments=val)
    scored = [(r["val_loss"], r["epoch"]) for r in hist if r["val_loss"] is not None]
    best_loss, best_epoch = min(scored)
    assert [r["epoch"] for r in hist if r["best"]][-1] == best_epoch
    assert len(hist) - 1 - best_epoch in range(10, 12), "stops once 10 epochs pass without a better loss"
    assert len(hist) < 200
    v = np.concatenate(val)
    returned = np.mean((predict_neural(model, X, xt, yt)[v] - Y[v]) ** 2)
    assert returned == pytest.approx(best_loss, rel=1e-4)
    assert hist[-1]["val_loss"] is None or hist[-1]["val_loss"] >= best_loss


# ----------------------------------------------------------------- storage ---


def test_save_load_round_trip(tmp_path):
    m = _model(seed=3)
    rng = np.random.default_rng(8)
    X = rng.standard_normal((300, 3)).astype(np.float32)
    xt, yt = np.arange(300) / 50.0, np.arange(0.0, 5.9, 1 / 3)
    meta = {"recipe": EncoderRecipe().to_dict(), "note": "x"}
    save_encoder(tmp_path / "enc", _model(seed=9))  # replaced atomically by the next save
    folder = save_encoder(tmp_path / "enc", m, meta)
    loaded, info = load_encoder(folder)
    assert info["architecture"] == m.config() and info["recipe"]["lr"] == 1e-3 and info["note"] == "x"
    assert json.loads((folder / "model.json").read_text())["format"] == "jfacemap-encoder"
    np.testing.assert_array_equal(predict_neural(loaded, X, xt, yt), predict_neural(m, X, xt, yt))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc"]  # no temporary folders left
    with pytest.raises(ValueError, match="describe the model"):
        save_encoder(tmp_path / "x", m, {"architecture": {}})
    with pytest.raises(ValueError, match="model.json"):
        load_encoder(tmp_path / "missing")


# -------------------------------------------------------------- bad inputs ---


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((600, 3)).astype(np.float32)
    Y = rng.standard_normal((36, 5)).astype(np.float32)
    xt, yt = np.arange(600) / 50.0, np.arange(36) / 3.0
    seg = [np.arange(0, 18)]
    m = _model()
    r = EncoderRecipe(epochs=1)
    bad_x = X.copy()
    bad_x[10, 1] = np.nan
    with pytest.raises(ValueError, match="X has NaN"):
        train_encoder(bad_x, xt, Y, yt, seg, r, init_model=m)
    with pytest.raises(ValueError, match=r"x_times: 599 timestamps, need one per row of X \(600\)"):
        train_encoder(X, xt[:-1], Y, yt, seg, r, init_model=m)
    with pytest.raises(ValueError, match="y_times must be 1-D"):
        predict_neural(m, X, xt, np.zeros((2, 2)))
    shuffled = xt.copy()
    shuffled[[5, 6]] = shuffled[[6, 5]]
    with pytest.raises(ValueError, match="x_times is not strictly increasing"):
        predict_neural(m, X, shuffled, yt)
    with pytest.raises(ValueError, match="outside the video times"):
        train_encoder(X, xt, Y, yt + 1.0, seg, r, init_model=m)
    with pytest.raises(ValueError, match="columns"):
        predict_neural(m, X[:, :2], xt, yt)
    with pytest.raises(ValueError, match=r"train_segments\[0\]"):
        train_encoder(X, xt, Y, yt, [np.arange(30, 40)], r, init_model=m)  # 40 > 36 frames
    with pytest.raises(ValueError, match="init_model maps"):
        train_encoder(X, xt, Y[:, :2], yt, seg, r, init_model=m)
