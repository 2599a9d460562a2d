"""Data parallelism: with several local devices a batch is split across them; tracking gives the keypoints of a
one-device run and training its losses and weights. Two CPU devices are forced in a fresh interpreter (the flag
must be set before JAX starts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from jfacemap.track.train import train_devices

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    import numpy as np
    from flax import nnx
    from jfacemap.io.video import write_video
    from jfacemap.nets.unet import FacemapUNet
    from jfacemap.skeleton import FACEMAP_BODYPARTS
    from jfacemap.track.inference import make_predict_fn, predict_frames
    from jfacemap.track.predict import track_video

    # 13 frames of 64 x 80 (not square; the last batch of 8 is padded): texture, a moving blob, noise
    yy, xx = np.mgrid[:64, :80]
    rng = np.random.default_rng(4)
    frames = np.stack([np.clip(80 + 30 * np.sin(xx / 7.0 + 0.3 * i) + 25 * np.cos(yy / 5.0) + rng.normal(0, 8, xx.shape)
                               + 120 * np.exp(-((xx - 20 - 3 * i) ** 2 + (yy - 30) ** 2) / 50.0), 0, 255)
                       for i in range(13)]).astype(np.uint8)
    names = list(FACEMAP_BODYPARTS)
    model = FacemapUNet(len(names), (8, 8, 16, 16, 16), rngs=nnx.Rngs(0))
    model.heatmap_head.bias.set_value(model.heatmap_head.bias.get_value() + 0.5)
    both = make_predict_fn(model, None, (64, 80))
    one = make_predict_fn(model, None, (64, 80), devices=jax.devices()[:1])
    batched = both(frames[:8])
    video = sys.argv[1] + "/mouse.mkv"
    write_video(video, frames, fps=50.0, lossless=True)
    tracked = track_video(video, model, names, batch_size=8, out_path=sys.argv[1] + "/out.h5")
    reference = predict_frames(one, frames, 8)
    diff = lambda a: float(np.abs(np.asarray(a)[..., :2] - reference[: len(a), :, :2]).max())
    # flip averaging gated per frame (about half the frames below the gate): the same on two devices
    gated = nnx.clone(model)
    gated.flip_average, gated.flip_average_below = True, float(np.median(reference[..., 2].mean(-1)))
    g2 = predict_frames(make_predict_fn(gated, None, (64, 80)), frames, 8)
    g1 = predict_frames(make_predict_fn(gated, None, (64, 80), devices=jax.devices()[:1]), frames, 8)
    print("RESULT " + json.dumps({
        "gated": float(np.abs(g2[..., :2] - g1[..., :2]).max()),
        "gated_changed": float(np.abs(g1[..., :2] - reference[..., :2]).max()),
        "devices": len(jax.devices()), "n_devices": both.n_devices, "sharded_over": len(batched.sharding.device_set),
        "batched": diff(batched), "padded": diff(predict_frames(both, frames, 8)), "odd": diff(both(frames[:7])),
        "track_video": diff(tracked), "finite": bool(np.isfinite(reference).all()),
        "likelihood": float(np.abs(tracked[..., 2] - reference[..., 2]).max()),
    }))
""")


def _run_on_two_devices(script: str, *args: str) -> dict:
    """The RESULT json that `script` prints, run with two forced CPU devices."""
    flags = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    env = dict(os.environ, XLA_FLAGS=flags, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))[7:])


def test_two_devices_give_the_keypoints_of_one(tmp_path):
    got = _run_on_two_devices(SCRIPT, str(tmp_path))
    assert got["devices"] == got["n_devices"] == got["sharded_over"] == 2
    assert got["finite"]
    for key in ("batched", "padded", "odd", "track_video", "gated"):
        assert got[key] <= 1e-5, (key, got)
    assert got["gated_changed"] > 1e-3  # some frames were averaged
    assert got["likelihood"] <= 1e-6, got


