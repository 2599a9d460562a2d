"""Train the shipped base tracker on synthetic sessions (the reproducible recipe).

    python bench/train_base_model.py                    # full: weights/base/, on the GPU if JAX sees one
    python bench/train_base_model.py --styles wild --seeds 150 --frames-per-seed 20 --init base --name base-wild
    python bench/train_base_model.py --quick            # smoke run, < 2 min on a CPU, to a temp folder

Data: `--seeds` training sessions (seeds 0..S-1), each `--session-frames`
long at 50 Hz; `--frames-per-seed` frames are taken sparsely across each
session (evenly spaced strata, one random frame per stratum), so poses and
behaviour states vary within a mouse as well as across mice. Sessions take
the `--styles` families in turn (seed s -> styles[s % n]); "wild" is the
domain-randomised family, "lab2" the held-out one (never trained on unless
named). Test error is measured on held-out seeds (100000 + i), never seen in
training, for each training style and each `--held-out` style, and on the
real faces in ../shared/data/real-faces when present (a measuring stick:
never trained on); all of it goes into the model's model.json with the
recipe, the data description and the compute spent (CPU/GPU seconds summed
over every session of a resumed run); the full run also writes
bench/results/<name>.json.

Training checkpoints go to `--checkpoint-dir` every epoch; rerunning the
same command resumes from the latest one (the rendered training set is
cached there too, so a resumed run does not render it again).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import machine_info, print_table, write_results  # noqa: E402
from jfacemap.synth import make_session, sample_face_params  # noqa: E402
from jfacemap.synth.params import with_layout  # noqa: E402
from jfacemap.track.model_store import save_tracker  # noqa: E402
from jfacemap.track.augment import ZOOM  # noqa: E402
from jfacemap.track.train import LossWeights, evaluate_tracker, get_recipe, train_devices, train_tracker  # noqa: E402

TEST_SEED_BASE = 100_000  # held-out sessions: above every training seed (--first-seed + --seeds)


def training_sessions(first_seed: int, n: int, families, lab2_fraction: float = 0.0):
    """(seeds first_seed .. first_seed + n - 1, their styles, the seeds made lab2): `families`
    in turn by seed (seed % len(families), so a run continued on fresh sessions keeps the
    mix), and a `lab2_fraction` of the sessions, spread evenly over the range, made lab2."""
    if not 0 <= first_seed <= TEST_SEED_BASE - n:
        raise ValueError(f"training seeds must stay in 0..{TEST_SEED_BASE - 1}, below the test seeds")
    seeds = list(range(first_seed, first_seed + n))
    styles = [families[s % len(families)] for s in seeds]
    n_lab2 = int(round(lab2_fraction * n))
    # spread evenly over the seed range, so a fraction is a fraction of every part
    lab2 = set(np.linspace(0, n - 1, n_lab2).round().astype(int).tolist()) if n_lab2 else set()
    styles = ["lab2" if i in lab2 else st for i, st in enumerate(styles)]
    return seeds, styles, [seeds[i] for i in sorted(lab2)]


def synthetic_session(seed: int, style: str, session_frames: int):
    """`make_session`, or for "LOOK+LAYOUT" LOOK's session over the same seed's LAYOUT draw."""
    look, _, layout = style.partition("+")
    session = make_session(session_frames, seed=seed, style=look)
    if not layout:
        return session
    return dataclasses.replace(session, params=with_layout(session.params, sample_face_params(seed, layout)))


def sample_frames(seed: int, style: str, n_frames: int, session_frames: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(n, 256, 256) uint8 frames, (n, K, 3) keypoints, bodyparts from one
    session: one random frame in each of n equal strata of the session.
    `style` "LOOK+LAYOUT" (e.g. "lab2+wild") renders LOOK's session with LAYOUT's
    keypoint layout (`jfacemap.synth.params.with_layout`)."""
    session = synthetic_session(seed, style, session_frames)
    rng = np.random.default_rng([seed, 7])
    edges = np.linspace(0, session_frames, n_frames + 1).astype(int)
    picks = [int(rng.integers(lo, max(lo + 1, hi))) for lo, hi in zip(edges[:-1], edges[1:])]
    frames, keypoints = zip(*(session.render(i, i + 1) for i in picks))
    return np.concatenate(frames), np.concatenate(keypoints), list(session.bodyparts)


def build_set(seeds, styles, n_frames: int, session_frames: int):
    parts = [sample_frames(s, st, n_frames, session_frames) for s, st in zip(seeds, styles)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), parts[0][2]


