"""Training the deep neural encoder and predicting with it (SPEC 3, Deep encoder).

    recipe = encoder_recipe(n_neurons, train_seconds)
    model, history = train_encoder(X, x_times, Y, y_times, split.train, recipe, test_segments=split.test)
    Y_hat = predict_neural(model, X, x_times, y_times)           # (T_neural, n_out)
    F = behavioural_features(model, X)                            # (T_video, 256), for the HMM
    save_encoder("runs/enc", model, {"recipe": recipe.to_dict(), "history": history})

Timing: neural frame k is paired with the deep features at its own time,
interpolated linearly between the two video frames around it
(`sample_positions`: frame `f` = the last at or before, weight `frac` of
frame f + 1). Reading the nearest or the previous frame instead costs
features that change within a video frame: on the simulated neurons
(jfacemap.synth.neural), the previous frame keeps 96 % of the behavioural
factors' variance, the nearest 99 %. The conv's 'same' kernel gives each
feature +-kernel_size // 2 frames (+-2 s at 50 Hz) of behaviour around that
frame. (The original pairs neural frame k + 1 with the video frame nearest
neural frame k, a shift of one neural frame, ~0.33 s: well inside the
kernel, so the learned filters can express either pairing; ours keeps the
same-moment alignment that the RRR baseline and the HMM features use.)

Batches: one step = one training segment: its neural frames, the video
frames they sample plus kernel_size // 2 frames of context on each side (so
a segment's features equal those computed on the whole recording; the conv
sees zeros only beyond the recording's ends). Windows are padded to bucket
lengths (at most 1/8 longer: 8 buckets per octave) with masks: padded video
frames are zeroed after the input layer, exactly as the conv's own zero
padding, and padded neural frames are left out of the MSE's sum and count.
So the step compiles once per distinct (video, neural) bucket pair, one or
two for ~10 equal segments, and once per architecture across trainings
(learning rate and weight decay are step inputs, not constants).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jfacemap.encode.encoder_store import load_encoder, save_encoder
from jfacemap.io.timestamps import check_timestamps
from jfacemap.io.jsonable import jsonable
from jfacemap.nets.encoder import NeuralEncoder
from jfacemap.nets.schedule import tail_multiplier

__all__ = ["EncoderRecipe", "encoder_recipe", "sample_frames", "sample_positions", "train_encoder", "predict_neural",
           "behavioural_features", "save_encoder", "load_encoder", "make_window", "window_loss"]

FEW_NEURONS = 2000  # below this: LR and weight decay / 10
SHORT_TRAINING_S = 3600.0  # below this much training data: LR and weight decay / 2, 100 fewer epochs
_GATHER_FLOATS = 1 << 23  # per prediction chunk: neural frames x kernel x n_in floats gathered (32 MB)
_VIDEO_CHUNK = 16384  # video frames per chunk of full-rate features

# ---------------------------------------------------------------- recipe ---


@dataclass(frozen=True)
class EncoderRecipe:
    """How to train the encoder (SPEC: AdamW, LR 1e-3, wd 1e-4, 300 epochs,
    LR / 10 at epochs 200 and 250).

    lr_tail: ((epochs_before_end, lr_multiplier), ...): LR x multiplier for
    the last `epochs_before_end` epochs (keyed on the end, as the original's
    n_iter - 50 k, so it keeps its shape when epochs changes).
    smoothness: weight of the conv's smoothness penalty in the loss.
    eval_every: test (and validation) loss every this many epochs (and at the last).
    patience: with validation segments, stop after this many epochs without a
      better validation loss (None: run every epoch); the weights of the best
      validation loss are returned either way.
    rules: which data-size rules `encoder_recipe` applied (for the record).
    """

    lr: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 300
    lr_tail: tuple[tuple[int, float], ...] = ((100, 0.1), (50, 0.01))
    smoothness: float = 0.5
    eval_every: int = 10
    patience: int | None = None
    rules: tuple[str, ...] = ()

    def replace(self, **overrides) -> "EncoderRecipe":
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return jsonable(dataclasses.asdict(self))

    def lr_at(self, epoch: int) -> float:
        """Learning rate of `epoch` (0-based): the tracker's tail rule (`jfacemap.nets.schedule`), per epoch
        in Python because the compiled step takes the LR as an input."""
        return self.lr * tail_multiplier(self.lr_tail, self.epochs, epoch)


def encoder_recipe(n_neurons: int, train_seconds: float, **overrides) -> EncoderRecipe:
    """The SPEC's recipe for a recording: fewer than 2,000 neurons -> LR and
    weight decay / 10; less than 1 h of training data -> LR and weight decay
    / 2 and 100 fewer epochs (both can apply). `overrides` win over the rules."""
    if n_neurons < 1 or not np.isfinite(train_seconds) or train_seconds <= 0:
        raise ValueError(f"need n_neurons >= 1 and train_seconds > 0, got {n_neurons}, {train_seconds}")
    r, rules = EncoderRecipe(), []
    if n_neurons < FEW_NEURONS:
        r = r.replace(lr=r.lr / 10, weight_decay=r.weight_decay / 10)
        rules.append(f"n_neurons {n_neurons} < {FEW_NEURONS}: lr, weight_decay / 10")
    if train_seconds < SHORT_TRAINING_S:
        r = r.replace(lr=r.lr / 2, weight_decay=r.weight_decay / 2, epochs=r.epochs - 100)
        rules.append(f"train {train_seconds:.0f} s < {SHORT_TRAINING_S:.0f} s: lr, weight_decay / 2, epochs - 100")
    return r.replace(rules=tuple(rules), **overrides)


# ----------------------------------------------------------------- inputs ---


def _check_times(times, n: int, name: str, rows: str) -> np.ndarray:
    """`check_timestamps`: one time per `rows` (e.g. "row of X"), n of them."""
    return check_timestamps(times, name, n=n, what=rows)


def _check_array(a, name: str, n_cols: int | None = None) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2 or len(a) == 0:
        raise ValueError(f"{name} must be a non-empty 2-D (time, features) array, got shape {a.shape}")
    if n_cols is not None and a.shape[1] != n_cols:
        raise ValueError(f"{name} has {a.shape[1]} columns, the model expects {n_cols}")
    a = a.astype(np.float32, copy=False)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has NaN or inf values")
    return a


def sample_frames(x_times: np.ndarray, y_times: np.ndarray) -> np.ndarray:
    """(T_neural,) int: for each neural time, the last video frame at or
    before it. Neural times must lie within the video: from x_times[0] to
    one (median) video frame period after x_times[-1]."""
    xt = _check_times(x_times, np.size(x_times), "x_times", "video frame")
    yt = _check_times(y_times, np.size(y_times), "y_times", "neural frame")
    if len(xt) < 2 or len(yt) == 0:
        raise ValueError(f"need >= 2 video times and >= 1 neural time, got {len(xt)} and {len(yt)}")
    end = xt[-1] + np.median(np.diff(xt))
    if yt[0] < xt[0] or yt[-1] > end:
        raise ValueError(f"neural times [{yt[0]:.3f}, {yt[-1]:.3f}] s fall outside the video times "
                         f"[{xt[0]:.3f}, {end:.3f}] s")
    return np.searchsorted(xt, yt, side="right") - 1


def sample_positions(x_times: np.ndarray, y_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((T_neural,) int frames, (T_neural,) float32 frac): neural time k lies
    frac[k] of the way from video frame frames[k] (`sample_frames`) to the
    next one; frac is 0 from the last video frame on."""
    frames = sample_frames(x_times, y_times)
    xt, yt = np.asarray(x_times, np.float64), np.asarray(y_times, np.float64)
    nxt = np.minimum(frames + 1, len(xt) - 1)
    gap = xt[nxt] - xt[frames]
    frac = np.where(gap > 0, (yt - xt[frames]) / np.where(gap > 0, gap, 1.0), 0.0)
    return frames, np.clip(frac, 0.0, 1.0).astype(np.float32)


