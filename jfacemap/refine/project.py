"""A refinement project folder: the frames to label, their images, the labels, the trained rounds.

    <project>/refine.json                 videos, bodyparts, frames to label, model in use
    <project>/CollectedData.csv           the corrected frames (DeepLabCut CSV, x,y; empty = not visible)
    <project>/labeled-data/<video>/img000042.png   frame 42 of <video>, as labelled
    <project>/models/round-<n>/           each model trained from the page

The CSV names its images relative to the project folder, so
`jfacemap finetune <project>/CollectedData.csv` trains on the same frames
from a terminal. Every write is atomic and made under one lock, so a killed
server or two saves at once leave the old file or the new one, never a mix.
No path is ever taken from a request: files are named here, and every one
is checked to resolve inside the project (a symlink pointing out is refused).
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from jfacemap.errors import JfacemapError
from jfacemap.io.atomic import write_text_atomic
from jfacemap.io.images import write_png
from jfacemap.io.keypoints import LabelTable, read_dlc_csv, write_dlc_csv

__all__ = ["RefineProject", "ProjectFrame", "ProjectError", "LABELS_CSV"]

FORMAT = "jfacemap-refine"
CONFIG = "refine.json"
LABELS_CSV = "CollectedData.csv"
IMAGES = "labeled-data"
MODELS = "models"
SCORER = "jfacemap-refine"


class ProjectError(JfacemapError):
    """The project folder cannot be used as asked; one line naming the problem."""


@dataclass(frozen=True)
class ProjectFrame:
    """One frame to label: frame `index` of video number `video`, stored as
    the image `image` (path relative to the project); `round` is the training
    round after which it was picked (0: before any)."""

    video: int
    index: int
    image: str
    round: int = 0


def _video_key(path: Path, taken: set[str]) -> str:
    """A folder name for a video's images: its stem in safe characters, made unique."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("._") or "video"
    key, n = stem, 2
    while key in taken:
        key, n = f"{stem}-{n}", n + 1
    return key


