"""Tracker error with and without the keypoint-layout prior on the decoder (`track/shape_prior.py`).

    python -m bench.shape_prior_sweep --model base                 # score; the pick is made on synthetic styles
    python -m bench.shape_prior_sweep --model weights/base --write # also (re)fit the prior into model.json
    python -m bench.shape_prior_sweep --model base --flip-average   # decode every frame flip-averaged (bench.flip_average_sweep)
    python -m bench.bench_train_real --only jfacemap --seed 0 --save /tmp/mm0
    python -m bench.shape_prior_sweep --mirror-mouse /tmp/mm0 --split-seed 0  # a prior on a user's own labels

The prior is fitted to the model's training labels (the cached or re-rendered
training set named in its model.json `training_data`). One forward pass per
test set; each decoder setting (`widen`, `fill`) decodes the same heatmaps.
Scored on held-out synthetic sessions (seeds 100000+, never trained on; the
pick uses lab2 + wild) and, as a measuring stick only, on the six real faces
(px at 256 scale). Writes bench/results/<name>.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path

import numpy as np

from bench.average_models import training_command
from bench.common import machine_info, print_table, write_results
from bench.train_base_model import TEST_SEED_BASE, build_set, cached_training_set

REPO = Path(__file__).resolve().parents[1]


def training_keypoints(info: dict, bodyparts: list[str], cache: Path) -> np.ndarray:
    """(N, K, 3) keypoints of the training set described by model.json's `training_data`."""
    data = info["training_data"]
    lo, hi = data["seeds"]
    seeds = list(range(lo, hi + 1))
    # train_base_model's assignment: families cycle over seeds in the order given on its command line
    command = training_command(info)
    families = command.split("--styles ")[1].split()[0].split(",") if "--styles " in command else ["lab1"]
    styles = [families[s % len(families)] for s in seeds]
    _, keypoints, names = cached_training_set(cache, seeds, styles, data["frames_per_seed"], data["session_frames"])
    return keypoints[:, [names.index(b) for b in bodyparts]]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="base")
    ap.add_argument("--cache", type=Path, default=None,
                    help="folder of the cached training set (rendered there when absent); default: the "
                         "--checkpoint-dir of the model.json command (the cache's name does not say which "
                         "renderer drew it, so use the training run's own)")
    ap.add_argument("--styles", default="lab2,wild,lab1")
    ap.add_argument("--pick-styles", default="lab2,wild", help="held-out styles whose mean picks the setting")
    ap.add_argument("--test-seeds", type=int, default=10)
    ap.add_argument("--test-frames", type=int, default=20)
    ap.add_argument("--widen", default="1.5,2,3,4")
    ap.add_argument("--trust", default="0,0.9", help="decode_with_shape_prior's trust, a list")
    ap.add_argument("--mirror-mouse", type=Path, default=None,
                    help="instead: a model trained on mirror-mouse's --split-seed split (bench_train_real --save); "
                         "the prior is fitted to that split's training labels and scored on its test frames (px)")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--flip-average", action="store_true",
                    help="average every test frame's outputs with its mirror image's before decoding (decode.average_with_mirror)")
    ap.add_argument("--write", action="store_true",
                    help="write the fitted prior into the model folder's model.json")
    ap.add_argument("--name", default="shape_prior_sweep")
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from bench.bench_real_faces import FACES, SCALE, load_faces
    from jfacemap.track.decode import average_with_mirror, decode_heatmaps
    from jfacemap.track.model_store import load_tracker, resolve_model
    from jfacemap.track.preprocess import NET_SIZE, crop_geometry, keypoints_to_frame, preprocess
    from jfacemap.track.shape_prior import decode_with_shape_prior, fit_shape_prior

    sets = {}
    if args.mirror_mouse is not None:
        from bench.bench_train_real import load_split

        model, names, info = load_tracker(args.mirror_mouse)
        images, keypoints, split_names, train, test = load_split(args.split_seed)
        keypoints = keypoints[:, [split_names.index(n) for n in names], :2]
        prior = fit_shape_prior(keypoints[train])
        sets["mirror-mouse"] = (images[test], keypoints[test], 1.0)
        styles, seeds, args.pick_styles = [], [], "mirror-mouse"
    else:
        model, names, info = load_tracker(args.model)
        cache = args.cache
        if cache is None:
            words = training_command(info).split()
            if "--checkpoint-dir" not in words:
                raise SystemExit(f"{args.model}: its model.json command names no --checkpoint-dir; pass --cache")
            cache = REPO / words[words.index("--checkpoint-dir") + 1]
        prior = fit_shape_prior(training_keypoints(info, names, cache))
        styles = [s.strip() for s in args.styles.split(",") if s.strip()]
        seeds = [TEST_SEED_BASE + i for i in range(args.test_seeds)]
    for style in styles:
        frames, keypoints, bodyparts = build_set(seeds, [style] * len(seeds), args.test_frames, 15_000)
        sets[style] = (frames, keypoints[:, [bodyparts.index(n) for n in names], :2], 1.0)
    if FACES.is_file() and args.mirror_mouse is None:
        images, keypoints, _ = load_faces(names)
        sets["real faces"] = (images, keypoints[..., :2], SCALE)

    def outputs_of(x):
        out = model(x, train=False)
        own = (out.heatmap, out.offset_x, out.offset_y)
        if not args.flip_average:
            return own
        m = model(x[:, :, ::-1], train=False)
        return average_with_mirror(own, (m.heatmap, m.offset_x, m.offset_y), stride=NET_SIZE / out.heatmap.shape[1])

    forward = jax.jit(outputs_of)
    outputs = {}
    for key, (frames, _, _) in sets.items():
        parts = [forward(preprocess(jnp.asarray(frames[s : s + 10]), None, context=model.context))
                 for s in range(0, len(frames), 10)]
        outputs[key] = [jnp.concatenate([p[f] for p in parts]) for f in range(3)]

    def score(decode) -> dict:
        row = {}
        for key, (frames, truth, scale) in sets.items():
            hm = outputs[key][0]
            kp = decode(*outputs[key], stride=NET_SIZE / hm.shape[1])
            xy = np.asarray(keypoints_to_frame(kp[..., :2], crop_geometry(frames.shape, None, NET_SIZE, model.context)))
            err = np.linalg.norm(xy - truth, axis=-1) * scale
            row[key] = float(np.nanmean(np.where(np.isfinite(truth[..., 0]), err, np.nan)))
        return row

    rows = [{"decoder": "argmax (the original's)", "widen": None, "fill": None, "trust": None} | score(decode_heatmaps)]
    grid = itertools.product([float(w) for w in args.widen.split(",")], (True, False),
                             [float(p) for p in args.trust.split(",")])
    for widen, fill, trust in grid:
        decode = jax.jit(lambda h, x, y, stride, w=widen, f=fill, p=trust: decode_with_shape_prior(
            h, x, y, prior, stride=stride, widen=w, fill=f, trust=p), static_argnames="stride")
        rows.append({"decoder": "layout prior", "widen": widen, "fill": fill, "trust": trust} | score(decode))
        print(rows[-1], flush=True)
    pick_styles = [s for s in args.pick_styles.split(",") if s in sets]
    for row in rows:
        row["pick mean"] = float(np.mean([row[s] for s in pick_styles]))
    best = min(rows[1:], key=lambda r: r["pick mean"])
    print_table(rows, list(rows[0]))
    print(f"lowest {'+'.join(pick_styles)} mean: widen {best['widen']:g}, fill {best['fill']}, trust {best['trust']:g}")
    payload = {"model": str(args.mirror_mouse or args.model), "flip_average": args.flip_average, "styles": styles, "test_seeds": seeds, "test_frames": args.test_frames,
               "rows": rows, "pick": {"widen": best["widen"], "fill": best["fill"], "trust": best["trust"]},
               "prior": prior.to_json(), "machine": machine_info()}
    print(f"wrote {write_results(args.name, payload)}")
    if args.write and args.mirror_mouse is None:
        path = resolve_model(args.model) / "model.json"
        text = path.read_text()
        model_json = json.loads(text)
        model_json["shape_prior"] = prior.to_json()
        indent = len(text.splitlines()[1]) - len(text.splitlines()[1].lstrip())  # keep the file's own layout
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(model_json, indent=indent or 2) + "\n")
        os.replace(tmp, path)
        print(f"wrote the prior into {path}")
    return payload


if __name__ == "__main__":
    main()