def cached_training_set(folder: Path, seeds, styles, n_frames: int, session_frames: int):
    """`build_set`, cached in `folder` (keyed by the arguments), so resumed runs skip rendering."""
    import hashlib
    import json

    key = hashlib.sha256(json.dumps([list(seeds), list(styles), n_frames, session_frames]).encode()).hexdigest()[:12]
    path = Path(folder) / f"training-set-{key}.npz"
    if path.is_file():
        with np.load(path) as data:
            return data["frames"], data["keypoints"], [str(b) for b in data["bodyparts"]]
    frames, keypoints, bodyparts = build_set(seeds, styles, n_frames, session_frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, frames=frames, keypoints=keypoints, bodyparts=np.array(bodyparts))
    tmp.replace(path)
    return frames, keypoints, bodyparts


def real_face_errors(model, bodyparts) -> dict | None:
    """Error on ../shared/data/real-faces at 256 scale (None when absent): a measuring stick only."""
    from bench.bench_real_faces import FACES, load_faces, point_errors, summary

    if not FACES.is_file():
        return None
    images, keypoints, _ = load_faces(bodyparts)
    err, _ = point_errors(model, images, keypoints)
    return summary(err) | {"n_frames": int(len(images)), "p90_px": float(np.nanpercentile(err[np.isfinite(err)], 90))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", default=None, help="model name (default base, or base-quick with --quick)")
    ap.add_argument("--out", type=Path, default=None, help="model folder (default weights/<name>; temp with --quick)")
    ap.add_argument("--seeds", type=int, default=60, help="training sessions")
    ap.add_argument("--first-seed", type=int, default=0,
                    help="first training session's seed (a run continued on fresh sessions starts past the last one)")
    ap.add_argument("--frames-per-seed", type=int, default=40)
    ap.add_argument("--session-frames", type=int, default=15_000, help="session length (frames at 50 Hz)")
    ap.add_argument("--lab2-fraction", type=float, default=0.0,
                    help="fraction of sessions in the lab2 style (with the default --styles lab1)")
    ap.add_argument("--styles", default="lab1", help="training style families, comma-separated (e.g. wild)")
    ap.add_argument("--held-out", default="lab2", help="styles tested but never trained on, comma-separated")
    ap.add_argument("--init", default=None, help="start from this model's weights (name or folder)")
    ap.add_argument("--context", type=float, default=None,
                    help="input context (FacemapUNet.context: the crop padded to a square this many times its side); "
                         "default 1, or --init's")
    ap.add_argument("--test-seeds", type=int, default=5)
    ap.add_argument("--test-frames", type=int, default=20, help="test frames per held-out session")
    ap.add_argument("--recipe", default="base")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0, help="init / shuffling / augmentation seed")
    ap.add_argument("--checkpoint-dir", type=Path, default=None,
                    help="per-epoch checkpoints (default ~/.cache/jfacemap/train-<name>)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (< 2 min on a CPU)")
    args = ap.parse_args(argv)
    from jfacemap.track.cpu_devices import use_cpu_cores
    from jfacemap.track.shape_prior import fit_shape_prior

    use_cpu_cores()  # one JAX CPU device per core this process may use (taskset), each with its share of the batch

    if args.quick:
        args.seeds, args.frames_per_seed, args.session_frames = 2, 4, 500
        args.test_seeds, args.test_frames = 1, 4
        args.epochs = args.epochs or 2
    name = args.name or ("base-quick" if args.quick else "base")
    tmp = Path(tempfile.gettempdir())
    out = args.out or (tmp / "jfacemap-quick-model" / name if args.quick else REPO / "weights" / name)
    # quick runs start fresh (a new temp folder); full runs resume from the latest epoch
    ckpt = args.checkpoint_dir or (Path(tempfile.mkdtemp(prefix="jfacemap-quick-ckpt-")) if args.quick else
                                   Path.home() / ".cache" / "jfacemap" / f"train-{name}")
    overrides = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr))
                 if v is not None}
    # The shipped weights were trained with scale augmentation, no gradient clipping and an L1 offset loss.
    recipe = get_recipe(args.recipe, **{"augment": ZOOM, "grad_clip": None,
                                        "loss": LossWeights(offset_norm="l1"), **overrides})

    families = [s.strip() for s in args.styles.split(",") if s.strip()]
    try:
        seeds, styles, lab2_seeds = training_sessions(args.first_seed, args.seeds, families, args.lab2_fraction)
    except ValueError as err:
        raise SystemExit(f"--first-seed {args.first_seed}: {err}") from None
    held_out = [s.strip() for s in args.held_out.split(",") if s.strip() and s.strip() not in styles]
    print(f"device: {jax.devices()[0]} ({len(train_devices(recipe.batch_size))} share each batch)  recipe: {recipe.name} epochs={recipe.epochs} batch={recipe.batch_size} "
          f"lr={recipe.lr}  data: {args.seeds} sessions ({', '.join(f'{styles.count(f)} {f}' for f in sorted(set(styles)))})"
          f" x {args.frames_per_seed} frames; held out: {', '.join(held_out) or 'none'}")

    t0 = time.perf_counter()
    frames, keypoints, bodyparts = cached_training_set(ckpt, seeds, styles, args.frames_per_seed, args.session_frames)
    t_data = time.perf_counter() - t0
    print(f"{len(frames)} training frames ready in {t_data:.1f} s")
    init_model = None
    if args.init:
        from jfacemap.track.model_store import load_tracker

        init_model, init_names, _ = load_tracker(args.init)
        if list(init_names) != list(bodyparts):
            raise SystemExit(f"--init {args.init}: bodyparts {init_names} differ from the training set's")
        if args.context is not None:
            init_model.context = float(args.context)  # same weights, trained on from here at this context

    # A learning curve on what training never sees: the held-out styles and the real faces (reported only;
    # the run keeps its last epoch whatever these say, so they select nothing).
    test_seeds = [TEST_SEED_BASE + i for i in range(args.test_seeds)]
    held_out_sets = {style: build_set(test_seeds, [style] * len(test_seeds), args.test_frames, args.session_frames)
                     for style in held_out}

    def validate(model) -> dict:
        scores = {style: evaluate_tracker(model, tf, tk, bodyparts)["mean_px"] for style, (tf, tk, _) in held_out_sets.items()}
        real = real_face_errors(model, bodyparts)
        return scores | ({"real-faces": real["mean_px"]} if real else {})

    def on_epoch(epoch, row):
        curve = "  ".join(f"{k} {v:.1f} px" for k, v in row.get("validate", {}).items())
        print(f"epoch {epoch + 1}/{recipe.epochs}  loss {row['loss']:.3f} (heatmap {row['heatmap']:.3f}, "
              f"offset {row['offset']:.3f})  lr {row['lr']:.2g}  {row['seconds']:.1f} s  {curve}", flush=True)

    t0 = time.perf_counter()
    model, history = train_tracker(frames, keypoints, bodyparts, recipe, init_model=init_model, seed=args.seed,
                                   on_epoch=on_epoch, checkpoint_dir=ckpt, context=args.context or 1.0,
                                   validate=validate)
    t_train = time.perf_counter() - t0
    # The decoder's layout prior: the training labels' keypoint layout (shape_prior.py).
    model.shape_prior = fit_shape_prior(keypoints)

    errors, rows = {}, []
    for style in sorted(set(styles)) + held_out:
        tf, tk, _ = held_out_sets.get(style) or build_set(test_seeds, [style] * len(test_seeds), args.test_frames,
                                                          args.session_frames)
        result = evaluate_tracker(model, tf, tk, bodyparts)
        result.pop("per_frame_px")
        errors[style] = result | {"seeds": test_seeds}
        rows.append({"test": style, "frames": result["n_frames"], "points": result["n_points"],
                     "mean_px": result["mean_px"], "median_px": result["median_px"], "p90_px": result["p90_px"]})
    real = real_face_errors(model, bodyparts)
    if real is not None:
        errors["real-faces"] = real
        rows.append({"test": "real faces (256 scale)", "frames": real["n_frames"], "points": real["n_points"],
                     "mean_px": real["mean_px"], "median_px": real["median_px"], "p90_px": real["p90_px"]})
    print_table(rows, ["test", "frames", "points", "mean_px", "median_px", "p90_px"])

    main_style = styles[0]
    lab1_error = errors[main_style]["mean_px"]
    meta = {
        "name": name,
        "description": (f"U-Net trained on {len(frames)} synthetic frames from {args.seeds} sessions; "
                        f"{lab1_error:.2f} px mean error on held-out {main_style} sessions"
                + (f", {errors['real-faces']['mean_px']:.1f} px on real faces (256 scale)" if real else "")),
        "command": "python bench/train_base_model.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "recipe": recipe.to_dict(),
        "training_data": {"generator": "jfacemap.synth.make_session", "seeds": [seeds[0], seeds[-1]],
                          "styles": {f: styles.count(f) for f in sorted(set(styles))}, "held_out": held_out,
                          "init": args.init,
                          "lab2_seeds": lab2_seeds, "frames_per_seed": args.frames_per_seed,
                          "session_frames": args.session_frames, "sampling": "one random frame per equal stratum",
                          "n_frames": int(len(frames)), "size": list(frames.shape[1:])},
        "test_error_px": errors,
        "history": [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in h.items()} for h in history],
        "trained": {"device": str(jax.devices()[0]), "devices": history[-1].get("devices", 1) if history else 1,
                    "train_seconds": round(t_train, 1), "seed": args.seed,
                    "quick": bool(args.quick), **machine_info()},
        # Every epoch's seconds, including those of earlier sessions of a resumed run.
        "compute": {"epochs": len(history), "steps": int(sum(h["steps"] for h in history)),
                    "seconds": round(float(sum(h["seconds"] for h in history)), 1),
                    "device": jax.devices()[0].platform},
    }
    folder = save_tracker(out, model, bodyparts, meta)
    print(f"trained in {t_train:.1f} s; saved {folder}")
    if not args.quick:
        print(f"results: {write_results('train_base_model' if name == 'base' else name, meta)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
