"""Error of a tracker on synthetic sessions it never saw, per style (lab1 and the "other lab" lab2).

    python -m bench.evaluate_base_model                 # the shipped 'base' model
    python -m bench.evaluate_base_model --model DIR --sessions 10 --frames 20

Sessions use seeds 200000.. (training uses 0..S-1, its own test 100000..);
frames are sampled like the training set. Writes bench/results/base_model_eval.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import machine_info, print_table, write_results  # noqa: E402
from bench.train_base_model import build_set  # noqa: E402
from jfacemap.track.model_store import load_tracker  # noqa: E402
from jfacemap.track.train import evaluate_tracker  # noqa: E402

EVAL_SEED_BASE = 200_000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="base")
    ap.add_argument("--sessions", type=int, default=10, help="held-out sessions per style")
    ap.add_argument("--frames", type=int, default=20, help="frames per session")
    ap.add_argument("--session-frames", type=int, default=3000)
    args = ap.parse_args(argv)

    model, bodyparts, _ = load_tracker(args.model)
    seeds = list(range(EVAL_SEED_BASE, EVAL_SEED_BASE + args.sessions))
    results, rows = {}, []
    for style in ("lab1", "lab2"):
        frames, keypoints, _ = build_set(seeds, [style] * len(seeds), args.frames, args.session_frames)
        start = time.perf_counter()
        result = evaluate_tracker(model, frames, keypoints, bodyparts)
        result.pop("per_frame_px")
        results[style] = result | {"seeds": [seeds[0], seeds[-1]], "seconds": time.perf_counter() - start}
        rows.append({"style": style, "frames": result["n_frames"], "points": result["n_points"],
                     "mean_px": result["mean_px"], "median_px": result["median_px"], "p90_px": result["p90_px"]})
    print_table(rows, ["style", "frames", "points", "mean_px", "median_px", "p90_px"])
    path = write_results("base_model_eval", {"model": str(args.model), "results": results, "machine": machine_info()})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
