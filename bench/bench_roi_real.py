"""Running speed on a real video: jfacemap's `roi --running` against the original Facemap and a brute-force reference.

The video is `../shared/data/mirror-mouse/videos/test_vid.mp4` (994 frames, 396 x 406, 250 Hz): a mouse
on a wheel whose perforated rim crosses the side view. The ROI is that rim, right of the paws
(X0,Y0,X1,Y1 = 150,118,390,162 by default). No truth exists for a real wheel, so two independent
estimates stand in for it:

- reference: each frame's ROI minus the ROI's mean over the video (a wheel turns in place: its rim's
  edges never move, only its holes do, and a plain correlation locks onto the still edges at zero
  shift), then, for each pair of consecutive frames, the integer shift (dx in [-R, R], dy in [-4, 4])
  that maximises the normalised cross-correlation of the overlapping parts, refined to sub-pixel by a
  parabola through the peak and its neighbours (plain numpy, float64; nothing shared with jfacemap);
- the original Facemap 1.0.8 (`facemap.process.run`, its running ROI; own venv, bench/peers.py).

Reports, for dx and dy (px/frame): median |ours - reference|, |theirs - reference|, Pearson r, and the
seconds each program took (its call only). Writes bench/results/<name>.json.

    python -m bench.bench_roi_real
    python -m bench.bench_roi_real --no-peer
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.bench_roi import OURS, run_script
from bench.common import machine_info, print_table, write_results
from jfacemap.io.video import read_frames, video_info
from jfacemap.roi.scores import trace_correlation

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "data" / "mirror-mouse" / "videos" / "test_vid.mp4"

# Runs INSIDE the facemap venv. argv: video out_dir box.json (X0, Y0, X1, Y1)
THEIRS_RUNNING = r"""
import json, sys, time
import numpy as np
from facemap import process
video, out, (x0, y0, x1, y1) = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
roi = {"rind": 3, "ivid": 0, "yrange": np.arange(y0, y1), "xrange": np.arange(x0, x1),
       "ellipse": np.ones((y1 - y0, x1 - x0), bool)}
proc = {"sbin": 1, "fullSVD": False, "save_mat": False, "rois": [roi], "sy": np.array([0]), "sx": np.array([0]),
        "savepath": out}
