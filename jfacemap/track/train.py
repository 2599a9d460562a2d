"""Training and evaluating the keypoint tracker (SPEC 1, Training / Evaluation).

    model, history = train_tracker(images, keypoints, bodyparts, "base")
    model, history = train_tracker(images, keypoints, bodyparts, "finetune", init_model=base)
    errors = evaluate_tracker(model, test_images, test_keypoints, bodyparts)

One jitted step does everything on the device: per-frame percentile
normalisation of the uint8 batch, random augmentation, targets, forward in
train mode (batch-statistics BatchNorm, sum-10 heatmaps), loss, gradients and
the optax update. Checkpoints (orbax) are written after every epoch when a
folder is given, and a new call with the same folder resumes from the latest.

With more than one local device each batch is split across them (data
parallel, `jax.sharding`): the train state is replicated, every device takes
B / n frames, and XLA all-reduces the gradient and the BatchNorm batch
statistics, so a step is one logical program over the whole batch and
matches a one-device run up to float32 summation order. A batch size that
is not a multiple of the device count uses the largest number of devices
that divides it (`train_devices`; batch 1 runs on one device): padding the
batch would change the BatchNorm statistics.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jfacemap.nets.schedule import tail_schedule
from jfacemap.nets.unet import DEFAULT_CHANNELS, FacemapUNet, UNetOutput
from jfacemap.track.augment import AugmentConfig, augment_batch
from jfacemap.track.decode import SIGMA, HeatmapTargets, heatmap_targets
from jfacemap.track import model_store as ckpt
from jfacemap.track.inference import make_predict_fn, predict_images
from jfacemap.track.preprocess import normalize_percentile
from jfacemap.skeleton import mirror_permutation

# ------------------------------------------------------------------- loss ---


@dataclass(frozen=True)
class LossWeights:
    """Weights of the two loss terms (SPEC: L1 heatmap + 0.5 x offset)."""

    heatmap: float = 1.0
    offset: float = 0.5
    offset_norm: str = "l2"  # "l2": sqrt(dx^2 + dy^2), the original's; "l1": |dx| + |dy|


def tracker_loss(
    outputs: UNetOutput, targets: HeatmapTargets, weights: LossWeights = LossWeights()
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Masked tracker loss.

    heatmap term: L1 between (B, G, G, K) heatmaps summed over the grid, per
    labelled (frame, keypoint); offset term: L1 of the x and y offsets summed
    over the cells within sigma of the label (`targets.mask`). Both are
    divided by the number of labelled (frame, keypoint) pairs, so a frame's
    weight does not depend on how many of its keypoints are labelled.
    Unlabelled keypoints contribute nothing (no gradient): they are never
    pushed toward an empty heatmap.
    Returns (loss, {"heatmap": ..., "offset": ...}) scalars.
    """
    valid = targets.valid[:, None, None, :]
    n_valid = jnp.maximum(jnp.sum(targets.valid), 1)
    # jnp.where (not a multiply) so a non-finite output on a masked channel cannot leak NaN.
    heat = jnp.sum(jnp.where(valid, jnp.abs(outputs.heatmap - targets.heatmap), 0.0)) / n_valid
    dx, dy = outputs.offset_x - targets.offset_x, outputs.offset_y - targets.offset_y
    if weights.offset_norm == "l2":
        sq = dx**2 + dy**2
        # The inner where keeps sqrt's gradient finite where the error is exactly 0.
        off_err = jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)
    else:
        off_err = jnp.abs(dx) + jnp.abs(dy)
    offset = jnp.sum(jnp.where(targets.mask, off_err, 0.0)) / n_valid
    loss = weights.heatmap * heat + weights.offset * offset
    return loss, {"heatmap": heat, "offset": offset}


# ---------------------------------------------------------------- recipes ---


FINETUNE_MIN_STEPS = 300
FINETUNE_BATCH = 4


