"""Fine-tuning from the page: one training at a time, in a background thread, with its progress.

    job = TrainingJob()
    job.start(work)          # work(progress) -> result dict; JobBusy while one runs
    job.status()             # {"state": "running", "epoch": 3, "epochs": 36, "history": [...], ...}
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Callable, Sequence

import numpy as np

__all__ = ["TrainingJob", "JobBusy", "Progress", "fine_tune"]


class JobBusy(RuntimeError):
    """A training is already running."""


class Progress:
    """What a running job reports: its stage, epochs done, per-epoch history."""

    def __init__(self, lock: threading.Lock, status: dict):
        self._lock, self._status = lock, status

    def stage(self, name: str, **fields) -> None:
        with self._lock:
            self._status.update(stage=name, **fields)

    def epoch(self, epoch: int, row: dict) -> bool:
        """on_epoch callback for train_tracker; returns True (stop) once cancelled."""
        with self._lock:
            self._status["epoch"] = int(epoch) + 1
            # A few frames run more epochs than asked (the recipe's minimum number of steps).
            self._status["epochs"] = int(row.get("epochs", self._status["epochs"]))
            self._status["history"].append({k: (int(v) if k in ("epoch", "epochs", "steps", "batch_size")
                                                 else float(v)) for k, v in row.items()})
            return bool(self._status.get("cancel"))


class TrainingJob:
    """Runs one `work(progress)` at a time in a daemon thread and keeps its status."""

    def __init__(self):
        self._lock = threading.Lock()
        self._status: dict = {"state": "idle", "round": 0}
        self._thread: threading.Thread | None = None

    def start(self, work: Callable[[Progress], dict], epochs: int, round_no: int) -> None:
        """Start `work`; JobBusy if one is running. Its returned dict becomes status()["result"]."""
        with self._lock:
            if self._status["state"] == "running":
                raise JobBusy("a training is already running")
            self._status = {"state": "running", "stage": "starting", "round": int(round_no), "epoch": 0,
                            "epochs": int(epochs), "history": [], "started": time.time()}
            status = self._status
        progress = Progress(self._lock, status)

        def run() -> None:
            try:
                result = work(progress)
                with self._lock:
                    status.update(state="done", stage="done", result=result, finished=time.time())
            except Exception as err:  # reported to the page, not lost in a thread
                with self._lock:
                    status.update(state="failed", stage="failed", error=str(err).strip().splitlines()[0]
                                  if str(err).strip() else type(err).__name__,
                                  traceback=traceback.format_exc(limit=5), finished=time.time())

        self._thread = threading.Thread(target=run, name="jfacemap-refine-train", daemon=True)
        self._thread.start()

    def status(self) -> dict:
        """A JSON-ready snapshot of the current (or last) job."""
        with self._lock:
            snap = dict(self._status)
            snap["history"] = list(snap.get("history", []))
            snap.pop("traceback", None)
            snap.pop("cancel", None)
            return snap

    @property
    def running(self) -> bool:
        with self._lock:
            return self._status["state"] == "running"

    def cancel(self) -> None:
        """Ask a running job to stop after its current epoch."""
        with self._lock:
            self._status["cancel"] = True

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def fine_tune(
    model, bodyparts: Sequence[str], images: np.ndarray, xy: np.ndarray, epochs: int | None,
    bbox=None, seed: int = 0, on_epoch: Callable[[int, dict], bool] | None = None,
) -> tuple[object, list[dict], dict, dict]:
    """Fine-tune `model` on (N, H, W) uint8 `images` labelled (N, K, 2) `xy`
    (frame px, NaN = not visible) with the `finetune` preset.

    Returns (new model, history, error before, error after): the errors are
    `evaluate_tracker`'s (mean_px, median_px, ...) on the same frames, for
    `model` and for the new one.
    """
    from jfacemap.track.train import evaluate_tracker, get_recipe, train_tracker

    recipe = get_recipe("finetune", **({} if epochs is None else {"epochs": int(epochs)}))
    before = evaluate_tracker(model, images, xy, bodyparts, bbox)
    new, history = train_tracker(images, xy, bodyparts, recipe, init_model=model, seed=seed,
                                 on_epoch=on_epoch, bbox=bbox)
    after = evaluate_tracker(new, images, xy, bodyparts, bbox)
    return new, history, before, after
