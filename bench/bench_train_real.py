"""Training on real labels: jfacemap against the original program, same split, one run.

    python -m bench.bench_train_real                      # both, default recipes, pinned to core 0
    python -m bench.bench_train_real --only jfacemap      # one side (diagnosis)
    python -m bench.bench_train_real --epochs 4 --name quick

Data: `../shared/data/mirror-mouse` (90 real frames, 396 x 406, 17 keypoints),
split 80 train / 10 test by a seeded permutation (`--seed`). Each program
trains from scratch with its own default recipe (Adam, LR 4e-4, batch 8, 36
epochs, LR / 10 then / 25 for the last 3 + 3 epochs):

- the original (facemap 1.0.8, its own venv, see `bench/peers.py`): its
  `FacemapDataset` with the whole frame as bounding box (what its GUI passes
  when no box is drawn) and `model_training.train`, batch 8; its trained
  network is then run through its own inference (`transforms.preprocess_img`,
  `pose_helper_functions.predict`, `adjust_keypoints`, batch 1);
- jfacemap: `train_tracker(..., "base")` and `evaluate_tracker`.

Errors are mean Euclidean px in the frames' own pixels over labelled points,
on the training frames and on the held-out ones. Time per epoch: the
original's whole training / epochs; jfacemap's median epoch (its first epoch
also compiles, reported apart). Both run on the same pinned core(s), one
after the other: the original with one torch thread per core, jfacemap with
one JAX CPU device per core (`use_cpu_cores`, as `jfacemap train`). Writes
bench/results/<name>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import machine_info, print_table, write_results
from bench.peers import ORIGINAL_PIPELINE, facemap_python

ROOT = Path(__file__).resolve().parents[1]
MIRROR = ROOT.parent / "shared" / "data" / "mirror-mouse" / "CollectedData.csv"
BAD_PX = 10.0  # a point this far off (frame px) is a bad one, for the likelihood ROC

# Runs INSIDE the facemap venv. argv: data.npz out_dir epochs lr weight_decay batch threads seed
ORIGINAL_TRAINING = r"""
import json, sys, time, types
import numpy as np
import torch
sys.modules["facemap.gui.help_windows"] = types.ModuleType("facemap.gui.help_windows")  # Qt-free
from facemap.pose import datasets, model_training
from facemap.pose.facemap_network import FMnet

data, out = np.load(sys.argv[1]), sys.argv[2]
epochs, lr, wd, batch, threads, seed = (int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]),
                                        int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8]))
torch.set_num_threads(threads)
torch.manual_seed(seed)
np.random.seed(seed)
images, keypoints = data["train_images"], data["train_keypoints"].astype(np.float64)
names = [str(n) for n in data["bodyparts"]]
H, W = images.shape[1:]
net = FMnet(img_ch=1, output_ch=len(names), labels_id=names, channels=[16, 32, 64, 128, 200],
            device=torch.device("cpu"), kernel=3, shape=(256, 256), n_upsample=2)
# What Pose.train gets from the GUI when no box is drawn: [x1, x2, y1, y2] = [0, Ly, 0, Lx].
bbox = [0, H, 0, W]
dataset = datasets.FacemapDataset(image_data=list(images), keypoints_data=keypoints, bbox=bbox)
loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True)
t0 = time.perf_counter()
net = model_training.train(loader, net, epochs, lr, wd)
seconds = time.perf_counter() - t0
net.eval()
torch.save(net.state_dict(), out + "/original.pt")

__PIPELINE__
np.savez(out + "/original_predictions.npz", train=original_pipeline(net, images, bbox)[0],
         test=original_pipeline(net, data["test_images"], bbox)[0])
json.dump({"train_seconds": seconds, "epochs": epochs, "steps_per_epoch": len(loader)},
          open(out + "/original.json", "w"))
