"""How far a layout alone gets on the real faces: the floor under a tracker that only knew where points sit.

    python -m bench.real_face_layout_floor

For each real face the labelled eye centre and nose(tip) set the eye -> nose
frame (bench/render_vs_real.py: u along the axis, v across it, in axis
lengths). A "layout oracle" places every other labelled point (nose, whiskers)
at another set of faces' mean (u, v) in that frame: the other mouse's three
views (what fine-tuning on one mouse could at best carry over as layout), or
the same mouse's two other views. Its error is how much the points move
between mice and views relative to the eye and the nose, whisking and label
noise included: a tracker must read them off the image to beat it. Eye points
and nose(tip) set the frame and are not scored; lowerlip and mouth are not
labelled. Px at the paper's 256 scale. Writes bench/results/<name>.json.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from bench.common import machine_info, print_table, write_results
from bench.render_vs_real import EYE, PER_KEYPOINT, face_frame, to_face_frame

# the points render_vs_real compares but the frame itself: nose(bottom), nose(r), nose(top), whiskers
SCORED = tuple(b for b in PER_KEYPOINT if b not in EYE and b != "nose(tip)")


def layout_oracle_errors(xy: np.ndarray, bodyparts, source: np.ndarray, target: int) -> np.ndarray:
    """(K,) error (input px; NaN unscored or unlabelled) of placing face `target`'s points at the
    mean eye -> nose (u, v) of the faces `source` (bool (N,)), in `target`'s own frame.

    xy: (N, K, 2) labelled points, NaN where unlabelled."""
    bodyparts = list(bodyparts)
    uv = np.full(xy.shape, np.nan)
    for i, points in enumerate(xy):
        frame = face_frame(points, bodyparts)
        if frame is not None:
            uv[i] = np.stack(to_face_frame(points, *frame), axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a point no source face labels: NaN
        mean_uv = np.nanmean(uv[source], axis=0)
    origin, axis, normal = face_frame(xy[target], bodyparts)
    placed = origin + mean_uv @ np.stack([axis, normal])
    err = np.linalg.norm(placed - xy[target], axis=-1)
    scored = np.isin(bodyparts, SCORED)
    return np.where(scored, err, np.nan)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", default="real_face_layout_floor")
    args = ap.parse_args(argv)

    from bench.bench_real_faces import SCALE, load_faces
    from jfacemap.skeleton import FACEMAP_BODYPARTS

    names = list(FACEMAP_BODYPARTS)
    images, keypoints, mouse = load_faces(names)
    xy = keypoints[..., :2].astype(np.float64)
    splits = {}
    for m in sorted(set(mouse)):
        splits[f"{m}'s mean layout -> the other mouse"] = [(mouse == m, i) for i in np.flatnonzero(mouse != m)]
    splits["the same mouse's 2 other views"] = [((mouse == mouse[i]) & (np.arange(len(mouse)) != i), i)
                                                for i in range(len(mouse))]
    rows = []
    for label, pairs in splits.items():
        err = np.stack([layout_oracle_errors(xy, names, src, i) for src, i in pairs]) * SCALE
        row = {"layout from": label, "mean_px": float(np.nanmean(err)), "n_points": int(np.sum(np.isfinite(err)))}
        for b in SCORED:
            col = err[:, names.index(b)]
            row[b] = float(np.nanmean(col)) if np.isfinite(col).any() else None
        rows.append(row)
    print_table(rows, list(rows[0]))
    print(f"scored: {', '.join(SCORED)} (the frame is set by the labelled {', '.join(EYE)} and nose(tip))")
    payload = {"rows": rows, "machine": machine_info()}
    print(f"wrote {write_results(args.name, payload)}")
    return payload


if __name__ == "__main__":
    main()
