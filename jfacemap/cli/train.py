"""`jfacemap train`, `finetune`, `evaluate`: trackers from labelled frames, and their errors.

Training checkpoints every epoch into `MODEL_DIR/checkpoints/`; rerunning the
same command resumes there. When training ends the finished model replaces
MODEL_DIR (checkpoints included) in one rename.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from jfacemap import DEFAULT_TRACKER
from jfacemap.errors import JfacemapError
from jfacemap.io.atomic import write_text_atomic
from jfacemap.io.jsonable import jsonable

LabelsArg = Annotated[Path, typer.Argument(metavar="LABELS", help="Labels: DeepLabCut CSV, or Facemap .h5 (+ --video).")]
VideoOpt = Annotated[Optional[Path], typer.Option(metavar="FILE", help="Video whose frames the labels' rows index.")]
BboxOpt = Annotated[Optional[tuple[int, int, int, int]], typer.Option(
    metavar="X0 X1 Y0 Y1", help="Crop box in the labelled frames' pixels (default: whole frame).")]
EpochsOpt = Annotated[Optional[int], typer.Option(
    help="Exactly this many epochs (default: the recipe's 36; finetune runs more if needed for >= 300 steps).")]
SeedOpt = Annotated[int, typer.Option(help="Seed for shuffling, augmentation, initial weights and --holdout.")]
HoldoutOpt = Annotated[int, typer.Option(help="Keep N random labelled frames out of training to evaluate on.")]
TestOpt = Annotated[Optional[Path], typer.Option("--test-labels", metavar="FILE", help="Labels file to evaluate the trained model on.")]
TestVideoOpt = Annotated[Optional[Path], typer.Option("--test-video", metavar="FILE", help="Video for --test-labels given as frame indices.")]


def _print_epoch(total: int):
    def show(epoch: int, row: dict) -> None:
        typer.echo(f"epoch {epoch + 1:>3}/{row.get('epochs', total)}  loss {row['loss']:.4f}  heatmap {row['heatmap']:.4f}  "
                   f"offset {row['offset']:.4f}  lr {row['lr']:.2g}  {row['seconds']:.1f} s"
                   + (f"  ({row['devices']} devices share each batch)" if row.get("devices", 1) > 1 else ""), err=True)
        sys.stderr.flush()
    return show


def _summary(errors: dict, what: str) -> None:
    typer.echo(f"{what}: mean {errors['mean_px']:.2f} px, median {errors['median_px']:.2f} px "
               f"over {errors['n_points']} points in {errors['n_frames']} frames")


def _fit(labels: Path, out: Path, video, bbox, recipe: str, epochs, seed: int, holdout: int,
         test_labels, test_video, base: str | None = None, channels: str | None = None,
         new_bodyparts: bool = False) -> None:
    from jfacemap.track.labels import align_bodyparts, load_labelled_frames

    if epochs is not None and epochs < 1:
        raise JfacemapError(f"--epochs must be >= 1, got {epochs}")
    arch = {}
    if channels:
        try:
            arch["channels"] = tuple(int(c) for c in channels.split(","))
        except ValueError as err:
            raise JfacemapError(f"--channels must be comma-separated integers, got {channels!r}") from err
        if len(arch["channels"]) < 3 or min(arch["channels"]) < 1:  # the U-Net upsamples twice
            raise JfacemapError(f"--channels needs at least 3 widths, each >= 1, got {channels!r}")
    # Labels before JAX and the model: their errors (a missing file or video) come at once.
    images, keypoints, names, _ = load_labelled_frames(labels, video)
    if holdout < 0 or holdout >= len(images):
        raise JfacemapError(f"{labels}: --holdout must be in [0, {len(images) - 1}] for {len(images)} labelled frames")
    test = None if test_labels is None else load_labelled_frames(test_labels, test_video, names)

    from jfacemap.track.cpu_devices import use_cpu_cores

    use_cpu_cores()  # before JAX's first computation: each batch is split over the cores
    from jfacemap.track.model_store import load_tracker, save_tracker
    from jfacemap.track.train import RECIPES, evaluate_tracker, get_recipe, train_tracker

    if recipe not in RECIPES:
        raise JfacemapError(f"--recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    plan = get_recipe(recipe, **({} if epochs is None else {"epochs": epochs}))
    init = None
    if base is not None:
        init, base_names, _ = load_tracker(base)
        unknown = [n for n in names if n not in base_names]
        if unknown and not new_bodyparts:
            raise JfacemapError(f"{labels}: unknown bodyparts {', '.join(map(repr, unknown))} for the base model "
                                f"{base!r} (it has {', '.join(base_names)}); --new-bodyparts trains new output heads")
        if unknown:
            from jfacemap.nets.unet import with_new_heads

            typer.echo(f"new output heads for {len(unknown)} of {len(names)} bodyparts", err=True)
            init = with_new_heads(init, base_names, names, seed)
        else:
            keypoints, names = align_bodyparts(keypoints, names, base_names, labels), base_names
        if test is not None:
            test = (test[0], align_bodyparts(test[1], test[2], names, test_labels))
    order = np.random.default_rng(seed).permutation(len(images))
    held, kept = np.sort(order[:holdout]), np.sort(order[holdout:])
    checkpoints = out / "checkpoints"
    if checkpoints.is_dir() and any(checkpoints.iterdir()):
        typer.echo(f"resuming from {checkpoints}", err=True)
    model, history = train_tracker(images[kept], keypoints[kept], names, plan, init_model=init, seed=seed,
                                   on_epoch=_print_epoch(plan.epochs), checkpoint_dir=checkpoints,
                                   bbox=bbox, **arch)
    errors = {}
    if holdout:
        errors["holdout"] = evaluate_tracker(model, images[held], keypoints[held], names, bbox)
        _summary(errors["holdout"], f"holdout ({holdout} frames)")
    if test is not None:
        errors["test"] = evaluate_tracker(model, test[0], test[1], names, bbox)
        _summary(errors["test"], f"test labels {test_labels.name}")
    meta = {"recipe": plan.to_dict(), "bbox": bbox, "base": base, "history": history,
            "training": {"labels": str(labels.resolve()), "video": None if video is None else str(video),
                         "n_frames": int(len(kept)), "holdout": int(holdout), "seed": int(seed),
                         "frame_shape": list(images.shape[1:])},
            "errors": {k: {n: v for n, v in e.items() if n != "per_frame_px"} for k, e in errors.items()}}
    save_tracker(out, model, names, jsonable(meta))
    typer.echo(f"model      {out}")


def train(
    labels: LabelsArg,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="FOLDER", help="Model folder to write (checkpoints go inside while training).")],
    video: VideoOpt = None,
    recipe: Annotated[str, typer.Option(metavar="base|finetune", help="Training preset.")] = "base",
    epochs: EpochsOpt = None,
    seed: SeedOpt = 0,
    holdout: HoldoutOpt = 0,
    test_labels: TestOpt = None,
    test_video: TestVideoOpt = None,
    bbox: BboxOpt = None,
    channels: Annotated[Optional[str], typer.Option(metavar="N,N,...", help="Encoder widths, e.g. 16,32,64,128,200 (the default).")] = None,
) -> None:
    """Train a tracker from scratch on LABELS; the bodyparts come from the file."""
    _fit(labels, out, video, bbox, recipe, epochs, seed, holdout, test_labels, test_video, channels=channels)


def finetune(
    labels: LabelsArg,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="FOLDER", help="Model folder to write (checkpoints go inside while training).")],
    base: Annotated[str, typer.Option(metavar="MODEL", help="Model to start from: a name, a model folder or an original .pt file.")] = DEFAULT_TRACKER,
    video: VideoOpt = None,
    recipe: Annotated[str, typer.Option(metavar="finetune|base", help="Training preset.")] = "finetune",
    epochs: EpochsOpt = None,
    seed: SeedOpt = 0,
    holdout: HoldoutOpt = 0,
    test_labels: TestOpt = None,
    test_video: TestVideoOpt = None,
    bbox: BboxOpt = None,
    new_bodyparts: Annotated[bool, typer.Option(
        "--new-bodyparts", help="Labels with bodyparts the base lacks: reuse its network, new output heads.")] = False,
) -> None:
    """Fine-tune the --base tracker on LABELS (bodyparts among the base model's, or --new-bodyparts)."""
    _fit(labels, out, video, bbox, recipe, epochs, seed, holdout, test_labels, test_video, base=base,
         new_bodyparts=new_bodyparts)


def evaluate(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Tracker: a model name ('facemap' = the original's installed model), a model folder or an original .pt file.")],
    labels: LabelsArg,
    video: VideoOpt = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", metavar="FILE", help="Write the errors here as JSON.")] = None,
    bbox: Annotated[Optional[tuple[int, int, int, int]], typer.Option(
        metavar="X0 X1 Y0 Y1", help="Crop box (default: the model's training box, else the whole frame).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Frames per network call.")] = 16,
) -> None:
    """Error of MODEL's predictions against LABELS, in the labels' own pixels."""
    import json

    from jfacemap.track.labels import align_bodyparts, load_labelled_frames

    images, keypoints, found, _ = load_labelled_frames(labels, video)
    from jfacemap.track.model_store import load_tracker
    from jfacemap.track.train import evaluate_tracker

    net, names, meta = load_tracker(model)
    keypoints = align_bodyparts(keypoints, found, names, labels)
    box = bbox if bbox is not None else meta.get("bbox")
    errors = evaluate_tracker(net, images, keypoints, names, box, batch_size=batch_size)
    _summary(errors, "error")
    width = max(len(n) for n in names)
    for name, px in errors["per_keypoint_px"].items():
        typer.echo(f"  {name:<{width}}  {px:7.2f} px")
    if json_out is not None:
        doc = {"model": str(model), "labels": str(labels), "bbox": box, **errors}
        write_text_atomic(json_out, json.dumps(jsonable(doc), indent=2) + "\n")
        typer.echo(f"json       {json_out}")
