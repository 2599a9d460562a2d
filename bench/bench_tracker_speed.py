"""Tracker speed, the paper's protocol: pre-processing + forward pass +
post-processing of 256x256 uint8 images, jfacemap against the original.

    python bench/bench_tracker_speed.py                 # 1024 images x 10 runs, batch 1, 8, 32, 256
    python bench/bench_tracker_speed.py --quick         # 64 x 3
    python bench/bench_tracker_speed.py --batch-sizes 1 --reps 256 --runs 5
    python bench/bench_tracker_speed.py --threads 1     # one core for both programs

What is timed, per call, from uint8 frames in host memory to keypoints in
host memory (x, y in frame pixels and likelihood):

- jfacemap: `make_predict_fn(model, None, (256, 256))` on a (B, 256, 256)
  numpy uint8 array (host -> device copy, per-frame percentile
  normalisation, network, argmax + offset decoding, map back: one XLA
  program), `block_until_ready`, then `np.asarray` of the (B, 15, 3) result.
  Also `jfacemap-fast`: `make_predict_fn(..., fast=True)` (jfacemap/track/fast_inference.py),
  the same function with an inference-rewritten network (--no-fast to skip).
- original (facemap 1.0.8, PyTorch, in its own venv, see bench/peers.py):
  what `Pose.predict_landmarks` times per batch, calling its own functions:
  `transforms.preprocess_img` (float32, `normalize99`, crop, pad/resize only
  when the frame is not 256 x 256 as `Pose.pose_prediction_setup` decides),
  `pose_helper_functions.predict` (forward under no_grad, argmax, sigmoid,
  offsets) and `transforms.adjust_keypoints`, storing into its prediction
  tensor; under torch.no_grad(), `torch.set_num_threads(threads)`, model in
  eval mode with the SAME weights (ours, written as a torch state_dict).
  The peer venv has a CPU-only torch: on a GPU machine the original still
  runs on the CPU (said in the output).

Protocol: for each batch size B, `runs` runs; a run is ceil(reps / B) calls
(`reps` images; the paper: 1024 images x 10 runs at batch 1), timed as a
whole; the runs alternate between the programs (jfacemap run i, fast run i,
original run i, then run i + 1) so machine noise reaches all. Reported per
B: median over runs of ms per image, frames/s = 1000 / that, and the
speedup = jfacemap frames/s / original frames/s. Before timing: the first
call (jit trace + XLA compile + run; reported as compile time) and one
warm-up call per program. The weights are random (BatchNorm statistics
randomised too) unless --weights gives a torch FMnet state_dict; speed does
not depend on them. A sanity line compares the keypoints of both programs
(and of the fast path) on one frame.

Threads (--threads N, default: every core this process may use, for both):
XLA:CPU has no thread-count option reachable from JAX 0.10 (the PJRT CPU
client sizes its intra-op pool, the `tf_XLAEigen` threads, from the CPUs the
process may run on; `intra_op_parallelism_threads` is an XLA build option
JAX does not expose). So N < all pins this process, and with it the
original's subprocess, to the first N cores (`os.sched_setaffinity`, before
JAX starts), and N = 1 also sets `XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`;
the original gets `torch.set_num_threads(N)` and OMP/MKL_NUM_THREADS=N.

Writes bench/results/tracker_speed_<device kind>.json (bench.common.write_results).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jfacemap.skeleton import FACEMAP_BODYPARTS  # noqa: E402

BODYPARTS = list(FACEMAP_BODYPARTS)
SIZE = 256


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=1024, help="images per run (ceil(reps / B) calls); paper: 1024")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per program and batch size; paper: 10")
    ap.add_argument("--quick", action="store_true", help="64 images x 3 runs (overrides --reps/--runs)")
    ap.add_argument("--batch-sizes", default="1,8,32,256", help="comma-separated (default 1,8,32,256)")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads for both (default: all cores)")
    ap.add_argument("--weights", type=Path, help="torch FMnet state_dict (.pt) instead of random weights")
    ap.add_argument("--no-original", action="store_true", help="skip the original program")
    ap.add_argument("--no-fast", action="store_true", help="skip jfacemap.track.fast_inference")
    ap.add_argument("--no-module", action="store_true",
                    help="time only the fast path (tracking's default), not the Flax module itself (still used for the sanity check)")
    ap.add_argument("--name", default=None, help="results name (default tracker_speed_<device kind>)")
    args = ap.parse_args(argv)
    if args.quick:
        args.reps, args.runs = 64, 3
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    if args.reps < 1 or args.runs < 1 or not args.batch_sizes or min(args.batch_sizes) < 1:
        ap.error("--reps, --runs and batch sizes must be >= 1")
    return args


def set_threads(threads: int | None) -> tuple[int, list[int]]:
    """Pin to `threads` cores (see the module docstring). Must run before JAX starts."""
    cores = sorted(os.sched_getaffinity(0))
    n = len(cores) if threads is None else threads
    if not 1 <= n <= len(cores):
        raise SystemExit(f"--threads must be in 1..{len(cores)} (cores this process may use), got {n}")
    if n < len(cores):
        cores = cores[:n]
        os.sched_setaffinity(0, cores)
    if n == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    return n, cores


# ------------------------------------------------------------ the original ---

# Runs INSIDE the facemap venv. argv: weights.pt frames.npy threads.
# Reads one JSON command a line on stdin, answers one "@@"-prefixed JSON line
# (facemap prints to stdout at import, so answers are marked).
PEER_SCRIPT = r"""
import json, sys, time, traceback
import numpy as np
import torch
from facemap.pose.facemap_network import FMnet
from facemap.pose import transforms
from facemap.pose import pose_helper_functions as pose_utils