"""


def load_split(seed: int, n_test: int = 10):
    """Mirror-mouse images, keypoints (N, K, 3), names, and train / test indices."""
    from jfacemap.track.labels import load_labelled_frames

    images, keypoints, names, _ = load_labelled_frames(MIRROR)
    order = np.random.default_rng(seed).permutation(len(images))
    return images, keypoints, names, np.sort(order[n_test:]), np.sort(order[:n_test])


def errors_px(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Mean / median / p90 Euclidean error (px) over labelled points; pred, truth (N, K, 2+)."""
    err = np.linalg.norm(pred[..., :2] - truth[..., :2], axis=-1)
    err = err[np.isfinite(truth[..., :2]).all(-1)]
    err = np.where(np.isfinite(err), err, np.inf)  # a missing prediction is an infinite error
    return {"mean_px": float(np.mean(err)), "median_px": float(np.median(err)),
            "p90_px": float(np.percentile(err, 90)), "n_points": int(err.size)}


def run_original(images, keypoints, names, train, test, epochs, threads, cores, seed) -> dict:
    python = facemap_python()
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "data.npz", train_images=images[train], train_keypoints=keypoints[train, :, :2],
                 test_images=images[test], bodyparts=np.array(names))
        args = [str(Path(tmp) / "data.npz"), tmp, str(epochs), "4e-4", "0", "8", str(threads), str(seed)]
        pin = ["taskset", "-c", ",".join(map(str, cores))] if cores else []
        env = dict(os.environ, PYTHONNOUSERSITE="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        script = ORIGINAL_TRAINING.replace("__PIPELINE__", ORIGINAL_PIPELINE)
        result = subprocess.run([*pin, str(python), "-c", script, *args],
                                capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"original training failed: {result.stderr.strip()[-2000:]}")
        pred = np.load(Path(tmp) / "original_predictions.npz")
        info = json.loads((Path(tmp) / "original.json").read_text())
        weights = (Path(tmp) / "original.pt").read_bytes()
    out = {"program": "original (facemap 1.0.8)", "train": errors_px(pred["train"], keypoints[train]),
           "test": errors_px(pred["test"], keypoints[test]),
           "seconds_per_epoch": info["train_seconds"] / epochs, "train_seconds": info["train_seconds"],
           "steps_per_epoch": info["steps_per_epoch"], "epochs": epochs,
           "_predictions": {"train": pred["train"], "test": pred["test"]}, "_weights": weights}
    return out


def run_jfacemap(images, keypoints, names, train, test, epochs, seed, recipe="base", augment=None,
                 save: Path | None = None, **overrides) -> dict:
    from jfacemap.track.train import evaluate_tracker, get_recipe, train_tracker

    plan = get_recipe(recipe, epochs=epochs, **overrides)
    if augment:
        plan = plan.replace(augment=dataclasses.replace(plan.augment, **augment))
    t0 = time.perf_counter()
    model, history = train_tracker(images[train], keypoints[train], names, plan, seed=seed)
    total = time.perf_counter() - t0
    seconds = [row["seconds"] for row in history]
    ev_train = evaluate_tracker(model, images[train], keypoints[train], names)
    ev_test = evaluate_tracker(model, images[test], keypoints[test], names)
    pick = ("mean_px", "median_px", "p90_px", "n_points")
    out = {"program": f"jfacemap ({plan.name})", "train": {k: ev_train[k] for k in pick},
            "test": {k: ev_test[k] for k in pick},
            "seconds_per_epoch": float(np.median(seconds[1:] if len(seconds) > 1 else seconds)),
            "first_epoch_seconds": seconds[0], "train_seconds": total, "devices": history[0].get("devices", 1),
            "steps_per_epoch": history[0]["steps"], "epochs": epochs, "recipe": plan.to_dict(),
            "final_loss": history[-1]["loss"], "_model": model}
    if save is not None:
        from jfacemap.track.model_store import save_tracker

        save_tracker(save, model, names, {"recipe": plan.to_dict(), "history": history})
    return out


def likelihood_aucs(rows, images, keypoints) -> dict:
    """ROC AUC of each heatmap confidence (see `likelihood_scores`) for the test points more
    than BAD_PX off, per program (the original's network run through jfacemap: same weights)."""

    from bench.likelihood_scores import bad_point_auc, heatmap_scores

    out = {}
    for row in rows:
        model = row.get("_model")
        if model is None:
            from jfacemap.io.torch_weights import load_torch_state_dict
            from jfacemap.nets.convert import unet_from_torch_state_dict

            with tempfile.TemporaryDirectory() as tmp:
                pt = Path(tmp) / "original.pt"
                pt.write_bytes(row["_weights"])
                model = unet_from_torch_state_dict(load_torch_state_dict(pt))
            model.eval()
        scores, pred = heatmap_scores(model, images)
        err = np.linalg.norm(pred - keypoints[..., :2], axis=-1)
        err = np.where(np.isfinite(keypoints[..., :2]).all(-1), np.nan_to_num(err, nan=np.inf), np.nan)
        out[row["program"]] = {k: bad_point_auc(v, err, BAD_PX) for k, v in scores.items()}
        out[row["program"]]["n_bad"] = int(np.sum(err > BAD_PX))
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["original", "jfacemap"], default=None)
    ap.add_argument("--epochs", type=int, default=36)
    ap.add_argument("--seed", type=int, default=0, help="split and training seed")
    ap.add_argument("--cores", default="0", help="cores both programs are pinned to ('' = no pinning)")
    ap.add_argument("--name", default="train_real")
    ap.add_argument("--augment", default="", help="jfacemap augmentation overrides, e.g. inward_prob=0,clamp=1")
    ap.add_argument("--grad-clip", type=float, default=None, help="jfacemap: override the recipe's clip (0 = none)")
    ap.add_argument("--save", type=Path, default=None, help="jfacemap: save the trained model here")
    ap.add_argument("--offset-norm", choices=["l1", "l2"], default=None, help="jfacemap: offset loss norm")
    args = ap.parse_args(argv)
    cores = [int(c) for c in args.cores.split(",") if c != ""]
    if cores:
        os.sched_setaffinity(0, cores)  # jfacemap runs in this process
    threads = max(1, len(cores)) if cores else 1
    from jfacemap.track.cpu_devices import use_cpu_cores

    use_cpu_cores()  # one JAX CPU device per pinned core, as `jfacemap train` does
    images, keypoints, names, train, test = load_split(args.seed)
    rows = []
    if args.only in (None, "original"):
        rows.append(run_original(images, keypoints, names, train, test, args.epochs, threads, cores, args.seed))
    if args.only in (None, "jfacemap"):
        augment = {}
        for item in filter(None, args.augment.split(",")):
            key, value = item.split("=")
            augment[key] = bool(int(value)) if key == "clamp" else value if key == "intensity" else float(value)
        overrides = {} if args.grad_clip is None else {"grad_clip": args.grad_clip or None}
        if args.offset_norm:
            from jfacemap.track.train import LossWeights

            overrides["loss"] = LossWeights(offset_norm=args.offset_norm)
        rows.append(run_jfacemap(images, keypoints, names, train, test, args.epochs, args.seed,
                                 augment=augment, save=args.save, **overrides))
    table = [{"program": r["program"], "train mean px": r["train"]["mean_px"], "test mean px": r["test"]["mean_px"],
              "test median px": r["test"]["median_px"], "s/epoch": r["seconds_per_epoch"],
              "steps/epoch": r["steps_per_epoch"]} for r in rows]
    print_table(table, list(table[0]))
    payload = {"machine": machine_info(cores or None), "data": str(MIRROR.relative_to(ROOT.parent)),
               "split": {"seed": args.seed, "train": train.tolist(), "test": test.tolist()},
               "results": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]}
    if args.save is not None and any("_weights" in r for r in rows):
        args.save.mkdir(parents=True, exist_ok=True)
        (args.save / "original.pt").write_bytes(next(r["_weights"] for r in rows if "_weights" in r))
    payload["likelihood_auc"] = likelihood_aucs(rows, images[test], keypoints[test])
    for program, auc in payload["likelihood_auc"].items():
        print(f"{program}: ROC AUC for test points > {BAD_PX:g} px off: "
              + ", ".join(f"{k} {v:.3f}" for k, v in auc.items()))
    if len(rows) == 2:
        o, j = rows
        payload["ratios"] = {"test_mean": j["test"]["mean_px"] / o["test"]["mean_px"],
                             "train_mean": j["train"]["mean_px"] / o["train"]["mean_px"],
                             "seconds_per_epoch": j["seconds_per_epoch"] / o["seconds_per_epoch"]}
        print("jfacemap / original: " + ", ".join(f"{k} {v:.2f}" for k, v in payload["ratios"].items()))
    print(f"wrote {write_results(args.name, payload)}")
    return {"payload": payload, "rows": rows}


if __name__ == "__main__":
    main()
