"""Fine-tuning the shipped tracker on real mouse faces, and what its likelihood is worth there.

    python -m bench.bench_real_faces                 # base model, fine-tuned on all 6, leave-one-mouse-out
    python -m bench.bench_real_faces --model base --name real_faces
    python -m bench.bench_real_faces --leave-one-face-out     # + 6 fine-tunes on five faces each (~15 min on 2 cores)

Data: `../shared/data/real-faces` (2 mice x 3 views, 354 x 354 px, Facemap
bodyparts). Errors are mean Euclidean px at the paper's scale (x 256 / 354)
over labelled points. Rows:

- the model as shipped, on all six faces (no fine-tuning);
- fine-tuned with the default `finetune` preset on all six, scored on the same
  six (the human-in-the-loop promise: the frames you corrected are fitted);
- leave one mouse out: fine-tuned on one mouse's three views, scored on the
  other mouse's three;
- with `--leave-one-face-out`, also: fine-tuned on five faces (both mice), scored
  on the sixth, each face in turn (one pooled row). What labels of the same two
  mice allow at all: each face's labels against a model fitted to the other five
  (the keypoints' conventions drift between views: nose(r) and nose(tip) swap
  roles, the whisker points move along the pad).

Also the ROC AUC of each heatmap confidence (`likelihood_scores`) for telling
points more than 10 px (at 256 scale) off from the rest, pooled over the
shipped model and the leave-one-mouse-out models' test faces. The faces are
a measuring stick only: nothing trained here is saved or shipped.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.common import machine_info, print_table, write_results
from bench.likelihood_scores import bad_point_auc, heatmap_scores

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT.parent / "shared" / "data" / "real-faces" / "CollectedData.csv"
SCALE = 256 / 354
BAD_PX = 10.0  # at 256 scale


def load_faces(bodyparts):
    from jfacemap.track.labels import load_labelled_frames

    images, keypoints, _, table = load_labelled_frames(FACES, bodyparts=bodyparts)
    mouse = np.array([Path(name).name.split("_")[0] for name in table.index])
    return images, keypoints, mouse


def point_errors(model, images, keypoints) -> tuple[np.ndarray, dict]:
    """(N, K) errors at 256 scale (NaN unlabelled) and the heatmap scores."""
    scores, pred = heatmap_scores(model, images)
    err = np.linalg.norm(pred - keypoints[..., :2], axis=-1) * SCALE
    err = np.where(np.isfinite(keypoints[..., :2]).all(-1), np.where(np.isfinite(err), err, np.inf), np.nan)
    return err, scores


def summary(err: np.ndarray) -> dict:
    """Mean / median over the points found; `missed`: labelled points the model found no peak for
    (counted as > 10 px in over_10px)."""
    labelled = err[~np.isnan(err)]
    found = labelled[np.isfinite(labelled)]
    return {"mean_px": float(np.mean(found)), "median_px": float(np.median(found)), "n_points": int(labelled.size),
            "missed": int(labelled.size - found.size), "over_10px": float(np.mean(labelled > BAD_PX))}


def fine_tune_splits(mouse: np.ndarray, leave_one_face_out: bool = False) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, train mask, score mask) of each fine-tuning run: all faces on themselves, each
    mouse's views on the other mouse's, and (optionally) every five faces on the sixth
    (label "5 faces (not <i>)")."""
    n = len(mouse)
    splits = [("all 6", np.ones(n, bool), np.ones(n, bool))]
    splits += [(f"{m} (3 views)", mouse == m, mouse != m) for m in sorted(set(mouse))]
    if leave_one_face_out:
        splits += [(f"5 faces (not {i})", np.arange(n) != i, np.arange(n) == i) for i in range(n)]
    return splits


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="base")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="real_faces")
    ap.add_argument("--leave-one-face-out", action="store_true",
                    help="also fine-tune on every five faces and score the sixth (6 more runs)")
    args = ap.parse_args(argv)

    from jfacemap.track.model_store import load_tracker
    from jfacemap.track.train import get_recipe, train_tracker, training_plan

    base, names, _ = load_tracker(args.model)
    images, keypoints, mouse = load_faces(names)
    recipe = get_recipe("finetune")
    rows, pooled = [], {"err": [], "scores": []}

    err, scores = point_errors(base, images, keypoints)
    rows.append({"model": f"{args.model} as shipped", "train on": "-", "score on": "all 6", **summary(err)})
    pooled["err"].append(err), pooled["scores"].append(scores)

    one_face = {"err": [], "seconds": 0.0}
    for label, fit, score in fine_tune_splits(mouse, args.leave_one_face_out):
        t0 = time.perf_counter()
        model, history = train_tracker(images[fit], keypoints[fit], names, recipe, init_model=base, seed=args.seed)
        seconds = time.perf_counter() - t0
        err, scores = point_errors(model, images[score], keypoints[score])
        plan = training_plan(recipe, int(fit.sum()))
        if label.startswith("5 faces"):
            one_face["err"].append(err)
            one_face["seconds"] += seconds
            continue
        rows.append({"model": "finetune preset", "train on": label,
                     "score on": "same faces" if label == "all 6" else "other mouse", **summary(err),
                     "steps": plan.steps, "batch": plan.batch_size, "seconds": seconds})
        if label != "all 6":
            pooled["err"].append(err), pooled["scores"].append(scores)

    if one_face["err"]:
        err = np.concatenate(one_face["err"])
        plan = training_plan(recipe, 5)
        rows.append({"model": "finetune preset", "train on": "5 faces", "score on": "the 6th, each in turn",
                     **summary(err), "steps": plan.steps, "batch": plan.batch_size,
                     "seconds": one_face["seconds"], "per_face_mean_px": [float(np.nanmean(e)) for e in one_face["err"]]})
    err = np.concatenate([e.ravel() for e in pooled["err"]])
    auc = {name: bad_point_auc(np.concatenate([s[name].ravel() for s in pooled["scores"]]), err, BAD_PX)
           for name in pooled["scores"][0]}
    print_table(rows, ["model", "train on", "score on", "mean_px", "median_px", "missed", "over_10px", "steps", "seconds"])
    print(f"ROC AUC, points > {BAD_PX:g} px off ({int(np.sum(err > BAD_PX))} of {int(np.sum(~np.isnan(err)))}): "
          + ", ".join(f"{k} {v:.3f}" for k, v in auc.items()))
    payload = {"machine": machine_info(), "model": args.model, "recipe": recipe.to_dict(), "rows": rows,
               "likelihood_auc": auc, "bad_px": BAD_PX}
    print(f"wrote {write_results(args.name, payload)}")
    return payload


if __name__ == "__main__":
    main()