weights, frames_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
sd = torch.load(weights, map_location="cpu", weights_only=True)
n_out = sd["Conv2_1x1.conv0.weight"].shape[0]
net = FMnet(img_ch=1, output_ch=n_out, labels_id=[str(i) for i in range(n_out)], channels=[16, 32, 64, 128, 200],
            device=torch.device("cpu"), kernel=3, shape=(256, 256), n_upsample=2)
net.load_state_dict(sd, strict=True)
net.eval()
device = net.device
frames = np.load(frames_path)[:, None]  # (N, 1, H, W) uint8, as utils.get_batch_frames(grayscale=True)
Ly, Lx = frames.shape[-2:]
# Pose.pose_prediction_setup without a user bbox: the whole frame, its order (rows first).
bbox = [0, Ly, 0, Lx]
add_padding = (bbox[1] - bbox[0]) != (bbox[3] - bbox[2])
resize = (bbox[1] - bbox[0]) != 256 or (bbox[3] - bbox[2]) != 256
y1, _, x1, _ = bbox  # as Pose.predict_landmarks reads it
pred_data = torch.zeros(len(frames), n_out, 3)

def call(imall):
    # The body of Pose.predict_landmarks' loop between its t0 and inference_time.
    with torch.no_grad():
        im, postpad_shape, pads = transforms.preprocess_img(imall, bbox, add_padding, resize, device=device)
        xlabels, ylabels, likelihood = pose_utils.predict(net, im, smooth=False)
        xlabels, ylabels = transforms.adjust_keypoints(xlabels, ylabels, crop_xy=(x1, y1), padding=pads,
                                                       current_size=(256, 256), desired_size=postpad_shape)
        b = imall.shape[0]
        pred_data[:b, :, 0] = xlabels
        pred_data[:b, :, 1] = ylabels
        pred_data[:b, :, 2] = likelihood
    return pred_data[:b]

def answer(obj):
    sys.stdout.write("@@" + json.dumps(obj) + "\n")
    sys.stdout.flush()