@dataclass(frozen=True)
class TrainRecipe:
    """How to train: optimiser, schedule, batch, augmentation, loss.

    lr_tail: ((epochs_before_end, lr_multiplier), ...): the LR drops to
    lr * multiplier for the last `epochs_before_end` epochs (SPEC: LR/10 for
    the last 3 + 3, LR/25 for the last 3). Keyed on the end, so it keeps its
    shape when `epochs` is overridden. optimizer: "adam" or "adamw"
    (decoupled weight decay, as torch's AdamW).

    Steps, not only epochs: batch_size is an upper bound (never above the
    number of frames, so no frame is drawn twice in one batch) and training
    runs at least `min_steps` optimizer steps (more epochs when an epoch is
    short): 6 frames x 36 epochs at batch 8 would be 36 steps, too few to fit
    them. `training_plan` says what a recipe does with N frames.
    grad_clip: clip the gradient's global norm to this (the original's
    `clip_grad_norm_(..., 50)`); None = no clipping.
    """

    name: str = "base"
    lr: float = 4e-4
    epochs: int = 36
    batch_size: int = 8
    weight_decay: float = 0.0
    optimizer: str = "adam"
    lr_tail: tuple[tuple[int, float], ...] = ((6, 0.1), (3, 0.04))
    min_steps: int = 0
    grad_clip: float | None = 50.0
    sigma: float = SIGMA
    loss: LossWeights = field(default_factory=LossWeights)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def replace(self, **overrides) -> "TrainRecipe":
        """A copy with some fields changed (`RECIPES["base"].replace(epochs=2)`)."""
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        """JSON-ready description (for checkpoints and model.json)."""
        out = dataclasses.asdict(self)
        # Options added after checkpoints were carried between sessions are left out at their
        # default, so that those checkpoints still resume (their recipe must match).
        if not out["augment"]["swap_pairs"]:
            del out["augment"]["swap_pairs"]
        return out


RECIPES: dict[str, TrainRecipe] = {
    "base": TrainRecipe(),
    # At least FINETUNE_MIN_STEPS optimizer steps, so that 1-10 frames are fitted too. Batch 4,
    # not the original refinement loop's 1: BatchNorm on one image is noisy (six real faces,
    # 300 steps: points lost at batch 1, 1.1-1.4 px at batch 2, 0.6 px at batch 4).
    # Flips kept (p = 0.5): the fine-tuning figures (six real faces, some facing each way; the
    # leave-one-mouse-out and fine-tuning curves) were measured with them.
    # LR 3e-4, not the SPEC's 1e-4 (the original's, at batch 1): at batch 4 the same ~300 steps
    # at 1e-4 stop short. Fine-tuned on 1-50 lab2 frames the held-out error fell 10-15 % at every
    # count (bench/finetune_curve.py: 10 frames 2.88 -> 2.56 px); on a new real mouse after its
    # sibling's three views 11.2 / 9.9 -> 9.7 / 8.2 px (bench/bench_real_faces.py). 1e-3 diverged
    # on one of those folds (24 px), 3e-5 was worse (12.3 / 11.7).
    "finetune": TrainRecipe(name="finetune", lr=3e-4, weight_decay=1e-3, optimizer="adamw",
                            batch_size=FINETUNE_BATCH, min_steps=FINETUNE_MIN_STEPS,
                            augment=AugmentConfig(flip_prob=0.5)),
}


def get_recipe(recipe: str | TrainRecipe = "base", **overrides) -> TrainRecipe:
    """A named preset (or a recipe) with `overrides` applied.

    Asking for a number of epochs means exactly that many: it also sets
    min_steps to 0 unless min_steps is overridden too.
    """
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
        recipe = RECIPES[recipe]
    if "epochs" in overrides:
        overrides = {"min_steps": 0, **overrides}
    return recipe.replace(**overrides) if overrides else recipe


def steps_per_epoch(n_frames: int, batch_size: int) -> int:
    """ceil(N / batch), at least 1 (see `_epoch_batches`)."""
    return max(1, math.ceil(n_frames / batch_size))


class TrainingPlan(NamedTuple):
    """What a recipe does with N frames: batch size, steps per epoch, epochs (total steps)."""

    batch_size: int
    steps_per_epoch: int
    epochs: int

    @property
    def steps(self) -> int:
        return self.steps_per_epoch * self.epochs


