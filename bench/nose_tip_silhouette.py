"""Where nose(tip) is labelled relative to the snout's silhouette: real faces against wild renders.

    python -m bench.nose_tip_silhouette                 # 6 real faces, wild renders of 120 held-out sessions

In the eye -> nose(tip) frame (u along the axis, v across it, + = down, in
axis lengths) the snout's anterior-most silhouette point is found near the
labelled tip (Otsu threshold of a smoothed crop, the bright component at the
tip); the statistic is the label minus that point. A network learns where
the label sits on the outline it sees, so a gap between the real and the
rendered offsets shows up as a bias of the tracked tip on real faces. The
segmentation is crude (a paw or the chin can join the snout), so compare
medians. Writes bench/results/<name>.json.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.ndimage import gaussian_filter, label

from bench.common import machine_info, print_table, write_results

EYE = ("eye(back)", "eye(bottom)", "eye(front)", "eye(top)")


def _otsu(values: np.ndarray) -> float:
    hist = np.bincount(np.clip(values, 0, 255).astype(int).ravel(), minlength=256).astype(float)
    p = hist / hist.sum()
    w, m = np.cumsum(p), np.cumsum(p * np.arange(256))
    between = (m[-1] * w - m) ** 2 / (w * (1 - w) + 1e-12)
    return float(np.argmax(between))


def tip_offset(image: np.ndarray, eye: np.ndarray, tip: np.ndarray) -> tuple[float, float] | None:
    """(du, dv): the labelled tip minus the snout's anterior-most silhouette point, in axis lengths
    (u toward the nose, v down); None when no bright component is found near the tip."""
    axis = tip - eye
    length = float(np.linalg.norm(axis))
    axis = axis / length
    across = np.array([-axis[1], axis[0]])
    across *= np.sign(across[1]) or 1.0  # + = down in the image
    r = int(0.35 * length)
    cx, cy = int(round(tip[0])), int(round(tip[1]))
    y0, y1, x0, x1 = max(cy - r, 0), min(cy + r, image.shape[0]), max(cx - r, 0), min(cx + r, image.shape[1])
    crop = gaussian_filter(image.astype(float), 2)[y0:y1, x0:x1]
    if np.ptp(crop) < 10:  # no outline to find
        return None
    parts, n = label(crop > _otsu(crop))
    if n == 0:
        return None
    ys, xs = np.nonzero(parts)
    nearest = np.argmin((ys - (cy - y0)) ** 2 + (xs - (cx - x0)) ** 2)
    ys, xs = np.nonzero(parts == parts[ys[nearest], xs[nearest]])
    d = np.stack([xs + x0, ys + y0], 1) - eye
    u, v = d @ axis / length, d @ across / length
    front = u >= u.max() - 1.0 / length  # the pixels within one of the front: their middle
    return float(1.0 - u[front].mean()), float(0.0 - v[front].mean())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=120, help="wild sessions rendered (seeds 100000+)")
    ap.add_argument("--name", default="nose_tip_silhouette")
    args = ap.parse_args(argv)

    from bench.bench_real_faces import load_faces
    from jfacemap.skeleton import FACEMAP_BODYPARTS
    from jfacemap.synth import make_session

    names = list(FACEMAP_BODYPARTS)
    eye_idx, tip_idx = [names.index(b) for b in EYE], names.index("nose(tip)")
    found = {"real faces": [], "wild renders": []}
    images, keypoints, _ = load_faces(names)
    for image, kp in zip(images, keypoints):
        found["real faces"].append(tip_offset(image, np.nanmean(kp[eye_idx, :2], 0), kp[tip_idx, :2]))
    for seed in range(100_000, 100_000 + args.sessions):
        session = make_session(300, seed=seed, style="wild")
        frames, kp = session.render(100, 101)
        kp = kp[0][[list(session.bodyparts).index(b) for b in names]]
        tip, eyes = kp[tip_idx, :2], kp[eye_idx, :2]
        # the tip well inside the frame (a crop around it) and an eye to set the axis
        if np.isfinite(eyes[:, 0]).any() and np.isfinite(tip).all() and (tip > 40).all() and (tip < frames.shape[1] - 40).all():
            found["wild renders"].append(tip_offset(frames[0], np.nanmean(eyes, 0), tip))
    rows = []
    for key, offsets in found.items():
        ok = np.array([o for o in offsets if o is not None])
        rows.append({"images": key, "n": len(ok), "du median": float(np.median(ok[:, 0])),
                     "dv median": float(np.median(ok[:, 1])), "du p10-p90": np.percentile(ok[:, 0], [10, 90]).round(3).tolist(),
                     "dv p10-p90": np.percentile(ok[:, 1], [10, 90]).round(3).tolist()})
    print_table(rows, list(rows[0]))
    print("du, dv: nose(tip) label minus the anterior-most silhouette point (axis lengths; dv < 0: label above it)")
    payload = {"rows": rows, "offsets": {k: v for k, v in found.items()}, "machine": machine_info()}
    print(f"wrote {write_results(args.name, payload)}")
    return payload


if __name__ == "__main__":
    main()