for line in sys.stdin:
    cmd = json.loads(line)
    try:
        op = cmd["op"]
        if op == "quit":
            break
        if op == "info":
            answer({"torch": torch.__version__, "threads": torch.get_num_threads(),
                    "interop_threads": torch.get_num_interop_threads(), "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
                    "cuda_available": torch.cuda.is_available(), "device": str(device),
                    "resize": bool(resize), "add_padding": bool(add_padding)})
        elif op == "time":
            imall = np.ascontiguousarray(frames[: cmd["batch"]])
            t0 = time.perf_counter()
            for _ in range(cmd["calls"]):
                call(imall)
            answer({"seconds": time.perf_counter() - t0})
        elif op == "each":  # per-call seconds (bench/bench_live.py: latency percentiles)
            imall = np.ascontiguousarray(frames[: cmd["batch"]])
            each = []
            for _ in range(cmd["calls"]):
                t0 = time.perf_counter()
                call(imall)
                each.append(time.perf_counter() - t0)
            answer({"each": each})
        elif op == "keypoints":
            answer({"keypoints": call(np.ascontiguousarray(frames[: cmd["batch"]])).numpy().tolist()})
        else:
            answer({"error": "unknown op " + op})
    except Exception as err:  # report, keep serving
        answer({"error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()[-1500:]})
"""


class Original:
    """The original program in its venv, driven through a pipe."""

    def __init__(self, python: Path, weights: Path, frames: Path, threads: int):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONNOUSERSITE="1")
        env.pop("XLA_FLAGS", None)
        self.proc = subprocess.Popen(
            [str(python), "-c", PEER_SCRIPT, str(weights), str(frames), str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith("@@"):
                return json.loads(line[2:])
        raise RuntimeError(f"original program exited: {self.proc.stderr.read()[-2000:]}")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask(op="quit")
            except (RuntimeError, BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# ----------------------------------------------------------------- helpers ---


def synthetic_frames(n: int, size: int = SIZE, seed: int = 0):
    """Smooth texture + a bright moving blob + noise: uint8 frames like a face camera's."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, size, size), np.uint8)
    for i in range(n):
        f = 60 + 30 * np.sin(xx / 17.0 + 0.1 * i) + 25 * np.cos(yy / 11.0) + rng.normal(0, 10, (size, size))
        f += 120 * np.exp(-((xx - 90 - (i % 80)) ** 2 + (yy - 110) ** 2) / 400.0)
        out[i] = np.clip(f, 0, 255).astype(np.uint8)
    return out


def random_model(seed: int = 0):
    """FacemapUNet(15) with torch-like init and randomised BatchNorm
    statistics (as bench/peers.py's random FMnet), heatmap bias + 0.5."""
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from jfacemap.nets.unet import FacemapUNet

    model = FacemapUNet(len(BODYPARTS), rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed + 1)
    for _, module in nnx.iter_graph(model):
        if isinstance(module, nnx.BatchNorm):
            c = module.scale.get_value().shape
            module.scale.set_value(jnp.asarray(rng.uniform(0.5, 1.5, c), jnp.float32))
            module.bias.set_value(jnp.asarray(rng.normal(0.0, 0.2, c), jnp.float32))
            module.mean.set_value(jnp.asarray(rng.normal(0.0, 0.5, c), jnp.float32))
            module.var.set_value(jnp.asarray(rng.uniform(0.5, 2.0, c), jnp.float32))
    model.heatmap_head.bias.set_value(model.heatmap_head.bias.get_value() + 0.5)
    return model


def device_kind_name(device) -> str:
    kind = device.platform if device.platform == "cpu" else device.device_kind
    return re.sub(r"[^a-z0-9]+", "_", kind.lower()).strip("_")


# -------------------------------------------------------------------- main ---


def main(argv=None) -> None:
    args = parse_args(argv)
    threads, cores = set_threads(args.threads)

    import jax
    import numpy as np

    from bench.common import machine_info, print_table, write_results
    from jfacemap.io.torch_weights import load_torch_state_dict, save_torch_state_dict
    from jfacemap.nets.convert import unet_from_torch_state_dict, unet_to_torch_state_dict
    from jfacemap.track.inference import make_predict_fn

    device = jax.devices()[0]
    on_cpu = device.platform == "cpu"
    model = unet_from_torch_state_dict(load_torch_state_dict(args.weights)) if args.weights else random_model()
    frames = synthetic_frames(max(args.batch_sizes))

    # "jfacemap" runs the Flax module itself; "jfacemap-fast" its inference rewrite (the default in tracking).
    programs: dict = {"jfacemap": make_predict_fn(model, None, (SIZE, SIZE), fast=False)}
    if not args.no_fast:
        programs["jfacemap-fast"] = make_predict_fn(model, None, (SIZE, SIZE), fast=True)
        # The same with the shipped model's keypoint-layout prior on the decoder (tracking's default
        # for `base`): what the prior costs per frame.
        from jfacemap.track.model_store import read_model_json
        from jfacemap.track.shape_prior import ShapePrior

        base_json = read_model_json("base")
        if "shape_prior" in base_json and len(base_json["bodyparts"]) == model.n_keypoints:
            model.shape_prior = ShapePrior.from_json(base_json["shape_prior"])
            programs["jfacemap-fast+prior"] = make_predict_fn(model, None, (SIZE, SIZE), fast=True)
            if base_json.get("flip_average"):  # and with its flip averaging: the shipped base's full default
                programs["jfacemap-fast+prior+flip"] = make_predict_fn(model, None, (SIZE, SIZE), fast=True,
                                                                       flip_average=True)
            model.shape_prior = None

    def jf_call(fn, batch):
        out = fn(batch)
        out.block_until_ready()
        return np.asarray(out)

    compile_seconds: dict = {}  # (program, batch) -> first call: trace + XLA compile + run

    def first_call(name, batch):
        key = (name, len(batch))
        t0 = time.perf_counter()
        out = jf_call(programs[name], batch)
        compile_seconds.setdefault(key, time.perf_counter() - t0)
        return out

    notes = []
    original = None
    original_info = None
    tmp = tempfile.TemporaryDirectory(prefix="jfacemap-speed-")
    if not args.no_original:
        try:
            from bench.peers import facemap_python

            python = facemap_python()
            weights = save_torch_state_dict(Path(tmp.name) / "weights.pt", unet_to_torch_state_dict(model))
            np.save(Path(tmp.name) / "frames.npy", frames)
            original = Original(python, weights, Path(tmp.name) / "frames.npy", threads)
            original_info = original.ask(op="info")
            if "error" in original_info:
                raise RuntimeError(original_info["error"])
        except Exception as err:  # noqa: BLE001 - report and go on without it
            notes.append(f"original program unavailable: {err}")
            if original is not None:
                original.close()
            original = original_info = None
    if original is not None and not on_cpu:
        notes.append(
            f"jfacemap runs on {device.device_kind}; the original runs on the CPU (torch "
            f"{original_info['torch']}, CPU-only wheel in its venv; no CUDA torch here), so the ratio "
            "compares a GPU with a CPU"
        )

    info = machine_info(pinned_cores=cores if args.threads else None)
    info["jax_devices"] = [str(d) for d in jax.devices()]
    info["jax_backend"] = jax.default_backend()
    info["device_kind"] = device.device_kind
    info["threads"] = threads
    info["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    info["xla_cpu_threads"] = "one per allowed core (affinity)" if on_cpu else None
    info["original"] = original_info
    print(
        f"jfacemap on {info['jax_devices']} ({info['device_kind']}); CPU {info['processor']}, "
        f"{info['cpu_count']} cores, {threads} threads for both; XLA_FLAGS={info['xla_flags']!r}"
    )
    if original_info:
        print(
            f"original: facemap 1.0.8, torch {original_info['torch']} on {original_info['device']}, "
            f"{original_info['threads']} threads (interop {original_info['interop_threads']}), "
            f"mkldnn {original_info['mkldnn']}"
        )
    print(f"protocol: {args.reps} images x {args.runs} runs per batch size, runs alternating between programs")
    for note in notes:
        print("NOTE:", note)

    # ---- sanity: same keypoints on one frame
    sanity = {}
    one = frames[:1]
    ref = first_call("jfacemap", one)
    if "jfacemap-fast" in programs:
        fast = first_call("jfacemap-fast", one)
        sanity["fast_vs_jfacemap_max_px"] = float(np.abs(fast[..., :2] - ref[..., :2]).max())
        sanity["fast_vs_jfacemap_max_likelihood"] = float(np.abs(fast[..., 2] - ref[..., 2]).max())
    if original is not None:
        got = original.ask(op="keypoints", batch=1)
        if "error" in got:
            notes.append(f"original keypoints failed: {got['error']}")
        else:
            theirs = np.asarray(got["keypoints"], np.float32)
            sanity["original_vs_jfacemap_max_px"] = float(np.abs(theirs[..., :2] - ref[..., :2]).max())
            sanity["original_vs_jfacemap_max_likelihood"] = float(np.abs(theirs[..., 2] - ref[..., 2]).max())
    print("sanity (one frame, batch 1): " + ", ".join(f"{k} {v:.2e}" for k, v in sanity.items()))

    if args.no_module and "jfacemap-fast" in programs:
        del programs["jfacemap"]

    def payload() -> dict:
        return {
            "benchmark": "tracker speed: pre-processing + forward + post-processing, 256x256 uint8 frames",
            "protocol": {
                "reps_images_per_run": args.reps,
                "runs": args.runs,
                "batch_sizes": args.batch_sizes,
                "threads": threads,
                "alternating": True,
                "weights": str(args.weights) if args.weights else "random (randomised BatchNorm statistics)",
                "jfacemap": None if "jfacemap" not in programs else
                "make_predict_fn(model, None, (256, 256), fast=False) on host uint8 frames; block_until_ready + np.asarray",
                "jfacemap-fast": None if args.no_fast else "make_predict_fn(..., fast=True), tracking's default path",
                "jfacemap-fast+prior": None if args.no_fast else "the same, decoding with the shipped base's layout prior",
                "jfacemap-fast+prior+flip": None if "jfacemap-fast+prior+flip" not in programs else
                "the same, also averaging each frame's outputs with its mirror image's (the shipped base's default)",
                "original": None
                if args.no_original
                else "facemap 1.0.8: transforms.preprocess_img + pose_helper_functions.predict + "
                "transforms.adjust_keypoints (Pose.predict_landmarks' timed body), torch CPU, no_grad",
            },
            "machine": info,
            "sanity": sanity,
            "rows": rows,
            "detail": detail,
            "notes": notes,
        }

    results_name = args.name or f"tracker_speed_{device_kind_name(device)}"

    # ---- timing
    rows, detail = [], {}
    for b in args.batch_sizes:
        batch = np.ascontiguousarray(frames[:b])
        calls = max(1, math.ceil(args.reps / b))
        images = calls * b
        per = {name: [] for name in programs}
        for name, fn in programs.items():
            first_call(name, batch)  # trace + compile + first run (once per batch size)
            jf_call(fn, batch)  # warm-up
        orig_error = None
        if original is not None:
            per["original"] = []
            warm = original.ask(op="time", batch=b, calls=2)  # first call + warm-up
            if "error" in warm:
                orig_error = warm["error"]
                notes.append(f"original at batch {b}: {orig_error}")
        for run in range(args.runs):
            for name, fn in programs.items():
                t0 = time.perf_counter()
                for _ in range(calls):
                    jf_call(fn, batch)
                per[name].append((time.perf_counter() - t0) / images * 1e3)
            if original is not None and orig_error is None:
                got = original.ask(op="time", batch=b, calls=calls)
                if "error" in got:
                    orig_error = got["error"]
                    notes.append(f"original at batch {b}: {orig_error}")
                else:
                    per["original"].append(got["seconds"] / images * 1e3)
            print(
                f"  batch {b} run {run + 1}/{args.runs}: "
                + ", ".join(f"{k} {v[-1]:.2f}" for k, v in per.items() if v)
                + " ms/image",
                flush=True,
            )
        row = {"batch": b, "images/run": images}
        for name, ms in per.items():
            if ms:
                med = statistics.median(ms)
                row[f"{name} ms/img"] = med
                row[f"{name} fps"] = 1e3 / med
        if per.get("original"):
            if "jfacemap ms/img" in row:
                row["speedup"] = row["original ms/img"] / row["jfacemap ms/img"]
            if "jfacemap-fast ms/img" in row:
                row["fast speedup"] = row["original ms/img"] / row["jfacemap-fast ms/img"]
            if "jfacemap-fast+prior+flip ms/img" in row:
                row["flip speedup"] = row["original ms/img"] / row["jfacemap-fast+prior+flip ms/img"]
        rows.append(row)
        detail[str(b)] = {
            "calls_per_run": calls,
            "images_per_run": images,
            "ms_per_image_runs": per,
            "compile_seconds": {name: compile_seconds[(name, b)] for name in programs},
        }
        if orig_error:
            detail[str(b)]["original_error"] = orig_error
        write_results(results_name, payload())  # after every batch size: a cut run keeps what it finished

    if original is not None:
        original.close()
    tmp.cleanup()

    print()
    columns = ["batch", "images/run"]
    for name in (*programs, "original"):
        columns += [f"{name} ms/img", f"{name} fps"]
    columns += ["speedup", "fast speedup", "flip speedup"]
    columns = [c for c in columns if any(c in r for r in rows)]
    print_table(rows, columns)
    print("speedup = jfacemap frames/s / original frames/s (> 1: jfacemap faster); medians over runs")
    print(
        "compile (first call: trace + XLA compile + run), s: "
        + "; ".join(
            f"batch {b}: " + ", ".join(f"{k} {v:.2f}" for k, v in d["compile_seconds"].items())
            for b, d in detail.items()
        )
    )
    for note in notes:
        print("NOTE:", note)

    path = write_results(results_name, payload())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