def _check_segments(segments: Sequence[np.ndarray], n: int, name: str) -> list[np.ndarray]:
    out = []
    for i, seg in enumerate(segments):
        s = np.asarray(seg)
        if s.ndim != 1 or s.size == 0 or not np.issubdtype(s.dtype, np.integer):
            raise ValueError(f"{name}[{i}] must be a non-empty 1-D integer array of neural frames")
        if s[0] < 0 or s[-1] >= n or np.any(np.diff(s) <= 0):
            raise ValueError(f"{name}[{i}] must be increasing neural frame indices in [0, {n})")
        out.append(s.astype(np.int64))
    if not out:
        raise ValueError(f"{name} is empty")
    return out


# ---------------------------------------------------------------- windows ---


def _bucket(n: int) -> int:
    """n rounded up to a multiple of 2**(bit_length - 4): <= 1/8 longer, 8 sizes per octave."""
    step = 1 << max(0, int(n).bit_length() - 4)
    return -(-int(n) // step) * step


class Window(NamedTuple):
    """One padded batch: video frames x (L, n_in) with valid (L,), the
    positions (M,) in x of the sampled frames and their interpolation
    weights frac (M,) towards the next frame, targets y (M, n_out) with
    mask (M,) (False = padding)."""

    x: np.ndarray
    valid: np.ndarray
    pos: np.ndarray
    frac: np.ndarray
    y: np.ndarray
    mask: np.ndarray


def make_window(X: np.ndarray, frames: np.ndarray, half: int, Y_rows: np.ndarray | None = None,
                frac: np.ndarray | None = None) -> Window:
    """The window of X (T_video, n_in) that the features at video `frames`
    (increasing, M) and the frames after them read: frames[0] - half ..
    frames[-1] + 1 + half, zero and invalid beyond the recording, padded to
    bucket lengths. frac: (M,) weights of the next frame (None: 0)."""
    a, b = int(frames[0]) - half, int(frames[-1]) + half + 2
    lo, hi = max(a, 0), min(b, len(X))
    L, M = _bucket(b - a), _bucket(len(frames))
    x = np.zeros((L, X.shape[1]), np.float32)
    x[lo - a : hi - a] = X[lo:hi]
    valid = np.zeros(L, bool)
    valid[lo - a : hi - a] = True
    pos = np.zeros(M, np.int32)
    pos[: len(frames)] = frames - a
    weights = np.zeros(M, np.float32)
    if frac is not None:
        weights[: len(frames)] = frac
    n_out = 0 if Y_rows is None else Y_rows.shape[1]
    y = np.zeros((M, n_out), np.float32)
    if Y_rows is not None:
        y[: len(frames)] = Y_rows
    mask = np.arange(M) < len(frames)
    return Window(x, valid, pos, weights, y, mask)


# ------------------------------------------------------------ jitted parts ---


def window_outputs(model: NeuralEncoder, w: Window) -> jax.Array:
    """(M, n_out) predictions at a window's sampled frames (padded rows included)."""
    return model.readout(model.features_at(w.x[None], w.pos[None], w.valid[None], w.frac[None])[0])


def window_loss(model: NeuralEncoder, w: Window, smoothness: float = 0.5) -> tuple[jax.Array, tuple]:
    """(loss, (mse, penalty)) of one window: MSE over its real neural frames
    and all outputs (padded rows left out of sum and count), plus
    smoothness x the conv's squared neighbour differences."""
    err = jnp.where(w.mask[:, None], (window_outputs(model, w) - w.y) ** 2, 0.0)
    mse = jnp.sum(err) / (jnp.maximum(jnp.sum(w.mask), 1) * w.y.shape[-1])
    penalty = smoothness * model.smoothness()
    return mse + penalty, (mse, penalty)


@functools.lru_cache(maxsize=8)
def _compiled(graphdef) -> tuple[optax.GradientTransformation, Callable, Callable, Callable, Callable]:
    """(tx, step, sse, predict_at, features_full) for one architecture."""
    tx = optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3, weight_decay=1e-4)

    def loss_fn(params, smooth_w, *window):
        return window_loss(nnx.merge(graphdef, params), Window(*window), smooth_w)

    @jax.jit
    def sse(params, *window):
        w = Window(*window)
        return jnp.sum(jnp.where(w.mask[:, None], (window_outputs(nnx.merge(graphdef, params), w) - w.y) ** 2, 0.0))

    @jax.jit
    def step(params, opt_state, lr, wd, smooth_w, x, valid, pos, frac, y, mask):
        (loss, (mse, penalty)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, smooth_w, x, valid, pos, frac, y, mask)
        opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": lr,
                                                    "weight_decay": wd})
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, (loss, mse, penalty)

    @functools.partial(jax.jit, static_argnames="readout")
    def predict_at(params, x, valid, pos, frac, readout):
        model = nnx.merge(graphdef, params)
        feats = model.features_at(x[None], pos[None], valid[None], frac[None])[0]
        return model.readout(feats) if readout else feats

    @jax.jit
    def features_full(params, x, valid):
        return nnx.merge(graphdef, params)(x[None], valid[None])[0]

    return tx, step, sse, predict_at, features_full