def training_plan(recipe: TrainRecipe, n_frames: int) -> TrainingPlan:
    """Batch min(batch_size, N); recipe.epochs, or more so that there are >= min_steps steps."""
    batch = max(1, min(recipe.batch_size, n_frames))
    per_epoch = steps_per_epoch(n_frames, batch)
    return TrainingPlan(batch, per_epoch, max(recipe.epochs, math.ceil(recipe.min_steps / per_epoch)))


def lr_schedule(recipe: TrainRecipe, n_steps_per_epoch: int, epochs: int | None = None) -> optax.Schedule:
    """Piecewise-constant LR on optimizer steps: recipe.lr, then each
    lr_tail multiplier from epoch (epochs - epochs_before_end) on (clamped
    at epoch 0: a run shorter than the tail starts on the lowered LR), the
    encoder's rule too (`jfacemap.nets.schedule`).
    `epochs` defaults to the recipe's (`training_plan` may run more)."""
    epochs = recipe.epochs if epochs is None else epochs
    return tail_schedule(recipe.lr, recipe.lr_tail, epochs, n_steps_per_epoch)


def make_optimizer(recipe: TrainRecipe, n_steps_per_epoch: int, epochs: int | None = None) -> optax.GradientTransformation:
    """The recipe's optax optimiser (after gradient clipping, when the recipe clips)."""
    schedule = lr_schedule(recipe, n_steps_per_epoch, epochs)
    if recipe.optimizer == "adam":
        # torch Adam's weight decay is an L2 penalty: added to the gradient (after clipping, as torch does).
        decay = [optax.add_decayed_weights(recipe.weight_decay)] if recipe.weight_decay else []
        opt = optax.chain(*decay, optax.adam(schedule))
    elif recipe.optimizer == "adamw":
        opt = optax.adamw(schedule, weight_decay=recipe.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {recipe.optimizer!r}; choose adam or adamw")
    return opt if recipe.grad_clip is None else optax.chain(optax.clip_by_global_norm(recipe.grad_clip), opt)


# ------------------------------------------------------------------- step ---


class TrainState(NamedTuple):
    """Everything a step changes: params and BatchNorm statistics (nnx
    states), optax state."""

    params: nnx.State
    batch_stats: nnx.State
    opt_state: optax.OptState


def train_devices(batch_size: int, devices: Sequence[jax.Device] | None = None) -> list[jax.Device]:
    """The devices that share each batch of `batch_size` frames: the first n of `devices` (default:
    every local device), n the largest count that divides the batch, so every device gets an equal
    share without padding (padded frames would enter the BatchNorm statistics)."""
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("train_devices: no devices given")
    n = max(d for d in range(1, min(len(devices), batch_size) + 1) if batch_size % d == 0)
    return devices[:n]


def batch_shardings(mesh: Mesh | None) -> tuple[NamedSharding, NamedSharding] | tuple[None, None]:
    """(replicated, split along axis 0 over the mesh's "batch" axis); (None, None) without a mesh."""
    if mesh is None:
        return None, None
    return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("batch"))


