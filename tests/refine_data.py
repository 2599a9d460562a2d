"""Small inputs shared by the refine tests: a short video with known content and a tiny tracker.

Not a test module (no test_ prefix); the refine tests import it from their folder.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import numpy as np

BODYPARTS = ["nose", "eye", "paw"]
HEIGHT, WIDTH, N_FRAMES = 48, 64, 30


def make_video(path: Path) -> Path:
    """A (N_FRAMES, HEIGHT, WIDTH) video: a bright square drifting right over noise."""
    from jfacemap.io.video import write_video

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 60, (N_FRAMES, HEIGHT, WIDTH)).astype(np.uint8)
    for t in range(N_FRAMES):
        frames[t, 20:28, 5 + t : 13 + t] = 230
    return write_video(path, frames, fps=25.0)


def make_tiny_model(folder: Path) -> Path:
    """A FacemapUNet with 4-8-8 channels (compiles and trains in seconds) saved as a model folder."""
    from flax import nnx

    from jfacemap.nets.unet import FacemapUNet
    from jfacemap.track.model_store import save_tracker

    model = FacemapUNet(len(BODYPARTS), (4, 8, 8), 1, rngs=nnx.Rngs(0))
    # A raised heatmap bias: every keypoint gets a peak (an all-zero heatmap would be NaN, not shown).
    model.heatmap_head.bias.set_value(model.heatmap_head.bias.get_value() + 0.5)
    model.eval()
    return save_tracker(folder, model, BODYPARTS, {"note": "tiny test model"})


def request(url: str, method: str = "GET", path: str = "/", body=None, raw: bytes | None = None,
            headers: dict | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body bytes) of one HTTP request to the server at `url`, sent verbatim
    (http.client does not normalise '..' in the path, unlike a browser)."""
    host_port = url.split("//", 1)[1].rstrip("/")
    conn = http.client.HTTPConnection(host_port, timeout=60)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    hdrs = dict(headers or {})
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def get_json(url: str, method: str = "GET", path: str = "/", body=None, **kw) -> tuple[int, dict]:
    status, _, data = request(url, method, path, body, **kw)
    return status, json.loads(data)
