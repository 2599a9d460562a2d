"""Data-parallel tracking: with several local devices a batch is split across them, and the keypoints equal a
one-device run. Two CPU devices are forced in a fresh interpreter (the flag must be set before JAX starts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

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
    print("RESULT " + json.dumps({
        "devices": len(jax.devices()), "n_devices": both.n_devices, "sharded_over": len(batched.sharding.device_set),
        "batched": diff(batched), "padded": diff(predict_frames(both, frames, 8)), "odd": diff(both(frames[:7])),
        "track_video": diff(tracked), "finite": bool(np.isfinite(reference).all()),
        "likelihood": float(np.abs(tracked[..., 2] - reference[..., 2]).max()),
    }))
""")


def test_two_devices_give_the_keypoints_of_one(tmp_path):
    flags = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    env = dict(os.environ, XLA_FLAGS=flags, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert got["devices"] == got["n_devices"] == got["sharded_over"] == 2
    assert got["finite"]
    for key in ("batched", "padded", "odd", "track_video"):
        assert got[key] <= 1e-5, (key, got)
    assert got["likelihood"] <= 1e-6, got
