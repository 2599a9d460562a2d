"""Error vs number of labelled "other lab" frames: fine-tuned from the base model vs trained from scratch.

    python -m bench.finetune_curve                  # 1, 2, 5, 10, 20, 50 frames (about an hour on 2 CPU cores)
    python -m bench.finetune_curve --quick          # smoke run: 1 and 2 frames, 1 epoch

The paper's Fig. 2b shape: a few labelled frames of a new mouse, fine-tuned
from the base model (the `finetune` preset: AdamW, LR 1e-4, weight decay
1e-3, 36 epochs), against the same frames used to train a new network from
scratch (the `base` preset). The labelled frames are "lab2" style sessions,
a look the shipped base model never saw; the n-frame sets are nested (the
first n of one pool spread over `--pool-sessions` mice), and the error is
measured on `--test-sessions` other lab2 mice, in 256x256 pixels.

Each finished (method, n) run is kept in bench/results/finetune_curve.partial.json;
rerunning the command skips them, so an interrupted run resumes. The final
table goes to bench/results/finetune_curve.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bench.common import RESULTS, machine_info, print_table, write_results  # noqa: E402
from bench.train_base_model import build_set  # noqa: E402
from jfacemap.io.atomic import write_text_atomic  # noqa: E402
from jfacemap.track.inference import flip_setting  # noqa: E402
from jfacemap.track.model_store import load_tracker  # noqa: E402
from jfacemap.track.train import evaluate_tracker, get_recipe, train_tracker  # noqa: E402

POOL_SEED_BASE = 300_000  # labelled "new mice"; disjoint from training (0..), its test (100000..), eval (200000..)
TEST_SEED_BASE = 310_000
COUNTS = (1, 2, 5, 10, 20, 50)


def labelled_pool(n_sessions: int, n_total: int, session_frames: int):
    """(n_total, 256, 256) frames, keypoints, bodyparts: frame i from mouse i % n_sessions,
    so every prefix of the pool is spread over as many mice as it can be."""
    per = -(-n_total // n_sessions)
    seeds = [POOL_SEED_BASE + i for i in range(n_sessions)]
    frames, keypoints, bodyparts = build_set(seeds, ["lab2"] * n_sessions, per, session_frames)
    order = np.arange(n_sessions * per).reshape(n_sessions, per).T.ravel()[:n_total]
    return frames[order], keypoints[order], bodyparts


def summary(result: dict) -> dict:
    return {k: result[k] for k in ("mean_px", "median_px", "p90_px", "n_frames", "n_points")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="base", help="model to fine-tune from")
    ap.add_argument("--counts", default=",".join(map(str, COUNTS)), help="numbers of labelled frames")
    ap.add_argument("--pool-sessions", type=int, default=10, help="lab2 mice the labelled frames come from")
    ap.add_argument("--test-sessions", type=int, default=5)
    ap.add_argument("--test-frames", type=int, default=20, help="test frames per test session")
    ap.add_argument("--session-frames", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=None, help="override both presets' 36 epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="1 and 2 frames, 1 epoch, 10 test frames")
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    if args.quick:
        counts, args.epochs, args.test_sessions, args.test_frames = [1, 2], 1, 2, 5
    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    recipes = {"finetuned": get_recipe("finetune", **overrides), "scratch": get_recipe("base", **overrides)}

    base, bodyparts, _ = load_tracker(args.base)
    pool, pool_kp, names = labelled_pool(args.pool_sessions, max(counts), args.session_frames)
    assert list(names) == list(bodyparts), "synthetic bodyparts differ from the base model's"
    test_seeds = [TEST_SEED_BASE + i for i in range(args.test_sessions)]
    test, test_kp, _ = build_set(test_seeds, ["lab2"] * len(test_seeds), args.test_frames, args.session_frames)

    from jfacemap.track.model_store import read_model_json

    # the weights' checksum too: a resumed curve must not mix two models shipped under one name
    try:
        weights = read_model_json(args.base).get("weights_sha256")
    except (OSError, ValueError):  # a .pt file or the original's installed model: no model.json
        weights = None
    # ... and how it decodes (flip averaging is a model setting fine-tuned models inherit)
    config = {"base": args.base, "weights": weights,
              "flip_average": list(flip_setting(base)),
              "counts": counts, "pool_sessions": args.pool_sessions,
              "test_seeds": [test_seeds[0], test_seeds[-1]], "test_frames": int(len(test)),
              "recipes": {k: r.to_dict() for k, r in recipes.items()}, "seed": args.seed}
    partial = RESULTS / ("finetune_curve_quick.partial.json" if args.quick else "finetune_curve.partial.json")
    runs = json.loads(partial.read_text()) if partial.exists() else {}
    if runs.get("config") != json.loads(json.dumps(config)):
        # Training from scratch does not read the base model: keep those runs when only the base changed.
        def same_but_base(a: dict) -> bool:
            ignore = ("base", "weights", "flip_average")
            return {k: v for k, v in a.items() if k not in ignore} == \
                {k: v for k, v in json.loads(json.dumps(config)).items() if k not in ignore}
        kept = {k: v for k, v in runs.get("results", {}).items()
                if k.startswith("scratch/") and same_but_base(runs.get("config", {}))}
        runs = {"config": config, "results": kept}
    done = runs["results"]

    if "base/0" not in done:
        done["base/0"] = summary(evaluate_tracker(base, test, test_kp, bodyparts)) | {"train_seconds": 0.0}
    for n in counts:
        for method, recipe in recipes.items():
            key = f"{method}/{n}"
            if key in done:
                continue
            start = time.perf_counter()
            model, _ = train_tracker(pool[:n], pool_kp[:n], bodyparts, recipe, seed=args.seed,
                                     init_model=base if method == "finetuned" else None)
            seconds = time.perf_counter() - start
            done[key] = summary(evaluate_tracker(model, test, test_kp, bodyparts)) | {"train_seconds": seconds}
            print(f"{method:9s} {n:3d} frames: {done[key]['mean_px']:.2f} px  ({seconds:.0f} s)", flush=True)
            write_text_atomic(partial, json.dumps(runs, indent=1))

    rows = [{"frames": 0, "base_px": done["base/0"]["mean_px"]}]
    for n in counts:
        rows.append({"frames": n, "finetuned_px": done[f"finetuned/{n}"]["mean_px"],
                     "finetuned_median": done[f"finetuned/{n}"]["median_px"],
                     "scratch_px": done[f"scratch/{n}"]["mean_px"],
                     "scratch_median": done[f"scratch/{n}"]["median_px"]})
    print_table(rows, ["frames", "base_px", "finetuned_px", "finetuned_median", "scratch_px", "scratch_median"])
    if not args.quick:
        path = write_results("finetune_curve", {**config, "results": done, "table": rows, "machine": machine_info()})
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
