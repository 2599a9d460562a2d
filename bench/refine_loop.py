"""The refinement loop through the page's HTTP API, scripted: label 10 frames, train, measure.

    python -m bench.refine_loop                 # ~5-10 min on 2 busy CPU cores
    python -m bench.refine_loop --quick         # smoke run: 2 frames, 1 epoch

Starting from the shipped `base` model on a synthetic "other lab" (lab2)
video it never saw, the script does what a person does in the browser:
`jfacemap.refine.serve` picks frames (mixed: half random, half where the
model is least sure), each picked frame is corrected by POST /api/labels
with the renderer's ground truth (keypoints outside the frame marked not
visible), POST /api/train fine-tunes (the finetune preset) while GET
/api/train is polled, and the trained round is saved. The error is then
measured on held-out frames of the same video, never labelled, for the base
model and the refined one, in 256 x 256 frame pixels. Writes
bench/results/refine_loop.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bench.common import machine_info, write_results  # noqa: E402

SEED = 320_000  # a lab2 mouse outside every training and test seed range of the base model


def call(url: str, path: str, body=None) -> dict:
    """One JSON request to the refine server (POST when `body` is given)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url.rstrip("/") + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def render_other_lab(folder: Path, n_frames: int, seed: int = SEED) -> tuple[Path, np.ndarray, list[str]]:
    """(video, ground truth (T, K, 3), bodyparts) of a lab2 session."""
    from jfacemap.io.keypoints import read_facemap_pose
    from jfacemap.synth.export import save_synthetic_session

    files = save_synthetic_session(folder / "other-lab.mp4", n_frames=n_frames, seed=seed, style="lab2")
    truth, names = read_facemap_pose(files.keypoints)
    return files.video, truth, names


def correct_with_truth(url: str, frames: list[dict], truth: np.ndarray, names: list[str]) -> int:
    """POST the ground truth of each frame as the user's correction; returns how many were sent."""
    for f in frames:
        gt = truth[f["index"]]
        points = []
        for p in f["keypoints"]:
            x, y = (float(v) for v in gt[names.index(p["name"]), :2])
            inside = np.isfinite([x, y]).all() and 0 <= x <= f["width"] - 1 and 0 <= y <= f["height"] - 1
            points.append({"name": p["name"], "x": x, "y": y, "visible": True} if inside
                          else {"name": p["name"], "visible": False})
        call(url, "/api/labels", {"frame": f["id"], "keypoints": points})
    return len(frames)


def train_from_page(url: str, epochs: int | None, log=print) -> dict:
    """POST /api/train, poll GET /api/train to the end; the finished job."""
    call(url, "/api/train", {} if epochs is None else {"epochs": epochs})
    shown = -1
    while (job := call(url, "/api/train"))["state"] == "running":
        if job.get("epoch", 0) != shown:
            shown = job.get("epoch", 0)
            last = job["history"][-1] if job["history"] else None
            log(f"  {job['stage']} epoch {shown}/{job['epochs']}" + (f" loss {last['loss']:.3f}" if last else ""))
        time.sleep(1.0)
    if job["state"] != "done":
        raise RuntimeError(f"training failed: {job.get('error')}")
    return job


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=10, help="frames corrected through the page")
    ap.add_argument("--pick", default="mixed")
    ap.add_argument("--epochs", type=int, default=None, help="default: the finetune preset's plan (36 epochs, or more for >= 300 steps)")
    ap.add_argument("--session-frames", type=int, default=2000)
    ap.add_argument("--heldout", type=int, default=100, help="held-out frames the error is measured on")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.frames, args.epochs, args.session_frames, args.heldout = 2, 1, 200, 10

    from jfacemap.refine import serve
    from jfacemap.track.model_store import load_tracker
    from jfacemap.io.video import read_frames
    from jfacemap.track.train import evaluate_tracker

    work = Path(tempfile.mkdtemp(prefix="jfacemap-refine-loop-"))
    video, truth, names = render_other_lab(work, args.session_frames)
    t0 = time.perf_counter()
    server = serve(video, model="base", project=work / "project", frames=args.frames, pick=args.pick, new_frames=0)
    try:
        print(f"serving {server.url} ({time.perf_counter() - t0:.0f} s to pick and predict)", flush=True)
        state = call(server.url, "/api/state")
        correct_with_truth(server.url, state["frames"], truth, names)
        t1 = time.perf_counter()
        job = train_from_page(server.url, args.epochs, log=lambda s: print(s, flush=True))
        train_seconds = time.perf_counter() - t1
    finally:
        server.stop()
    result = job["result"]
    labelled = sorted(f["index"] for f in state["frames"])
    free = np.setdiff1d(np.arange(len(truth)), labelled)
    heldout = free[np.round(np.linspace(0, len(free) - 1, args.heldout)).astype(int)]
    images = read_frames(video, heldout)
    base, bodyparts, _ = load_tracker("base")
    refined, _, _ = load_tracker(result["model"])
    order = [names.index(b) for b in bodyparts]
    gt = truth[heldout][:, order]
    errors = {k: evaluate_tracker(m, images, gt, bodyparts) for k, m in (("base", base), ("refined", refined))}
    summary = {k: {s: e[s] for s in ("mean_px", "median_px", "p90_px", "n_points")} for k, e in errors.items()}
    print(f"held-out {len(heldout)} frames: base {summary['base']['mean_px']:.2f} px -> refined "
          f"{summary['refined']['mean_px']:.2f} px (median {summary['base']['median_px']:.2f} -> "
          f"{summary['refined']['median_px']:.2f})")
    print(f"page's corrected-frame error: {result['before']['mean_px']:.2f} -> {result['after']['mean_px']:.2f} px")
    if not args.quick:
        doc = {"benchmark": "refinement loop through the HTTP API (scripted corrections = ground truth)",
               "video": {"style": "lab2", "seed": SEED, "frames": int(len(truth)), "size": [256, 256]},
               "pick": args.pick, "labelled_frames": labelled, "epochs": job["epochs"],
               "heldout_frames": int(len(heldout)), "heldout_error": summary,
               "corrected_frames_error": {"before": result["before"], "after": result["after"]},
               "train_seconds": train_seconds, "history": job["history"],
               "compare": "bench/results/finetune_curve.json (10 frames of 10 mice: 103.7 -> 6.6 px)",
               "machine": machine_info()}
        print(f"wrote {write_results('refine_loop', doc)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