@functools.lru_cache(maxsize=8)
def make_train_step(graphdef, recipe: TrainRecipe, n_steps_per_epoch: int, bbox=None,
                    epochs: int | None = None, mirror: tuple[int, ...] | None = None,
                    mesh: Mesh | None = None, context: float = 1.0) -> tuple[Callable, Callable]:
    """(optax transformation, jitted step). step: (TrainState, key, frames
    (B, H, W) uint8, keypoints (B, K, 2) frame px) -> (TrainState,
    {"loss", "heatmap", "offset"}). `mirror`: left/right partners swapped on
    a flip (`skeleton.mirror_permutation`). `context`: the model's input
    context (`crop_geometry`). `mesh`: a 1-D Mesh with axis
    "batch" (B a multiple of its size): state and key replicated, frames and
    keypoints split along B, the new state replicated. Cached, so repeated
    trainings of one architecture and recipe (human-in-the-loop rounds)
    compile once."""
    tx = make_optimizer(recipe, n_steps_per_epoch, epochs)

    def loss_fn(model, images, kp):
        out = model(images, train=True)  # also updates the BatchNorm statistics in `model`
        grid = out.heatmap.shape[1]
        targets = heatmap_targets(kp, grid=grid, sigma=recipe.sigma, stride=images.shape[1] / grid)
        return tracker_loss(out, targets, recipe.loss)

    # Gradients only for the Params; BatchStats are mutated, not differentiated.
    grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, nnx.Param), has_aux=True)

    def step(state: TrainState, key, frames, keypoints):
        x = normalize_percentile(frames)
        images, kp = augment_batch(key, x, keypoints, recipe.augment, bbox, mirror, context)
        model = nnx.merge(graphdef, state.params, state.batch_stats)
        (loss, aux), grads = grad_fn(model, images, kp)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, nnx.state(model, nnx.BatchStat), opt_state), {"loss": loss, **aux}

    if mesh is None:
        return tx, jax.jit(step)
    # The augmentation keys are drawn inside for the whole logical batch, so they do not depend on
    # the device count; the means over the batch (loss, BatchNorm) become all-reduces.
    whole, split = batch_shardings(mesh)
    return tx, jax.jit(step, in_shardings=(whole, whole, split, split), out_shardings=(whole, whole))


def _epoch_batches(rng: np.random.Generator, n: int, batch: int) -> np.ndarray:
    """(steps, batch) frame indices for one epoch: a shuffled pass over all
    N frames. Every batch is full so the step compiles once: the last
    partial batch is topped up with frames drawn from the rest of the
    epoch; when N < batch, the single batch holds every frame plus draws
    with replacement (each copy gets its own augmentation). So with 1-10
    frames an epoch is still >= 1 optimizer step."""
    order = rng.permutation(n)
    steps = steps_per_epoch(n, batch)
    short = steps * batch - n
    if short:
        pool = order[: n - (n % batch)] if n >= batch else order
        order = np.concatenate([order, rng.choice(pool, short, replace=n < batch or short > len(pool))])
    return order.reshape(steps, batch)


# ------------------------------------------------------------------ train ---


def _check_inputs(images, keypoints, bodyparts) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images)
    kp = np.asarray(keypoints, np.float32)
    if images.ndim != 3:
        raise ValueError(f"images must be (N, H, W), got shape {images.shape}")
    if kp.ndim != 3 or kp.shape[2] not in (2, 3) or kp.shape[0] != images.shape[0]:
        raise ValueError(f"keypoints must be (N={images.shape[0]}, K, 2 or 3), got shape {kp.shape}")
    if kp.shape[1] != len(bodyparts):
        raise ValueError(f"keypoints have {kp.shape[1]} keypoints but {len(bodyparts)} bodyparts were given")
    if len(images) == 0:
        raise ValueError("no training images")
    return images, kp[..., :2]