# ------------------------------------------------------------------ train ---


def train_encoder(
    X: np.ndarray,
    x_times: np.ndarray,
    Y: np.ndarray,
    y_times: np.ndarray,
    train_segments: Sequence[np.ndarray],
    recipe: EncoderRecipe | None = None,
    n_neurons: int | None = None,
    seed: int = 0,
    on_epoch: Callable[[int, dict], bool | None] | None = None,
    test_segments: Sequence[np.ndarray] | None = None,
    *,
    init_model: NeuralEncoder | None = None,
    val_segments: Sequence[np.ndarray] | None = None,
) -> tuple[NeuralEncoder, list[dict]]:
    """Train the deep encoder, one step per training segment.

    Args:
      X: (T_video, n_in) float32 z-scored behaviour (keypoints or movie PCs).
      x_times: (T_video,) video frame times, s, strictly increasing.
      Y: (T_neural, n_out) float32 targets (neural PCs V S, or neurons).
      y_times: (T_neural,) neural frame times, s, within the video's.
      train_segments: increasing neural-frame index arrays, one batch each.
      recipe: None = `encoder_recipe(n_neurons, training seconds)`.
      n_neurons: neurons of the recording (sets the LR rule; required when
        recipe is None, since Y may hold PCs).
      seed: initialisation and segment order (epoch e shuffles with (seed, e)).
      on_epoch: on_epoch(epoch, row) after each epoch; truthy return stops.
      test_segments: if given, rows get test_loss (test MSE) every
        recipe.eval_every epochs and at the last, None in between.
      init_model: start from these weights (not modified) instead of a new
        NeuralEncoder(n_in, n_out) initialised from `seed`.
      val_segments: held-out neural frames (never trained on) for early
        stopping: their MSE every recipe.eval_every epochs picks the returned
        weights (the best), and recipe.patience may end the run early.
    Returns:
      (model, history): one dict per epoch with epoch, train_loss (mean
      step loss: MSE + penalty), train_mse, penalty, [test_loss], [val_loss,
      best (the returned weights are this epoch's)], lr, seconds.
    """
    X = _check_array(X, "X")
    Y = _check_array(Y, "Y")
    _check_times(x_times, len(X), "x_times", "row of X")
    _check_times(y_times, len(Y), "y_times", "row of Y")
    frames, frac = sample_positions(x_times, y_times)
    train = _check_segments(train_segments, len(Y), "train_segments")
    test = None if test_segments is None else _check_segments(test_segments, len(Y), "test_segments")
    if recipe is None:
        if n_neurons is None:
            raise ValueError("give n_neurons (the recording's neuron count sets the learning rate) or a recipe")
        dt = float(np.median(np.diff(y_times))) if len(Y) > 1 else 0.0
        recipe = encoder_recipe(n_neurons, sum(len(s) for s in train) * dt)
    if init_model is None:
        init_model = NeuralEncoder(X.shape[1], Y.shape[1], rngs=nnx.Rngs(seed))
    elif (init_model.n_in, init_model.n_out) != (X.shape[1], Y.shape[1]):
        raise ValueError(f"init_model maps {init_model.n_in} -> {init_model.n_out}, data {X.shape[1]} -> {Y.shape[1]}")
    graphdef, params = nnx.split(init_model)
    tx, step, sse, _, _ = _compiled(graphdef)
    opt_state = tx.init(params)
    half = init_model.half_width
    put = lambda w: Window(*(jnp.asarray(a) for a in w))  # noqa: E731
    train_w = [put(make_window(X, frames[s], half, Y[s], frac[s])) for s in train]
    test_w = [] if test is None else [put(make_window(X, frames[s], half, Y[s], frac[s])) for s in test]
    n_test = sum(len(s) for s in test or []) * Y.shape[1]
    val = None if val_segments is None else _check_segments(val_segments, len(Y), "val_segments")
    val_w = [] if val is None else [put(make_window(X, frames[s], half, Y[s], frac[s])) for s in val]
    n_val = sum(len(s) for s in val or []) * Y.shape[1]
    best_params, best_val, best_epoch = params, np.inf, -1

    history: list[dict] = []
    for epoch in range(recipe.epochs):
        t0 = time.perf_counter()
        lr = recipe.lr_at(epoch)
        hyper = (jnp.float32(lr), jnp.float32(recipe.weight_decay), jnp.float32(recipe.smoothness))
        sums = jnp.zeros(3)
        for i in np.random.default_rng([seed, epoch]).permutation(len(train_w)):
            params, opt_state, stats = step(params, opt_state, *hyper, *train_w[i])
            sums = sums + jnp.stack(stats)  # stays on the device: no sync per step
        mean = np.asarray(sums, np.float64) / len(train_w)
        row = {"epoch": epoch, "train_loss": float(mean[0]), "train_mse": float(mean[1]), "penalty": float(mean[2])}
        if test is not None:
            due = epoch % max(1, recipe.eval_every) == 0 or epoch == recipe.epochs - 1
            row["test_loss"] = float(sum(float(sse(params, *w)) for w in test_w) / n_test) if due else None
        stop = False
        if val is not None:
            due = epoch % max(1, recipe.eval_every) == 0 or epoch == recipe.epochs - 1
            row["val_loss"] = float(sum(float(sse(params, *w)) for w in val_w) / n_val) if due else None
            if due and row["val_loss"] < best_val:  # params are never donated: keeping the reference is enough
                best_params, best_val, best_epoch = params, row["val_loss"], epoch
            row["best"] = best_epoch == epoch
            stop = recipe.patience is not None and epoch - best_epoch >= recipe.patience
        row |= {"lr": lr, "seconds": time.perf_counter() - t0}
        history.append(row)
        if (on_epoch is not None and on_epoch(epoch, row)) or stop:
            break
    return nnx.merge(graphdef, best_params if val is not None else params), history


