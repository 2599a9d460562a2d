"""Tracker error against input context: how much room around the face the network should see.

    python -m bench.context_sweep --model bench/checkpoints/base-wild-model --contexts 1,1.5,2,2.5

`FacemapUNet.context` pads the crop to a square `context` times its side, so
the face appears smaller with room around it. This scores one set of weights
at each context, with no training, on held-out synthetic sessions of each
style (seeds 100000+, never trained on; the pick is made on these) and, as a
measuring stick only, on the six real faces (px at 256 scale). Writes
bench/results/<name>.json.
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.common import machine_info, print_table, write_results
from bench.train_base_model import TEST_SEED_BASE, build_set, real_face_errors


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="base")
    ap.add_argument("--contexts", default="1,1.5,2,2.5")
    ap.add_argument("--styles", default="lab1,lab2,wild", help="synthetic test styles (the pick uses them)")
    ap.add_argument("--test-seeds", type=int, default=5)
    ap.add_argument("--test-frames", type=int, default=20)
    ap.add_argument("--name", default="context_sweep")
    args = ap.parse_args(argv)

    from jfacemap.track.model_store import load_tracker
    from jfacemap.track.train import evaluate_tracker

    model, names, _ = load_tracker(args.model)
    seeds = [TEST_SEED_BASE + i for i in range(args.test_seeds)]
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    sets = {s: build_set(seeds, [s] * len(seeds), args.test_frames, 15_000) for s in styles}
    rows = []
    for context in (float(c) for c in args.contexts.split(",")):
        model.context = context
        row = {"context": context}
        for style, (frames, keypoints, bodyparts) in sets.items():
            kp = keypoints[:, [bodyparts.index(n) for n in names]]
            row[style] = evaluate_tracker(model, frames, kp, names)["mean_px"]
        row["synthetic mean"] = float(np.mean([row[s] for s in styles]))
        real = real_face_errors(model, names)
        if real is not None:
            row["real faces"] = real["mean_px"]
        rows.append(row)
        print(row, flush=True)
    best = min(rows, key=lambda r: r["synthetic mean"])
    print_table(rows, list(rows[0]))
    print(f"lowest synthetic mean error: context {best['context']:g}")
    payload = {"model": args.model, "styles": styles, "test_seeds": seeds, "test_frames": args.test_frames,
               "rows": rows, "pick_by_synthetic": best["context"], "machine": machine_info()}
    print(f"wrote {write_results(args.name, payload)}")
    return payload


if __name__ == "__main__":
    main()