def train_tracker(
    images: np.ndarray,
    keypoints: np.ndarray,
    bodyparts: Sequence[str],
    recipe: str | TrainRecipe = "base",
    init_model: FacemapUNet | None = None,
    seed: int = 0,
    on_epoch: Callable[[int, dict], bool | None] | None = None,
    checkpoint_dir: str | Path | None = None,
    *,
    bbox: tuple[int, int, int, int] | None = None,
    channels: Sequence[int] = DEFAULT_CHANNELS,
    n_upsample: int = 2,
    context: float = 1.0,
    devices: Sequence[jax.Device] | None = None,
    validate: Callable[[FacemapUNet], dict[str, float]] | None = None,
) -> tuple[FacemapUNet, list[dict]]:
    """Train (from scratch) or fine-tune (from `init_model`) a tracker.

    Args:
      images: (N, H, W) uint8 frames of one size (normalised per frame inside).
      keypoints: (N, K, 2 or 3) x, y[, likelihood] labels in frame pixels;
        NaN = not labelled (masked out of the loss).
      bodyparts: K names (checked against K; stored in checkpoints).
      recipe: a preset name ("base", "finetune") or a `TrainRecipe`.
      init_model: start from these weights (not modified); None = new
        network with `channels` / `n_upsample`, initialised from `seed`.
      seed: shuffling and augmentation (and init) randomness; epoch e uses
        streams derived from (seed, e), so a resumed run equals an
        uninterrupted one.
      on_epoch: called as on_epoch(epoch, stats) after each epoch (after
        its checkpoint); a truthy return stops training there.
      checkpoint_dir: save an orbax checkpoint every epoch here, and resume
        from the latest one if the folder has any.
      bbox: (x0, x1, y0, y1) crop box the tracker will be used with.
      context: input context of a new network (`FacemapUNet`); a fine-tuned
        one keeps `init_model`'s.
      devices: the devices that may share each batch (data parallel);
        default: every local device. The first n are used, n the largest
        count that divides the batch size (`train_devices`).
      validate: called after each epoch with the model (eval mode) as it
        stands; the numbers it returns go into that epoch's history row
        (and its checkpoint) under "validate". A report only: training
        never looks at them (a learning curve on data kept out of training).
    Returns:
      (model in eval mode, on the first device; history: one dict per epoch,
      including those of the run a checkpoint resumed, with epoch, loss,
      heatmap, offset (means over the epoch's steps), lr, steps, batch_size,
      devices (how many shared each batch), seconds).
    """
    recipe = get_recipe(recipe)
    images, kp = _check_inputs(images, keypoints, bodyparts)
    if init_model is None:
        init_model = FacemapUNet(len(bodyparts), tuple(channels), n_upsample, context=context, rngs=nnx.Rngs(seed))
    elif init_model.n_keypoints != len(bodyparts):
        raise ValueError(f"init_model has {init_model.n_keypoints} keypoints, labels have {len(bodyparts)}")
    graphdef, params, batch_stats = nnx.split(init_model, nnx.Param, nnx.BatchStat)
    plan = training_plan(recipe, len(images))
    n_steps = plan.steps_per_epoch
    bbox = None if bbox is None else tuple(int(round(v)) for v in bbox)
    mirror = mirror_permutation(bodyparts) if recipe.augment.swap_pairs else None
    shared = train_devices(plan.batch_size, devices)
    mesh = Mesh(np.array(shared), ("batch",)) if len(shared) > 1 else None
    whole, _ = batch_shardings(mesh)
    tx, step = make_train_step(graphdef, recipe, n_steps, bbox, plan.epochs, mirror, mesh, init_model.context)
    state = TrainState(params, batch_stats, tx.init(params))
    if mesh is not None:
        state = jax.device_put(state, whole)  # replicated; orbax restores a checkpoint onto this sharding too
    elif shared[0] != jax.local_devices()[0]:
        state = jax.device_put(state, shared[0])  # committed state takes the steps there

    meta = {"recipe": recipe.to_dict(), "bodyparts": list(bodyparts), "n_frames": len(images),
            "frame_shape": list(images.shape[1:]), "seed": int(seed), "bbox": bbox}
    if init_model.context != 1.0:  # only then: checkpoints written before context existed still resume
        meta["context"] = init_model.context
    manager, start, history = None, 0, []
    if checkpoint_dir is not None:
        manager = ckpt.open_manager(checkpoint_dir)
        restored = ckpt.restore_latest(manager, state, meta)
        if restored is not None:
            state, start, saved = restored
            if mesh is not None:  # a no-op when orbax kept `state`'s sharding, as it does
                state = jax.device_put(state, whole)
            history = list(saved.get("history", []))

    schedule = lr_schedule(recipe, n_steps, plan.epochs)
    try:
        for epoch in range(start, plan.epochs):
            t0 = time.perf_counter()
            rng = np.random.default_rng([seed, epoch])
            key = jax.random.fold_in(jax.random.key(seed), epoch)
            sums: dict[str, jax.Array] = {}
            for i, idx in enumerate(_epoch_batches(rng, len(images), plan.batch_size)):
                idx = np.sort(idx)  # sorted reads are friendlier to memory-mapped arrays
                state, stats = step(state, jax.random.fold_in(key, i), images[idx], kp[idx])
                sums = {k: sums.get(k, 0.0) + v for k, v in stats.items()}
            row = {"epoch": epoch, "epochs": plan.epochs, **{k: float(v) / n_steps for k, v in sums.items()},
                   "lr": float(schedule(epoch * n_steps)), "steps": n_steps, "batch_size": plan.batch_size,
                   "devices": len(shared), "seconds": time.perf_counter() - t0}
            if validate is not None:
                model = nnx.merge(graphdef, *jax.device_put((state.params, state.batch_stats), shared[0]))
                model.eval()
                row["validate"] = {k: float(v) for k, v in validate(model).items()}
            history.append(row)
            if manager is not None:
                ckpt.save_epoch(manager, epoch, state, meta | {"history": history})
            if on_epoch is not None and on_epoch(epoch, row):
                break
    finally:
        if manager is not None:
            manager.close()
    if mesh is not None:  # one copy of the weights, as a one-device run returns
        state = jax.device_put(state, shared[0])
    model = nnx.merge(graphdef, state.params, state.batch_stats)
    model.eval()
    return model, history