t0 = time.perf_counter()
savename = process.run([[video]], sbin=1, motSVD=False, movSVD=False, proc=proc, savepath=out)
seconds = time.perf_counter() - t0
p = np.load(savename, allow_pickle=True).item()
np.save(out + "/theirs_running.npy", np.asarray(p["running"][0]))
print(json.dumps({"seconds": seconds}))
"""


def reference_shifts(crops: np.ndarray, max_dx: int, max_dy: int = 4) -> np.ndarray:
    """(T, h, w) -> (T - 1, 2) float64 (dx, dy) px: content of frame t+1 = content of frame t moved by (dx, dy).

    The mean over T is removed first (what never moves must not vote for zero shift). Exhaustive
    normalised cross-correlation over integer shifts on the overlap, then a parabola per axis.
    """
    crops = crops.astype(np.float64)
    crops = crops - crops.mean(0)
    h, w = crops.shape[1:]
    out = np.zeros((len(crops) - 1, 2))
    dys, dxs = np.arange(-max_dy, max_dy + 1), np.arange(-max_dx, max_dx + 1)
    for t in range(len(crops) - 1):
        a, b = crops[t], crops[t + 1]
        score = np.full((len(dys), len(dxs)), -np.inf)
        for i, dy in enumerate(dys):
            for j, dx in enumerate(dxs):
                # b[y + dy, x + dx] ~ a[y, x] on the overlap
                pa = a[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
                pb = b[max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
                pa, pb = pa - pa.mean(), pb - pb.mean()
                score[i, j] = (pa * pb).sum() / np.sqrt((pa * pa).sum() * (pb * pb).sum() + 1e-12)
        i, j = np.unravel_index(np.argmax(score), score.shape)

        def vertex(m1: float, m0: float, p1: float) -> float:
            den = m1 - 2 * m0 + p1
            return 0.0 if not np.isfinite(den) or den >= 0 else 0.5 * (m1 - p1) / den

        fx = vertex(score[i, j - 1], score[i, j], score[i, j + 1]) if 0 < j < len(dxs) - 1 else 0.0
        fy = vertex(score[i - 1, j], score[i, j], score[i + 1, j]) if 0 < i < len(dys) - 1 else 0.0
        out[t] = dxs[j] + fx, dys[i] + fy
    return out


def compare(trace: np.ndarray, reference: np.ndarray) -> dict:
    """Median |trace - reference| and Pearson r per axis; trace and reference (T - 1, 2) dx, dy."""
    diff = np.abs(trace - reference)
    return {"median_dx": float(np.median(trace[:, 0])), "median_abs_dx": float(np.median(diff[:, 0])), "median_abs_dy": float(np.median(diff[:, 1])),
            "p90_abs_dx": float(np.percentile(diff[:, 0], 90)),
            "r_dx": trace_correlation(trace[:, 0], reference[:, 0]),
            "r_dy": trace_correlation(trace[:, 1], reference[:, 1])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=VIDEO)
    ap.add_argument("--box", default="150,118,390,162", help="running ROI X0,Y0,X1,Y1 (frame px)")
    ap.add_argument("--max-dx", type=int, default=24, help="reference search range, px/frame")
    ap.add_argument("--no-peer", action="store_true", help="skip the original Facemap")
    ap.add_argument("--name", default="roi_real")
    args = ap.parse_args(argv)
    box = [int(v) for v in args.box.split(",")]
    x0, y0, x1, y1 = box
    n = video_info(args.video).n_frames
    crops = read_frames(args.video, np.arange(n))[:, y0:y1, x0:x1]
    reference = reference_shifts(crops, args.max_dx)
    results = {"video": str(args.video), "frames": n, "box": box, "reference": {
        "median_dx": float(np.median(reference[:, 0])), "median_dy": float(np.median(reference[:, 1])),
        "p5_dx": float(np.percentile(reference[:, 0], 5)), "p95_dx": float(np.percentile(reference[:, 0], 95))}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ours_meta = run_script(Path(sys.executable), OURS, args.video, Path(tmp) / "ours.npz", json.dumps({"running": box}))
        ours = np.load(Path(tmp) / "ours.npz")["running"][1:].astype(np.float64)
        results["ours"] = {"seconds": ours_meta["seconds"], **compare(ours, reference)}
        rows.append({"program": "jfacemap", **results["ours"]})
        if not args.no_peer:
            from bench.peers import facemap_python

            out = Path(tmp) / "theirs"
            out.mkdir()
            meta = run_script(facemap_python(), THEIRS_RUNNING, args.video, out, json.dumps(box))
            theirs = np.load(out / "theirs_running.npy")[1:, ::-1].astype(np.float64)  # theirs: (dy, dx)
            # Their sign convention is the opposite of ours (and of the reference's): flip if it anti-correlates.
            sign = np.sign(trace_correlation(theirs[:, 0], reference[:, 0])) or 1.0
            results["theirs"] = {"seconds": meta["seconds"], "sign": float(sign), **compare(sign * theirs, reference)}
            results["ours_vs_theirs"] = compare(ours, sign * theirs)
            rows.append({"program": "original (facemap 1.0.8)", **results["theirs"]})
    print_table(rows, ["program", "median_dx", "median_abs_dx", "median_abs_dy", "p90_abs_dx", "r_dx", "r_dy", "seconds"])
    print(f"reference: median dx {results['reference']['median_dx']:.2f} px/frame "
          f"(5-95 %: {results['reference']['p5_dx']:.2f} to {results['reference']['p95_dx']:.2f})")
    path = write_results(args.name, {"machine": machine_info(), "command": " ".join(sys.argv), **results})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