class RefineProject:
    """The project folder `root` (created if missing) for `videos` and `bodyparts`.

    Reopening a folder keeps its frames and labels; videos not yet in it are
    added; bodyparts must be the ones it was made with.
    """

    def __init__(self, root: str | os.PathLike, videos: Sequence[str | os.PathLike], bodyparts: Sequence[str]):
        self.root = Path(root).expanduser().absolute()
        if self.root.exists() and not self.root.is_dir():
            raise ProjectError(f"{self.root}: project must be a folder")
        self.root.mkdir(parents=True, exist_ok=True)
        self.root = self.root.resolve()
        self.lock = threading.RLock()
        self.bodyparts = [str(b) for b in bodyparts]
        config = self._read_config()
        if config is not None and config["bodyparts"] != self.bodyparts:
            raise ProjectError(f"{self.root}: project bodyparts {config['bodyparts']} differ from the "
                               f"model's {self.bodyparts}")
        self.videos: list[Path] = [Path(v) for v in (config or {}).get("videos", [])]
        self.video_keys: list[str] = list((config or {}).get("video_keys", []))
        for v in videos:
            p = Path(v).expanduser().resolve()
            if not p.is_file():
                raise ProjectError(f"{v}: no such video")
            if p not in self.videos:
                self.videos.append(p)
                self.video_keys.append(_video_key(p, set(self.video_keys)))
        if not self.videos:
            raise ProjectError(f"{self.root}: no videos given and none in the project")
        self.frames: list[ProjectFrame] = [ProjectFrame(**f) for f in (config or {}).get("frames", [])]
        self.model: str | None = (config or {}).get("model")
        self.rounds: list[dict] = list((config or {}).get("rounds", []))
        self.labels, self._other_rows = self._read_labels()

    @staticmethod
    def saved_model(root: str | os.PathLike) -> str | None:
        """The model a project folder last used (its latest round), or None."""
        p = Path(root).expanduser() / CONFIG
        try:
            return json.loads(p.read_text()).get("model") if p.is_file() else None
        except (OSError, json.JSONDecodeError, AttributeError):
            return None

    # ------------------------------------------------------------ paths ---

    def path(self, relative: str) -> Path:
        """`relative` inside the project, resolved; ProjectError if it would leave it
        (absolute, '..', or through a symlink pointing out)."""
        rel = Path(relative)
        if rel.is_absolute() or ".." in rel.parts:
            raise ProjectError(f"{relative}: not a path inside the project")
        full = (self.root / rel).resolve()
        if not full.is_relative_to(self.root):
            raise ProjectError(f"{relative}: resolves outside the project folder")
        return full

    @property
    def labels_path(self) -> Path:
        return self.path(LABELS_CSV)

    def image_name(self, video: int, index: int) -> str:
        """Project-relative image path of frame `index` of video number `video`."""
        return f"{IMAGES}/{self.video_keys[video]}/img{int(index):06d}.png"

    def model_dir(self, round_no: int) -> Path:
        return self.path(f"{MODELS}/round-{int(round_no)}")

    # ----------------------------------------------------------- config ---

    def _read_config(self) -> dict | None:
        p = self.path(CONFIG)
        if not p.exists():
            return None
        try:
            config = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ProjectError(f"{p}: cannot read the project ({err})") from err
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise ProjectError(f"{p}: not a jfacemap refine project")
        return config

    def save_config(self) -> None:
        """Write refine.json atomically (frames, videos, model, rounds)."""
        with self.lock:
            doc = {"format": FORMAT, "version": 1, "bodyparts": self.bodyparts,
                   "videos": [str(v) for v in self.videos], "video_keys": self.video_keys,
                   "frames": [f.__dict__ for f in self.frames], "model": self.model, "rounds": self.rounds}
            write_text_atomic(self.path(CONFIG), json.dumps(doc, indent=1) + "\n")

    def add_frames(self, video: int, indices: Sequence[int], images: np.ndarray, round_no: int = 0) -> list[int]:
        """Store the (N, H, W) uint8 `images` of frames `indices` of video
        number `video` and list them to label; returns their frame ids."""
        with self.lock:
            ids = []
            for index, image in zip(indices, images):
                name = self.image_name(video, int(index))
                write_png(self.path(name), np.asarray(image, np.uint8))
                self.frames.append(ProjectFrame(int(video), int(index), name, int(round_no)))
                ids.append(len(self.frames) - 1)
            self.save_config()
            return ids

    def listed(self, video: int) -> set[int]:
        """Frame indices of video number `video` already listed."""
        return {f.index for f in self.frames if f.video == video}

    # ----------------------------------------------------------- labels ---

    def _read_labels(self) -> tuple[dict[str, np.ndarray], LabelTable | None]:
        """{image: (K, 2) float64 x, y (NaN = not visible)} for the listed frames,
        and the CSV's other rows (kept as they are, e.g. added by hand)."""
        p = self.labels_path
        if not p.exists():
            return {}, None
        table = read_dlc_csv(p)
        if table.bodyparts != self.bodyparts:
            raise ProjectError(f"{p}: bodyparts {table.bodyparts} differ from the project's {self.bodyparts}")
        listed = {f.image for f in self.frames}
        labels = {name: kp[:, :2].copy() for name, kp in zip(table.index, table.keypoints) if name in listed}
        keep = [i for i, name in enumerate(table.index) if name not in listed]
        other = LabelTable([table.index[i] for i in keep], table.bodyparts, table.keypoints[keep]) if keep else None
        return labels, other

    def save_labels(self, frame_id: int, xy: np.ndarray) -> None:
        """Record (K, 2) x, y (NaN = not visible) as the labels of frame `frame_id`
        and rewrite the CSV atomically."""
        xy = np.asarray(xy, np.float64)
        if xy.shape != (len(self.bodyparts), 2):
            raise ProjectError(f"labels must be ({len(self.bodyparts)}, 2), got {xy.shape}")
        with self.lock:
            name = self.frames[frame_id].image
            previous = self.labels.get(name)
            self.labels[name] = xy.copy()
            try:
                self._write_csv()
            except BaseException:  # memory keeps matching the file
                if previous is None:
                    del self.labels[name]
                else:
                    self.labels[name] = previous
                raise

    def _write_csv(self) -> None:
        order = [f.image for f in self.frames if f.image in self.labels]
        kp = np.full((len(order), len(self.bodyparts), 3), np.nan)
        for row, name in enumerate(order):
            kp[row, :, :2] = self.labels[name]
        index = list(order)
        if self._other_rows is not None:
            index += self._other_rows.index
            kp = np.concatenate([kp, self._other_rows.keypoints])
        write_dlc_csv(self.labels_path, LabelTable(index, self.bodyparts, kp, SCORER), with_likelihood=False)

    def labelled_ids(self) -> list[int]:
        """Ids of the frames that have saved labels."""
        return [i for i, f in enumerate(self.frames) if f.image in self.labels]
