"""Virtual environments for peer programs that cannot share ours (SPEC section 8).

The original Facemap (1.0.8) pins numpy<2 and needs torch, so it lives in its own
venv, built on first use and reused afterwards. Tests and benchmarks talk to it
through subprocesses and files, never by importing it here.

    from bench.peers import facemap_python
    python = facemap_python()          # builds the venv once (a few minutes)
    subprocess.run([str(python), "script.py"], check=True)

Location: $JFACEMAP_PEER_DIR, else ~/.cache/jfacemap-peers; the facemap venv is
<that>/facemap-1.0.8. A marker file records a finished build (and how long it
took), a lock file keeps two processes from building it at once.

The HMM benchmark's peers (dynamax, which brings tensorflow-probability, and
hmmlearn) live in <that>/hmm-peers, built the same way by `hmm_peers_python()`
(`python -m bench.peers hmm` builds it by hand, ~2 min).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from jfacemap.skeleton import FACEMAP_BODYPARTS

FACEMAP_VERSION = "1.0.8"
# A CPU wheel of this version is on these machines; a plain `torch` pulls GBs of CUDA.
TORCH_REQUIREMENT = "torch==2.13.0"
# facemap's runtime needs, installed by hand because its own pins conflict with
# ours and matplotlib/pandas are used but not declared.
FACEMAP_RUNTIME = [
    "numpy<2",
    "scipy",
    "natsort",
    "tqdm",
    "numba",
    "opencv-python-headless<4.10",
    "h5py",
    "scikit-learn",
    "matplotlib",
    "pandas",
]
MARKER = "jfacemap-peer-ready.json"


class PeerUnavailable(RuntimeError):
    """The peer environment could not be built (offline, no wheel, ...)."""


def peer_root() -> Path:
    """Folder holding all peer venvs: $JFACEMAP_PEER_DIR or ~/.cache/jfacemap-peers."""
    env = os.environ.get("JFACEMAP_PEER_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "jfacemap-peers"


def facemap_venv_dir() -> Path:
    return peer_root() / f"facemap-{FACEMAP_VERSION}"


def _python_in(venv: Path) -> Path:
    return venv / "bin" / "python"


def facemap_ready() -> bool:
    """True when the facemap venv has been built completely (marker present)."""
    return (facemap_venv_dir() / MARKER).is_file()


def facemap_python(build: bool = True, quiet: bool = True) -> Path:
    """Path of the python of the original-Facemap venv, building it if needed.

    Idempotent and safe to call from several processes at once (file lock).
    Raises PeerUnavailable (one line) when the build fails or `build` is False
    and the venv is not there.
    """
    return _built_venv(facemap_venv_dir(), "facemap", _build_facemap, build, quiet)


def _built_venv(venv: Path, what: str, builder, build: bool, quiet: bool) -> Path:
    """The python of `venv`, running builder(venv, quiet) first if its MARKER is missing,
    under a file lock (another process may be building it)."""
    if (venv / MARKER).is_file():
        return _python_in(venv)
    if not build:
        raise PeerUnavailable(f"{what} peer venv not built at {venv}")
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / MARKER).is_file():
            builder(venv, quiet)
    return _python_in(venv)


def _fresh_venv(venv: Path, quiet: bool) -> list[str]:
    """Create `venv` anew (removing a half-built one from an interrupted run); returns its pip install command."""
    if venv.exists():
        shutil.rmtree(venv)
    _run([sys.executable, "-m", "venv", str(venv)], quiet)
    return [str(_python_in(venv)), "-m", "pip", "install", "--disable-pip-version-check"] + (["-q"] if quiet else [])


def _build_facemap(venv: Path, quiet: bool) -> None:
    start = time.perf_counter()
    pip = _fresh_venv(venv, quiet)
    steps = [
        pip + [TORCH_REQUIREMENT],
        pip + ["--no-deps", f"facemap=={FACEMAP_VERSION}"],
        pip + FACEMAP_RUNTIME,
    ]
    for cmd in steps:
        _run(cmd, quiet)
    # Check that the network module imports (offline, no GUI, no weight download).
    _run([str(_python_in(venv)), "-c", "import facemap.pose.facemap_network"], quiet)
    record = {
        "facemap": FACEMAP_VERSION,
        "torch": TORCH_REQUIREMENT,
        "runtime": FACEMAP_RUNTIME,
        "build_seconds": round(time.perf_counter() - start, 1),
        "built": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (venv / MARKER).write_text(json.dumps(record, indent=2) + "\n")


def _run(cmd: list[str], quiet: bool) -> None:
    result = subprocess.run(cmd, capture_output=quiet, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout or "").strip().splitlines()[-1:] if quiet else []
        raise PeerUnavailable(f"peer build step failed ({' '.join(cmd[:6])} ...): {' '.join(tail)}")


def run_facemap_script(script: str, *args: str, timeout: float = 600) -> str:
    """Run `script` (Python source) with the facemap venv's python and
    `args` as sys.argv[1:]; returns stdout. Raises RuntimeError with the
    stderr tail when it fails."""
    python = facemap_python()
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONNOUSERSITE="1")
    result = subprocess.run(
        [str(python), "-c", script, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )
    if result.returncode != 0:
        raise RuntimeError(f"facemap peer script failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


# Runs INSIDE the facemap venv (torch + facemap 1.0.8), never imported here.
# argv: <mode> <out_dir> ...; outputs go to <out_dir>.
#   net <seed> <n_images>
#       random FMnet (randomised BatchNorm statistics too) -> fmnet.pt, and its
#       eval-mode outputs on random images -> net.npz (images NCHW, heatmap,
#       locx, locy)
#   run <weights.pt> <images.npy>
#       torch.load(weights_only=True) + FMnet.load_state_dict(strict) of a
#       state_dict, eval-mode outputs on (N, 256, 256) images -> run.npz
#   pipeline <weights.pt> <frames.npy> <x1> <x2> <y1> <y2>
#       the original's own pre-processing (transforms.preprocess_img),
#       prediction (pose_helper_functions.predict) and mapping back
#       (transforms.adjust_keypoints), frame by frame (batch 1, as its CLI),
#       bbox in ITS order: (x1, x2) = row range, (y1, y2) = column range
#       -> pipeline.npz (keypoints (N, K, 3) x, y, likelihood; inputs; pads)
#   tensors
#       torch.save of strided / offset views and several dtypes -> tensors.pt,
#       their values -> tensors.npz
# Python source, for scripts run INSIDE the facemap venv: the original's own inference,
# frame by frame (batch 1, as its CLI), from frames to keypoints in frame pixels.
ORIGINAL_PIPELINE = r"""
def original_pipeline(net, frames, bbox):
    # (N, H, W) frames -> ((N, K, 3) x, y, likelihood, (N, 256, 256) inputs, pads, postpad shape);
    # bbox in ITS order: (x1, x2) = row range, (y1, y2) = column range.
    import numpy as np
    import torch
    from facemap.pose import transforms
    from facemap.pose import pose_helper_functions as pose_utils

    y1, _, x1, _ = bbox  # as Pose.predict_landmarks reads it
    keypoints, inputs = [], []
    for frame in frames:
        im, postpad_shape, pads = transforms.preprocess_img(
            frame[None, None], bbox, add_padding=True, resize=True, device=torch.device("cpu"))
        xl, yl, lik = pose_utils.predict(net, im, smooth=False)
        xl, yl = transforms.adjust_keypoints(xl, yl, crop_xy=(x1, y1), padding=pads,
                                             current_size=(256, 256), desired_size=postpad_shape)
        keypoints.append(torch.stack([xl, yl, lik], dim=-1).numpy())
        inputs.append(im[:, 0].numpy())
    return np.concatenate(keypoints).astype(np.float32), np.concatenate(inputs), pads, postpad_shape
