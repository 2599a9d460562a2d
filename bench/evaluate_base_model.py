"""Error of a tracker on synthetic sessions it never saw, per style (lab1, the "other lab" lab2, and lab2's look over the real layout).

    python -m bench.evaluate_base_model                 # the shipped 'base' model
    python -m bench.evaluate_base_model --model DIR --sessions 10 --frames 20
    python -m bench.evaluate_base_model --model weights/base --test-set --write   # rescore model.json

Sessions use seeds 200000.. (training uses 0..S-1, its own test 100000..);
frames are sampled like the training set. Writes bench/results/base_model_eval.json.
`--test-set` scores the training run's own test sets instead (seeds 100000..,
5 sessions of 20 frames of 15000, the styles of its model.json, and the real
faces), and `--write` puts the result into the model's model.json
`test_error_px`: for a decoder change made after training.

"lab2+wild" is lab2's look (mirrored, tilted, grey, vignetted, coarse fur,
dark whiskers, blurred, noisy) over the keypoint layout the wild family draws
from the real faces: lab2 keeps the renderer's first keypoint convention
(whiskers high and forward, nose points bunched), which real labels contradict
(bench/render_vs_real.py), so the pair splits a lab2 error into look and
convention. Always scored beside lab2, never trained on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import machine_info, print_table, write_results  # noqa: E402
from bench.train_base_model import TEST_SEED_BASE, build_set, real_face_errors  # noqa: E402
from jfacemap.track.model_store import load_tracker, resolve_model  # noqa: E402
from jfacemap.track.train import evaluate_tracker  # noqa: E402

EVAL_SEED_BASE = 200_000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="base")
    ap.add_argument("--sessions", type=int, default=10, help="held-out sessions per style")
    ap.add_argument("--frames", type=int, default=20, help="frames per session")
    ap.add_argument("--session-frames", type=int, default=3000)
    ap.add_argument("--styles", default="lab1,lab2,lab2+wild",
                    help="comma-separated styles; LOOK+LAYOUT renders LOOK over LAYOUT's keypoint layout")
    ap.add_argument("--test-set", action="store_true", help="the training run's own test sets (see above)")
    ap.add_argument("--write", action="store_true", help="with --test-set: rewrite model.json test_error_px")
    ap.add_argument("--note", default="", help="with --write: why the figures changed (kept in model.json)")
    args = ap.parse_args(argv)

    model, bodyparts, info = load_tracker(args.model)
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    seeds = list(range(EVAL_SEED_BASE, EVAL_SEED_BASE + args.sessions))
    if args.test_set:
        seeds = list(range(TEST_SEED_BASE, TEST_SEED_BASE + 5))
        args.frames, args.session_frames = 20, 15_000
        styles = [s for s in info["test_error_px"] if s != "real-faces"]
        if "lab2" in styles and "lab2+wild" not in styles:
            styles.append("lab2+wild")
    results, rows = {}, []
    for style in styles:
        frames, keypoints, _ = build_set(seeds, [style] * len(seeds), args.frames, args.session_frames)
        start = time.perf_counter()
        result = evaluate_tracker(model, frames, keypoints, bodyparts)
        result.pop("per_frame_px")
        results[style] = result | {"seeds": [seeds[0], seeds[-1]], "seconds": time.perf_counter() - start}
        rows.append({"style": style, "frames": result["n_frames"], "points": result["n_points"],
                     "mean_px": result["mean_px"], "median_px": result["median_px"], "p90_px": result["p90_px"]})
    if args.test_set:
        real = real_face_errors(model, bodyparts)
        if real is not None:
            results["real-faces"] = real
            rows.append({"style": "real faces (256 scale)", "frames": real["n_frames"], "points": real["n_points"],
                         "mean_px": real["mean_px"], "median_px": real["median_px"], "p90_px": real["p90_px"]})
    print_table(rows, ["style", "frames", "points", "mean_px", "median_px", "p90_px"])
    path = write_results("base_model_eval", {"model": str(args.model), "results": results, "machine": machine_info()})
    print(f"wrote {path}")
    if args.write and args.test_set:
        folder = resolve_model(args.model)
        meta = json.loads((folder / "model.json").read_text())
        meta["test_error_px"] = {k: {f: v for f, v in r.items() if f != "seconds"} for k, r in results.items()}
        if args.note:
            meta["test_error_note"] = args.note
        tmp = folder / "model.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, folder / "model.json")
        print(f"rewrote test_error_px in {folder / 'model.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