# ---------------------------------------------------------------- predict ---


def _at_frames(model: NeuralEncoder, X: np.ndarray, frames: np.ndarray, frac: np.ndarray, readout: bool,
               chunk: int | None) -> np.ndarray:
    """Features (or readout) between video `frames` and the next (weights
    `frac`), computed in chunks of neural frames, each over its own window
    with full context."""
    graphdef, params = nnx.split(model)
    predict_at = _compiled(graphdef)[3]
    chunk = chunk or max(1, _GATHER_FLOATS // (model.kernel_size * model.n_in))
    out = np.empty((len(frames), model.n_out if readout else model.n_features), np.float32)
    for s in range(0, len(frames), chunk):
        w = make_window(X, frames[s : s + chunk], model.half_width, frac=frac[s : s + chunk])
        res = predict_at(params, w.x, w.valid, w.pos, w.frac, readout=readout)
        out[s : s + chunk] = np.asarray(res)[: int(w.mask.sum())]
    return out


def predict_neural(model: NeuralEncoder, X: np.ndarray, x_times: np.ndarray, y_times: np.ndarray,
                   chunk: int | None = None) -> np.ndarray:
    """(T_neural, n_out) float32 predicted targets at the neural times.

    X: (T_video, n_in) float32 behaviour at x_times (s); chunk: neural
    frames per chunk (None = a ~32 MB working set), results do not depend on it.
    """
    X = _check_array(X, "X", model.n_in)
    _check_times(x_times, len(X), "x_times", "row of X")
    return _at_frames(model, X, *sample_positions(x_times, y_times), True, chunk)


def behavioural_features(model: NeuralEncoder, X: np.ndarray, x_times: np.ndarray | None = None,
                         y_times: np.ndarray | None = None, chunk: int | None = None) -> np.ndarray:
    """The deep behavioural features (the 256 latent ReLU outputs).

    Without y_times: (T_video, n_features) float32 at every video frame,
    computed over chunks of `chunk` frames (default 16384) each padded with
    kernel_size // 2 frames of context, stitched. With y_times (and x_times):
    (T_neural, n_features) at the neural times (see `sample_positions`).
    """
    X = _check_array(X, "X", model.n_in)
    if x_times is not None:
        _check_times(x_times, len(X), "x_times", "row of X")
    if y_times is not None:
        if x_times is None:
            raise ValueError("y_times needs x_times to align the two clocks")
        return _at_frames(model, X, *sample_positions(x_times, y_times), False, chunk)
    graphdef, params = nnx.split(model)
    features_full = _compiled(graphdef)[4]
    chunk = max(1, chunk or _VIDEO_CHUNK)
    half = model.half_width
    out = np.empty((len(X), model.n_features), np.float32)
    for s in range(0, len(X), chunk):
        n = min(chunk, len(X) - s)
        w = make_window(X, np.arange(s, s + chunk), half)  # always full length: one compile
        res = features_full(params, w.x, w.valid)
        out[s : s + n] = np.asarray(res)[half : half + n]
    return out