TRAIN_SCRIPT = textwrap.dedent("""
    import json
    import jax
    import numpy as np
    from flax import nnx
    from jfacemap.nets.unet import FacemapUNet
    from jfacemap.track import train
    from jfacemap.track.augment import AugmentConfig

    # 4 frames of 64 x 80 with 3 keypoints; random augmentation at a 64-pixel network size (fast)
    yy, xx = np.mgrid[:64, :80]
    rng = np.random.default_rng(2)
    kp = rng.uniform([15, 15], [65, 50], (4, 3, 2)).astype(np.float32)
    kp[1, 2] = np.nan  # an unlabelled point
    frames = np.stack([np.clip(60 + 20 * np.sin(xx / 6.0 + i) + rng.normal(0, 6, xx.shape)
                               + sum(150 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 20.0) for x, y in f[np.isfinite(f[:, 0])]),
                               0, 255) for i, f in enumerate(kp)]).astype(np.uint8)
    names = ["a", "b", "c"]
    recipe = train.get_recipe("base", epochs=3, batch_size=4, lr=2e-3, lr_tail=(), augment=AugmentConfig(size=64))
    small = dict(channels=(8, 8, 16, 16, 16), seed=1)
    two, h2 = train.train_tracker(frames, kp, names, recipe, **small)
    one, h1 = train.train_tracker(frames, kp, names, recipe, devices=jax.devices()[:1], **small)
    leaves = lambda m: [np.asarray(a) for a in jax.tree.leaves(nnx.state(m, nnx.Param, nnx.BatchStat))]
    pairs = list(zip(leaves(two), leaves(one)))  # BatchNorm running statistics included
    start = leaves(FacemapUNet(3, small["channels"], rngs=nnx.Rngs(1)))

    # The compiled step: frames split along the batch over 2 devices, the gradient all-reduced.
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("batch",))
    graphdef, params, stats = nnx.split(two, nnx.Param, nnx.BatchStat)
    tx, step = train.make_train_step(graphdef, recipe, 1, None, 3, None, mesh)
    # placed as in training, so that this compilation is the cached one
    state = jax.device_put(train.TrainState(params, stats, tx.init(params)), train.batch_shardings(mesh)[0])
    compiled = step.lower(state, jax.random.key(0), frames, kp).compile()
    frames_sharding = compiled.input_shardings[0][2]

    # Batch 3, not a multiple of 2: on one device, still training.
    odd, h3 = train.train_tracker(frames[:3], kp[:3], names, recipe.replace(batch_size=3, epochs=2), **small)
    print("RESULT " + json.dumps({
        "devices": len(jax.devices()), "history_devices": [h2[0]["devices"], h1[0]["devices"], h3[0]["devices"]],
        "losses": [h["loss"] for h in h2],
        "loss_diff": max(abs(a["loss"] - b["loss"]) / abs(b["loss"]) for a, b in zip(h2, h1)),
        "params_diff": max(float(np.max(np.abs(a - b) / (np.abs(b) + 1e-3))) for a, b in pairs),
        "params_abs": max(float(np.max(np.abs(a - b))) for a, b in pairs),
        "moved": max(float(np.max(np.abs(a - b))) for a, b in zip(leaves(two), start)),
        "frames_split": frames_sharding.spec == jax.sharding.PartitionSpec("batch"),
        "frames_devices": len(frames_sharding.device_set), "all_reduce": "all-reduce" in compiled.as_text(),
        "model_devices": len(jax.tree.leaves(nnx.state(two))[0].sharding.device_set),
        "odd_finite": bool(np.isfinite([h["loss"] for h in h3]).all() and all(np.isfinite(a).all() for a in leaves(odd))),
    }))
""")


def test_two_devices_train_as_one():
    """Same losses and weights (BatchNorm statistics included: one logical program over the whole batch) on 2
    devices as on 1; observed: losses within 6e-7 relative, weights within 6.4e-7 absolute, 1.1e-4 relative to |w| + 1e-3 (float32
    summation order)."""
    got = _run_on_two_devices(TRAIN_SCRIPT)
    assert got["devices"] == 2
    assert got["history_devices"] == [2, 1, 1]  # batch 4 split in 2; batch 3 on one device
    assert got["frames_split"] and got["frames_devices"] == 2, got
    assert got["all_reduce"], got
    assert got["model_devices"] == 1  # the returned model holds one copy of its weights
    assert got["loss_diff"] <= 1e-5 and got["params_abs"] <= 1e-5 and got["params_diff"] <= 1e-3, got
    assert got["moved"] > 1e-3, got  # training did change the weights
    assert got["odd_finite"], got


def test_train_devices_divide_the_batch():
    devices = list(range(8))  # stand-ins: only the count matters
    assert [len(train_devices(b, devices)) for b in (8, 16, 4, 6, 5, 7, 1, 3)] == [8, 8, 4, 6, 5, 7, 1, 3]
    assert [len(train_devices(b, devices[:2])) for b in (4, 3, 1)] == [2, 1, 1]
    assert train_devices(6, devices) == devices[:6]


CORES_SCRIPT = textwrap.dedent("""
    import json, os
    import jax, jax.numpy as jnp
    from jfacemap.track.cpu_devices import use_cpu_cores
    first = use_cpu_cores(int(os.environ["WANT"]))
    jnp.ones(3).block_until_ready()  # JAX's backends are up from here
    later = use_cpu_cores(5)
    print(json.dumps({"first": first, "later": later, "devices": len(jax.devices("cpu"))}))
""")


def _cores_run(want: int, xla_flags: str = "") -> dict:
    env = dict(os.environ, WANT=str(want), XLA_FLAGS=xla_flags, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", CORES_SCRIPT], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_use_cpu_cores_sets_the_device_count_before_jax_starts_only():
    # Before the first computation it takes effect; after, it changes nothing (and says so).
    assert _cores_run(3) == {"first": 3, "later": 3, "devices": 3}
    # A count the user set in XLA_FLAGS wins.
    assert _cores_run(3, "--xla_force_host_platform_device_count=2") == {"first": 2, "later": 2, "devices": 2}