"""

FACEMAP_SCRIPT = r"""
import sys
import numpy as np
import torch
from facemap.pose.facemap_network import FMnet
from facemap.pose import transforms
from facemap.pose import pose_helper_functions as pose_utils
__PIPELINE__

torch.set_num_threads(1)
BODYPARTS = __BODYPARTS__  # filled in from jfacemap.skeleton (jfacemap is not installed in the peer venv)

def make_net(n_out=15):
    return FMnet(img_ch=1, output_ch=n_out, labels_id=BODYPARTS[:n_out], channels=[16, 32, 64, 128, 200],
                 device=torch.device("cpu"), kernel=3, shape=(256, 256), n_upsample=2)

def load_net(path):
    sd = torch.load(path, map_location="cpu", weights_only=True)
    net = make_net(sd["Conv2_1x1.conv0.weight"].shape[0])
    net.load_state_dict(sd, strict=True)
    return net.eval()

mode, out = sys.argv[1], sys.argv[2]
if mode == "net":
    seed, n = int(sys.argv[3]), int(sys.argv[4])
    torch.manual_seed(seed)
    net = make_net()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        net.Conv2_1x1[0].bias.add_(0.5)  # keep most heatmap cells above the ReLU
    torch.save(net.state_dict(), out + "/fmnet.pt")
    net.eval()
    images = torch.rand(n, 1, 256, 256, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        hm, locx, locy = net(images)
    np.savez(out + "/net.npz", images=images.numpy(), heatmap=hm.numpy(), locx=locx.numpy(), locy=locy.numpy())
elif mode == "run":
    net = load_net(sys.argv[3])
    images = torch.from_numpy(np.load(sys.argv[4]).astype(np.float32))[:, None]
    with torch.no_grad():
        hm, locx, locy = net(images)
    np.savez(out + "/run.npz", heatmap=hm.numpy(), locx=locx.numpy(), locy=locy.numpy())
elif mode == "pipeline":
    net = load_net(sys.argv[3])
    keypoints, inputs, pads, postpad_shape = original_pipeline(net, np.load(sys.argv[4]),
                                                               [int(v) for v in sys.argv[5:9]])
    np.savez(out + "/pipeline.npz", keypoints=keypoints, inputs=inputs, pads=np.array(pads),
             postpad_shape=np.array(tuple(postpad_shape)))
elif mode == "tensors":
    g = torch.Generator().manual_seed(0)
    base = torch.randn(5, 7, generator=g)
    tensors = {
        "transposed": base.t(),
        "offset_view": base[2:, 1:5],
        "strided": base[::2, ::3],
        "float64": torch.randn(3, 2, generator=g, dtype=torch.float64),
        "float16": torch.randn(4, generator=g).half(),
        "int64": torch.arange(-3, 5),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(7, dtype=torch.int64),
        "empty": torch.zeros(0, 3),
    }
    torch.save(tensors, out + "/tensors.pt")
    np.savez(out + "/tensors.npz", **{k: v.numpy() for k, v in tensors.items()})
    bn = torch.nn.BatchNorm2d(4)
    torch.save({"epoch": 3, "state_dict": bn.state_dict()}, out + "/checkpoint.pt")
else:
    raise SystemExit("unknown mode " + mode)
""".replace("__BODYPARTS__", repr(list(FACEMAP_BODYPARTS))).replace("__PIPELINE__", ORIGINAL_PIPELINE)


# ---- HMM peers (dynamax, hmmlearn) ------------------------------------------------------------
# Versions that resolved together here (dynamax 1.0.3 runs on jax 0.10 and pulls tfp-nightly);
# a venv of their own keeps tensorflow-probability and scikit-learn out of ours.
HMM_PEERS = ["dynamax==1.0.3", "hmmlearn==0.3.3"]


def hmm_peers_venv_dir() -> Path:
    return peer_root() / "hmm-peers"


def hmm_peers_python(build: bool = True, quiet: bool = True) -> Path:
    """Python of a venv with dynamax and hmmlearn (the HMM benchmark's peers), built on first use.

    Same contract as `facemap_python`: idempotent, locked, PeerUnavailable (one line) on failure.
    """
    return _built_venv(hmm_peers_venv_dir(), "HMM", _build_hmm_peers, build, quiet)


def _build_hmm_peers(venv: Path, quiet: bool) -> None:
    start = time.perf_counter()
    _run(_fresh_venv(venv, quiet) + HMM_PEERS, quiet)
    _run([str(_python_in(venv)), "-c", "import dynamax.hidden_markov_model, hmmlearn.hmm"], quiet)
    record = {"packages": HMM_PEERS, "build_seconds": round(time.perf_counter() - start, 1),
              "built": time.strftime("%Y-%m-%d %H:%M:%S")}
    (venv / MARKER).write_text(json.dumps(record, indent=2) + "\n")


def run_peer_script(python: Path, script: str, *args: str, timeout: float = 3600, threads: int | None = None) -> str:
    """Run `script` (Python source) with a peer venv's `python`, args as sys.argv[1:]; returns stdout.
    Raises RuntimeError with the stderr tail when it fails."""
    env = dict(os.environ, PYTHONNOUSERSITE="1")
    if threads is not None:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    result = subprocess.run([str(python), "-c", script, *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"peer script failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


if __name__ == "__main__":
    if sys.argv[1:] == ["hmm"]:
        print(hmm_peers_python(quiet=False))
        print((hmm_peers_venv_dir() / MARKER).read_text())
        sys.exit(0)
    python = facemap_python(quiet=False)
    print(python)
    print((facemap_venv_dir() / MARKER).read_text())
