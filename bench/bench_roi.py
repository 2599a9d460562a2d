"""ROI measures (pupil, blink, running): accuracy on synthetic sessions with known truth, agreement with
the original Facemap's `facemap.process.run` on the same ROIs, and speed.

Sessions: `save_synthetic_session(..., roi=True)` (a known pupil trace, full blinks, a textured treadmill
moving by a known (dx, dy)), seeds never used while tuning (101-103 were). ROIs: the truth's eye box
(pupil and blink) and treadmill box. Targets (issue 16): pupil area vs true area r >= 0.98, centre
within 1 px median; blink events precision and recall >= 0.95 (an event counts when it overlaps a true
blink, frames with the lids more than half closed); running (dx, dy) within 0.1 px/frame median.

The original runs in its own venv (bench/peers.py) with the same ROIs: its pupil "saturation" set to our
pupil threshold, its blink saturation to our eye level, pupil_sigma 2 (its GUI default), no SVD. Each
program runs in a subprocess and times only its call (imports and interpreter start left out); runs
alternate ours / theirs and medians are reported. Agreement: Pearson r of each trace, ours vs theirs.
Also draws bench/results/roi_traces.png (the first session's ROI traces under its keypoint traces).

    python bench/bench_roi.py                          # 3 sessions x 3000 frames, with the original
    python bench/bench_roi.py --frames 1000 --no-peer  # accuracy only
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS, machine_info, print_table, write_results  # noqa: E402
from jfacemap.roi.scores import roi_accuracy, trace_correlation  # noqa: E402
from jfacemap.synth.export import save_synthetic_session  # noqa: E402

# Runs in OUR environment. argv: video out.npz request.json
OURS = r"""
import json, sys, time
import numpy as np
from jfacemap.roi.pipeline import RoiRequest, roi_video
video, out, boxes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
request = RoiRequest(**{k: tuple(v) for k, v in boxes.items()})
t0 = time.perf_counter()
arrays = roi_video(video, request)
seconds = time.perf_counter() - t0
np.savez(out, **arrays)
print(json.dumps({"seconds": seconds}))
"""

# Runs INSIDE the facemap venv; its pickled _proc.npy never leaves it. argv: video out_dir rois.json
THEIRS = r"""
import json, os, sys, time
import numpy as np
from facemap import process
video, out, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
def roi(kind, box, **extra):
    x0, y0, x1, y1 = box
    r = {"rind": kind, "ivid": 0, "yrange": np.arange(y0, y1), "xrange": np.arange(x0, x1)}
    r["ellipse"] = np.ones((y1 - y0, x1 - x0), bool)
    r.update(extra)
    return r
rois = [roi(0, spec["pupil"], saturation=spec["pupil_saturation"], pupil_sigma=2.0),
        roi(2, spec["blink"], saturation=spec["blink_saturation"]), roi(3, spec["running"])]
proc = {"sbin": 1, "fullSVD": False, "save_mat": False, "rois": rois, "sy": np.array([0]), "sx": np.array([0]),
        "savepath": out}
t0 = time.perf_counter()
savename = process.run([[video]], sbin=1, motSVD=False, movSVD=False, proc=proc, savepath=out)
seconds = time.perf_counter() - t0
p = np.load(savename, allow_pickle=True).item()
pup = p["pupil"][0]
np.savez(out + "/theirs.npz", area=pup["area"], com=pup["com"], blink=np.asarray(p["blink"][0]),
         running=np.asarray(p["running"][0]))
