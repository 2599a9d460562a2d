"""ROI rectangles: parsing 'X0,Y0,X1,Y1' and checking them against a frame.

A box is (x0, y0, x1, y1) in frame pixels, ends exclusive: it covers columns
x0..x1-1 and rows y0..y1-1, so `frames[:, y0:y1, x0:x1]` is its crop. (Note
the order differs from `jfacemap svd --roi`, which takes X0,X1,Y0,Y1.)
"""

from __future__ import annotations

import re

import numpy as np

from jfacemap.errors import JfacemapError

__all__ = ["Box", "RoiError", "MIN_SIDE", "parse_box", "check_box", "crop"]

Box = tuple[int, int, int, int]  # x0, y0, x1, y1, ends exclusive
MIN_SIDE = 4  # pixels: a smaller ROI holds no pupil, blink or texture worth measuring


class RoiError(JfacemapError):
    """An ROI that cannot be measured (outside the frame, empty, too small, malformed)."""


def parse_box(text: str, what: str = "ROI", fields: str = "X0,Y0,X1,Y1") -> Box:
    """'X0,Y0,X1,Y1' (commas and/or spaces; `fields` names the order) -> four ints; RoiError naming
    `what` and the text otherwise."""
    parts = [p for p in re.split(r"[,\s]+", str(text).strip()) if p]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise RoiError(f"{what} {text!r}: need four integers {fields} (frame pixels, ends exclusive)")
    return values  # type: ignore[return-value]


def check_box(box, height: int, width: int, what: str = "ROI", min_side: int = MIN_SIDE) -> Box:
    """`box` as ints if it lies inside a height x width frame and is at least min_side px each way."""
    if len(box) != 4:
        raise RoiError(f"{what}: need 4 numbers x0, y0, x1, y1, got {list(box)}")
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise RoiError(f"{what} {x0},{y0},{x1},{y1} is empty or outside the {width}x{height} frame "
                       f"(need 0 <= X0 < X1 <= {width}, 0 <= Y0 < Y1 <= {height})")
    if x1 - x0 < min_side or y1 - y0 < min_side:
        raise RoiError(f"{what} {x0},{y0},{x1},{y1} is {x1 - x0}x{y1 - y0} px; need at least {min_side}x{min_side}")
    return x0, y0, x1, y1


def crop(frames: np.ndarray, box: Box) -> np.ndarray:
    """(T, H, W) frames -> (T, y1 - y0, x1 - x0) view of the box."""
    x0, y0, x1, y1 = box
    return frames[:, y0:y1, x0:x1]