# --------------------------------------------------------------- evaluate ---


def evaluate_tracker(
    model: FacemapUNet,
    images: np.ndarray | Sequence[np.ndarray],
    keypoints: np.ndarray,
    bodyparts: Sequence[str],
    bbox: Sequence[float] | None = None,
    batch_size: int = 16,
) -> dict:
    """Euclidean error of the model's predictions against labels, in the
    labels' own (frame) pixels.

    Args:
      images: (N, H, W) frames, or a list of N (H_i, W_i) frames of mixed
        sizes (grouped by shape, one compiled predictor per shape).
      keypoints: (N, K, 2 or 3) labels in frame pixels; NaN = not labelled
        (not counted).
      bbox: crop box for every frame (None = whole frame).
    Returns:
      dict(mean_px, median_px, p90_px over all labelled points;
      per_keypoint_px {name: mean px, NaN when never labelled};
      per_frame_px [mean px per frame, NaN when none labelled];
      n_frames, n_points; n_missed: labelled points the model found no
      heatmap peak for (NaN predictions), left out of the errors).
    """
    kp = np.asarray(keypoints, np.float32)[..., :2]
    if kp.ndim != 3 or kp.shape[1] != len(bodyparts) or len(kp) != len(images):
        raise ValueError(f"keypoints must be (N={len(images)}, K={len(bodyparts)}, 2 or 3), got {kp.shape}")
    predicted = predict_images(lambda shape: make_predict_fn(model, bbox, shape), images, batch_size)
    pred = np.stack(predicted)[..., :2] if len(predicted) else np.full(kp.shape, np.nan, np.float32)
    err = np.linalg.norm(pred - kp, axis=-1)  # (N, K), NaN where unlabelled or not found
    missed = np.isfinite(kp).all(-1) & ~np.isfinite(pred).all(-1)
    labelled = np.isfinite(err)
    flat = err[labelled]
    with np.errstate(invalid="ignore"):
        count_k, count_f = labelled.sum(0), labelled.sum(1)
        per_k = np.where(count_k > 0, np.nansum(err, 0) / np.maximum(count_k, 1), np.nan)
        per_f = np.where(count_f > 0, np.nansum(err, 1) / np.maximum(count_f, 1), np.nan)
    stat = (lambda f: float(f(flat))) if flat.size else (lambda f: float("nan"))
    return {
        "mean_px": stat(np.mean),
        "median_px": stat(np.median),
        "p90_px": stat(lambda a: np.percentile(a, 90)),
        "per_keypoint_px": {str(n): float(v) for n, v in zip(bodyparts, per_k)},
        "per_frame_px": [float(v) for v in per_f],
        "n_frames": int(len(kp)),
        "n_points": int(flat.size),
        "n_missed": int(missed.sum()),
    }