os.remove(savename)
print(json.dumps({"seconds": seconds}))
"""


def run_script(python: Path, script: str, *args) -> dict:
    result = subprocess.run([str(python), "-c", script, *map(str, args)], capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"{python}: {result.stderr.strip()[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def agreement(ours: dict, theirs: dict, truth: dict) -> dict:
    """Pearson r, ours vs theirs, per trace; and theirs vs the truth. Their com is (row, col) in the ROI."""
    x0, y0 = truth["roi_eye_box"][:2]
    com = theirs["com"][:, ::-1] + np.array([x0, y0])
    run = theirs["running"][:, ::-1].astype(np.float64)  # theirs: (dy, dx)
    return {
        "r_pupil_area": trace_correlation(ours["pupil_area"], theirs["area"]),
        "r_pupil_x": trace_correlation(ours["pupil_center"][:, 0], com[:, 0]),
        "r_pupil_y": trace_correlation(ours["pupil_center"][:, 1], com[:, 1]),
        "r_blink": trace_correlation(ours["blink_raw"], theirs["blink"]),
        "r_running_dx": trace_correlation(ours["running"][1:, 0], run[1:, 0]),
        "r_running_dy": trace_correlation(ours["running"][1:, 1], run[1:, 1]),
        "theirs_pupil_area_r_truth": trace_correlation(theirs["area"], truth["roi_pupil_area"]),
        "theirs_running_err_median_dx": float(np.median(np.abs(run[1:, 0] - truth["roi_running"][1:, 0]))),
        "theirs_running_err_median_dy": float(np.median(np.abs(run[1:, 1] - truth["roi_running"][1:, 1]))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[21, 22, 23])
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each program per session")
    parser.add_argument("--no-peer", action="store_true", help="skip the original Facemap")
    args = parser.parse_args()
    python = None
    if not args.no_peer:
        from bench.peers import facemap_python
        python = facemap_python()
    rows, sessions = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for seed in args.seeds:
            files = save_synthetic_session(work / f"roi_{seed}.mp4", args.frames, seed=seed, roi=True)
            truth = dict(np.load(files.latents))
            eye, tread = truth["roi_eye_box"].tolist(), truth["roi_treadmill_box"].tolist()
            boxes = {"pupil": eye, "blink": eye, "running": tread}
            times: dict[str, list[float]] = {"ours": [], "theirs": []}
            for r in range(args.repeats):
                times["ours"].append(run_script(Path(sys.executable), OURS, files.video, work / "ours.npz",
                                                json.dumps(boxes))["seconds"])
                if python is not None:
                    ours = dict(np.load(work / "ours.npz"))
                    spec = dict(boxes, pupil_saturation=float(ours["pupil_threshold"]),
                                blink_saturation=float(ours["blink_level"]))
                    out = work / f"theirs_{seed}"
                    out.mkdir(exist_ok=True)
                    times["theirs"].append(run_script(python, THEIRS, files.video, out, json.dumps(spec))["seconds"])
            ours = dict(np.load(work / "ours.npz"))
            result = {"seed": seed, "frames": args.frames, "eye_box": eye, "treadmill_box": tread,
                      "seconds_ours": statistics.median(times["ours"]), **roi_accuracy(ours, truth)}
            if python is not None:
                theirs = dict(np.load(work / f"theirs_{seed}" / "theirs.npz"))
                result["seconds_theirs"] = statistics.median(times["theirs"])
                result["speedup"] = result["seconds_theirs"] / result["seconds_ours"]
                result |= agreement(ours, theirs, truth)
            sessions.append(result)
            if seed == args.seeds[0]:  # the figure: ROI traces under keypoint traces, truth in grey
                from jfacemap.figures.roi import plot_roi_traces
                from jfacemap.io.keypoints import read_facemap_pose
                keypoints, bodyparts = read_facemap_pose(files.keypoints)
                plot_roi_traces(ours, 50.0, RESULTS / "roi_traces.png", keypoints=keypoints, bodyparts=list(bodyparts),
                                truth={"pupil_area": truth["roi_pupil_area"], "running": truth["roi_running"]})
            rows.append({k: result.get(k, "") for k in (
                "seed", "pupil_area_r", "pupil_center_err_median_px", "blink_precision", "blink_recall",
                "running_err_median_dx", "running_err_median_dy", "seconds_ours", "seconds_theirs", "speedup")})
            print(json.dumps(result), flush=True)
    print_table(rows, list(rows[0]))
    if python is not None:
        agree = [{k: s[k] for k in ("seed", "r_pupil_area", "r_pupil_x", "r_pupil_y", "r_blink", "r_running_dx",
                                    "r_running_dy", "theirs_pupil_area_r_truth")} for s in sessions]
        print_table(agree, list(agree[0]))
    targets = {"pupil_area_r": ">= 0.98", "pupil_center_err_median_px": "< 1", "blink_precision": ">= 0.95",
               "blink_recall": ">= 0.95", "running_err_median": "< 0.1 px/frame", "speedup": ">= 2"}
    path = write_results("roi", {"machine": machine_info(), "command": " ".join(sys.argv), "targets": targets,
                                 "sessions": sessions})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
