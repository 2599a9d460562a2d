"""A refinement session: the project, the current tracker, its predictions, training rounds.

The HTTP server (server.py) turns requests into calls of `RefineSession`
methods; everything here checks its input and raises `RequestError` with the
HTTP status and a one-line message, so any client gets the same answers.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from jfacemap.errors import JfacemapError
from jfacemap.io.images import read_image
from jfacemap.io.video import read_frames
from jfacemap.refine.picking import PICK_METHODS
from jfacemap.refine.project import LABELS_CSV, ProjectError, RefineProject
from jfacemap.refine.tracker import Tracker, choose_frames
from jfacemap.refine.training import JobBusy, TrainingJob, fine_tune

__all__ = ["RefineSession", "RequestError"]

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class RequestError(JfacemapError):
    """A request that cannot be served: HTTP `status` and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _split(n: int, parts: int) -> list[int]:
    """n items over `parts` as evenly as possible, the first ones getting the remainder."""
    return [n // parts + (i < n % parts) for i in range(parts)]


def _number(v) -> float | None:
    """A coordinate for JSON: None (null) where there is none (NaN is not JSON)."""
    return float(v) if np.isfinite(v) else None


class RefineSession:
    """State of one `jfacemap refine`: see `open` for the arguments."""

    def __init__(self, project: RefineProject, tracker: Tracker, *, pick: str = "mixed",
                 random_fraction: float = 0.5, new_frames: int = 5, epochs: int | None = None, seed: int = 0):
        self.project, self.tracker = project, tracker
        self.pick, self.random_fraction, self.new_frames, self.seed = pick, random_fraction, new_frames, seed
        self.epochs = epochs
        self.job = TrainingJob()
        self._lock = threading.RLock()  # guards tracker, images, predictions against a finishing round
        self.images: list[np.ndarray] = [read_image(project.path(f.image)) for f in project.frames]
        self.predictions = tracker.predict_many(self.images) if self.images else []

    # ------------------------------------------------------------- open ---

    @classmethod
    def open(cls, videos: Sequence[str | os.PathLike], model: str | os.PathLike | None, project: str | os.PathLike,
             frames: int = 20, pick: str = "mixed", random_fraction: float = 0.5, new_frames: int = 5,
             epochs: int | None = None, seed: int = 0) -> "RefineSession":
        """Open (or create) `project` for `videos` with the tracker `model`
        (a name or folder; default: the project's latest round, else the
        shipped default). A new project gets `frames` frames picked by `pick`
        ("random", "uncertain", "mixed" with `random_fraction` random);
        each training round adds `new_frames` more picked by the new model."""
        from jfacemap import DEFAULT_TRACKER
        from jfacemap.track.model_store import load_tracker

        if pick not in PICK_METHODS:
            raise JfacemapError(f"pick must be one of {', '.join(PICK_METHODS)}, got {pick!r}")
        if frames < 1 or new_frames < 0 or not 0.0 <= random_fraction <= 1.0:
            raise JfacemapError(f"need frames >= 1, new_frames >= 0, random_fraction in [0, 1]; got "
                                f"{frames}, {new_frames}, {random_fraction}")
        if model is None:
            model = RefineProject.saved_model(project) or DEFAULT_TRACKER
        net, bodyparts, meta = load_tracker(model)
        tracker = Tracker(net, bodyparts, meta.get("bbox"), name=str(model))
        proj = RefineProject(project, videos, bodyparts)
        if not proj.frames:
            for v, n in enumerate(_split(frames, len(proj.videos))):
                indices = choose_frames(tracker, proj.videos[v], n, pick, random_fraction, seed + v)
                proj.add_frames(v, indices, read_frames(proj.videos[v], indices))
        proj.model = str(model)
        proj.save_config()
        return cls(proj, tracker, pick=pick, random_fraction=random_fraction, new_frames=new_frames,
                   epochs=epochs, seed=seed)

    # ------------------------------------------------------------ state ---

    def _frame_json(self, i: int) -> dict:
        f = self.project.frames[i]
        pred = self.predictions[i]
        saved = self.project.labels.get(f.image)
        points = []
        for k, name in enumerate(self.project.bodyparts):
            if saved is not None:
                x, y = saved[k]
                visible = bool(np.isfinite(x) and np.isfinite(y))
                point = {"x": float(x) if visible else None, "y": float(y) if visible else None,
                         "visible": visible, "source": "user"}
            else:  # a keypoint the model finds no peak for (NaN) starts out not visible
                found = bool(np.isfinite(pred[k, :2]).all())
                point = {"x": _number(pred[k, 0]), "y": _number(pred[k, 1]), "visible": found, "source": "model"}
            points.append({"name": name, **point, "likelihood": float(pred[k, 2])})
        height, width = self.images[i].shape
        return {"id": i, "video": self.project.videos[f.video].name, "video_index": f.video, "index": f.index,
                "image": f"frames/{i}.png", "width": width, "height": height, "round": f.round,
                "corrected": saved is not None, "keypoints": points,
                "predicted": [{"name": n, "x": _number(p[0]), "y": _number(p[1]), "likelihood": float(p[2])}
                              for n, p in zip(self.project.bodyparts, pred)]}

    def state(self) -> dict:
        """Everything the page shows: bodyparts, frames with their keypoints, training status."""
        with self._lock:
            frames = [self._frame_json(i) for i in range(len(self.project.frames))]
            return {"bodyparts": self.project.bodyparts, "frames": frames, "model": self.tracker.name,
                    "project": str(self.project.root), "labels": str(self.project.labels_path),
                    "rounds": self.project.rounds, "train": self.job.status(),
                    "defaults": {"epochs": self.epochs}}

    def frame_png(self, frame_id: int) -> Path:
        """The image file of frame `frame_id` (only listed frames: ids index the project's list)."""
        if not 0 <= frame_id < len(self.project.frames):
            raise RequestError(404, f"no frame {frame_id}")
        try:
            return self.project.path(self.project.frames[frame_id].image)
        except ProjectError as err:
            raise RequestError(403, str(err)) from err

    # ----------------------------------------------------------- labels ---

    def save_labels(self, body: object) -> dict:
        """POST /api/labels: {"frame": id, "keypoints": [{"name", "x", "y", "visible"}, ...]}
        (or keypoints as {name: {"x", "y", "visible"}}), every bodypart once,
        x, y in the frame's pixels. Returns the frame as /api/state shows it."""
        if not isinstance(body, dict):
            raise RequestError(400, "body must be a JSON object")
        frame_id = body.get("frame")
        if not isinstance(frame_id, int) or isinstance(frame_id, bool):
            raise RequestError(400, "'frame' must be an integer frame id")
        if not 0 <= frame_id < len(self.project.frames):
            raise RequestError(404, f"no frame {frame_id}")
        points = body.get("keypoints")
        if isinstance(points, dict):
            points = [{"name": k, **v} if isinstance(v, dict) else {"name": k} for k, v in points.items()]
        if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
            raise RequestError(400, "'keypoints' must be a list of {name, x, y, visible} objects")
        names = self.project.bodyparts
        height, width = self.images[frame_id].shape
        xy = np.full((len(names), 2), np.nan)
        seen: set[str] = set()
        for p in points:
            name = p.get("name")
            if name not in names:
                raise RequestError(400, f"unknown bodypart {name!r}; expected {', '.join(names)}")
            if name in seen:
                raise RequestError(400, f"bodypart {name!r} given twice")
            seen.add(name)
            visible = p.get("visible", True)
            if not isinstance(visible, bool):
                raise RequestError(400, f"{name}: 'visible' must be true or false")
            if not visible:
                continue
            x, y = p.get("x"), p.get("y")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (x, y)):
                raise RequestError(400, f"{name}: x and y must be finite numbers for a visible keypoint")
            if not (-0.5 <= x <= width - 0.5 and -0.5 <= y <= height - 0.5):
                raise RequestError(400, f"{name}: ({x}, {y}) is outside the {width}x{height} frame")
            xy[names.index(name)] = (x, y)
        missing = [n for n in names if n not in seen]
        if missing:
            raise RequestError(400, f"missing bodyparts {', '.join(missing)} (send each, visible or not)")
        try:
            self.project.save_labels(frame_id, xy)
        except ProjectError as err:
            raise RequestError(403, str(err)) from err
        with self._lock:
            return self._frame_json(frame_id)

    # --------------------------------------------------------- training ---

    def start_training(self, body: object) -> dict:
        """POST /api/train: {"epochs": optional int}. 409 while a round runs."""
        if not isinstance(body, dict):
            raise RequestError(400, "body must be a JSON object")
        epochs = body.get("epochs", self.epochs)  # None: the finetune preset's plan
        if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool) or not 1 <= epochs <= 1000):
            raise RequestError(400, "'epochs' must be an integer in [1, 1000]")
        ids = self.project.labelled_ids()
        if not ids:
            raise RequestError(400, "no corrected frames yet: correct at least one frame first")
        shapes = {self.images[i].shape for i in ids}
        if len(shapes) > 1:
            raise RequestError(400, f"corrected frames differ in size ({sorted(shapes)}); train on one video size")
        round_no = len(self.project.rounds) + 1
        try:
            from jfacemap.track.train import get_recipe, training_plan

            planned = epochs or training_plan(get_recipe("finetune"), len(ids)).epochs
            self.job.start(lambda progress: self._train_round(progress, ids, epochs, round_no), planned, round_no)
        except JobBusy as err:
            raise RequestError(409, str(err)) from err
        return self.job.status()

    def _train_round(self, progress, ids: list[int], epochs: int | None, round_no: int) -> dict:
        from jfacemap.io.jsonable import jsonable
        from jfacemap.track.model_store import save_tracker

        t0 = time.perf_counter()
        with self.project.lock:
            images = np.stack([self.images[i] for i in ids])
            xy = np.stack([self.project.labels[self.project.frames[i].image] for i in ids]).astype(np.float32)
        old = self.tracker
        progress.stage("training")
        model, history, before, after = fine_tune(old.model, old.bodyparts, images, xy, epochs, old.bbox,
                                                  self.seed + round_no, progress.epoch)
        epochs = history[-1].get("epochs", epochs) if history else epochs  # what the preset's plan ran
        progress.stage("saving")
        out = self.project.model_dir(round_no)
        summary = {k: before[k] for k in ("mean_px", "median_px", "n_points")}, \
            {k: after[k] for k in ("mean_px", "median_px", "n_points")}
        meta = {"base": old.name, "recipe": "finetune", "epochs": epochs, "history": history, "bbox": old.bbox,
                "refine": {"project": str(self.project.root), "labels": LABELS_CSV, "frames": len(ids),
                           "round": round_no, "error_before": summary[0], "error_after": summary[1]}}
        save_tracker(out, model, old.bodyparts, jsonable(meta))
        progress.stage("predicting")
        new = Tracker(model, old.bodyparts, old.bbox, name=str(out))
        added = self._pick_new_frames(new, round_no)
        predictions = new.predict_many(self.images + [im for _, im in added])
        with self._lock, self.project.lock:
            for (v, index), image in added:
                self.project.add_frames(v, [index], image[None], round_no)
                self.images.append(image)
            self.tracker, self.predictions = new, predictions
            self.project.model = str(out)
            self.project.rounds.append({"round": round_no, "model": str(out), "frames": len(ids),
                                        "epochs": epochs, "error_before": summary[0], "error_after": summary[1]})
            self.project.save_config()
        return {"round": round_no, "model": str(out), "frames": len(ids), "before": summary[0],
                "after": summary[1], "per_frame_before": before["per_frame_px"],
                "per_frame_after": after["per_frame_px"], "frame_ids": ids,
                "new_frames": list(range(len(self.images) - len(added), len(self.images))),
                "seconds": time.perf_counter() - t0}

    def _pick_new_frames(self, tracker: Tracker, round_no: int) -> list[tuple[tuple[int, int], np.ndarray]]:
        """((video, index), image) of `new_frames` frames not yet listed, picked with `tracker`."""
        added = []
        for v, n in enumerate(_split(self.new_frames, len(self.project.videos))):
            if n == 0 or not self.project.videos[v].is_file():
                continue
            indices = choose_frames(tracker, self.project.videos[v], n, self.pick, self.random_fraction,
                                    self.seed + 1000 * round_no + v, exclude=self.project.listed(v))
            added += [((v, int(t)), im) for t, im in zip(indices, read_frames(self.project.videos[v], indices))]
        return added

    # ------------------------------------------------------------- save ---

    def save_model(self, body: object) -> dict:
        """POST /api/save-model: {"name": str, "overwrite": bool}: the current
        model into the user models folder, where `--model NAME` finds it."""
        from jfacemap.io.jsonable import jsonable
        from jfacemap.track.model_store import FACEMAP_NAME, REPO_WEIGHTS, read_model_json, save_tracker, user_models_dir

        if not isinstance(body, dict):
            raise RequestError(400, "body must be a JSON object")
        name = body.get("name")
        if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
            raise RequestError(400, "'name' must be 1-64 letters, digits, '.', '_' or '-', starting with a "
                                    "letter or digit")
        if (REPO_WEIGHTS / name).exists() or name == FACEMAP_NAME:
            raise RequestError(409, f"{name!r} is a shipped or built-in model's name; choose another")
        target = user_models_dir() / name
        if target.exists() and body.get("overwrite") is not True:
            raise RequestError(409, f"a model named {name!r} exists ({target}); send overwrite: true to replace it")
        if self.job.running:
            raise RequestError(409, "a training is running; save when it ends")
        with self._lock:
            tracker = self.tracker
        meta = {"bbox": tracker.bbox, "refined_from": tracker.name, "rounds": self.project.rounds}
        try:
            meta["history"] = read_model_json(tracker.name).get("history")
        except (ValueError, OSError):
            pass
        save_tracker(target, tracker.model, tracker.bodyparts, jsonable(meta))
        return {"name": name, "path": str(target)}
