"""Many videos: serial `jfacemap track` against `--cluster local:N` (Dask distributed) on the same machine.

    python -m bench.bench_cluster                      # 8 synthetic 256x256 videos of 150 frames, local:2
    python -m bench.bench_cluster --videos 8 --frames 300 --workers 2 --model base

Both runs are the real command in a subprocess, writing into fresh folders, so
each pays what a user pays: process start, model load, compilation (once per
worker process on the cluster) and, for the cluster, starting it. Reported:
  wall frames/s        all frames / the command's wall time (the user's figure)
  tracking frames/s    all frames / first video start to last video end (cluster: its summary line)
  per-video frames/s   median over videos that were not a worker's first (steady state, no compile)
and whether every `_FacemapPose.h5` array is identical between the two runs.
Prints a table; writes bench/results/cluster.json (`--name` for another file).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import machine_info, print_table, write_results  # noqa: E402
from jfacemap import DEFAULT_TRACKER  # noqa: E402
from jfacemap.io.video import write_video  # noqa: E402
from jfacemap.synth import make_session  # noqa: E402

# serial: "tracked 150 frames in 5.1 s (29.4 frames/s)"; cluster: "tracked v0.mp4: 150 frames in 5.1 s on host:pid"
_SERIAL = re.compile(r"tracked (\d+) frames in ([\d.]+) s")
_CLUSTER = re.compile(r"tracked \S+: (\d+) frames in ([\d.]+) s on (\S+)")
_SUMMARY = re.compile(r"(\d+) frames in ([\d.]+) s \(([\d.]+) frames/s overall")


def make_videos(folder: Path, n: int, frames: int, size: int) -> list[Path]:
    """n synthetic sessions (different seeds), lossy mp4 as a lab would have."""
    folder.mkdir(parents=True, exist_ok=True)
    videos = []
    for i in range(n):
        session = make_session(frames, seed=i, size=size)
        video, _ = session.render(0, frames)
        videos.append(write_video(folder / f"session{i}.mp4", video, fps=50.0))
    return videos


def run_track(videos: list[Path], model: str, out: Path, cluster: str | None) -> tuple[float, str]:
    """(wall seconds, stdout) of one `jfacemap track` command."""
    args = [sys.executable, "-m", "jfacemap.cli.app", "track", *map(str, videos), "--model", model, "--out", str(out)]
    if cluster is not None:
        args += ["--cluster", cluster]
    started = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"track failed:\n{result.stderr}")
    return seconds, result.stdout


def per_video(stdout: str, cluster: bool) -> list[tuple[int, float, str]]:
    """(frames, seconds, worker) per video; serial runs have one worker."""
    if cluster:
        return [(int(f), float(s), w) for f, s, w in _CLUSTER.findall(stdout)]
    return [(int(f), float(s), "serial") for f, s in _SERIAL.findall(stdout)]


def steady_rate(videos: list[tuple[int, float, str]]) -> float:
    """Median frames/s over videos that were not their worker's first (those compile)."""
    seen, rates = set(), []
    for frames, seconds, worker in videos:
        if worker in seen:
            rates.append(frames / seconds)
        seen.add(worker)
    return statistics.median(rates) if rates else float("nan")


def same_outputs(a: Path, b: Path) -> bool:
    """Every dataset of every pose file in `a` equal (NaN = NaN) to the one in `b`."""
    def arrays(path):
        found = {}
        with h5py.File(path, "r") as f:
            f.visititems(lambda n, d: found.__setitem__(n, d[()]) if isinstance(d, h5py.Dataset) else None)
        return found

    files = sorted(a.glob("*_FacemapPose.h5"))
    for path in files:
        x, y = arrays(path), arrays(b / path.name)
        if sorted(x) != sorted(y) or not all(np.array_equal(x[k], y[k], equal_nan=x[k].dtype.kind == "f") for k in x):
            return False
    return bool(files)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--frames", type=int, default=150, help="frames per synthetic video")
    ap.add_argument("--size", type=int, default=256, help="frame height = width, px")
    ap.add_argument("--workers", type=int, default=2, help="local:N")
    ap.add_argument("--model", default=DEFAULT_TRACKER)
    ap.add_argument("--name", default="cluster", help="results file: bench/results/NAME.json")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        videos = make_videos(root / "videos", args.videos, args.frames, args.size)
        total = args.videos * args.frames
        serial_s, serial_out = run_track(videos, args.model, root / "serial", None)
        cluster_s, cluster_out = run_track(videos, args.model, root / "cluster", f"local:{args.workers}")
        identical = same_outputs(root / "serial", root / "cluster")
    serial_videos, cluster_videos = per_video(serial_out, False), per_video(cluster_out, True)
    assert len(serial_videos) == len(cluster_videos) == args.videos, (serial_out, cluster_out)
    summary = _SUMMARY.search(cluster_out)
    runs = {
        "serial": {"wall_s": serial_s, "wall_frames_per_s": total / serial_s,
                   "tracking_frames_per_s": total / sum(s for _, s, _ in serial_videos),
                   "per_video_frames_per_s": steady_rate(serial_videos),
                   "videos": [{"frames": f, "seconds": s} for f, s, _ in serial_videos]},
        f"local:{args.workers}": {"wall_s": cluster_s, "wall_frames_per_s": total / cluster_s,
                                  "tracking_frames_per_s": float(summary.group(3)),
                                  "per_video_frames_per_s": steady_rate(cluster_videos),
                                  "videos": [{"frames": f, "seconds": s, "worker": w} for f, s, w in cluster_videos]},
    }
    rows = [{"run": name, "wall s": r["wall_s"], "wall frames/s": r["wall_frames_per_s"],
             "tracking frames/s": r["tracking_frames_per_s"], "per-video frames/s": r["per_video_frames_per_s"]}
            for name, r in runs.items()]
    print(f"{args.videos} videos x {args.frames} frames, {args.size}x{args.size}, model {args.model}")
    print_table(rows, ["run", "wall s", "wall frames/s", "tracking frames/s", "per-video frames/s"])
    ratio = serial_s / cluster_s
    print(f"cluster / serial wall throughput: {ratio:.2f}x; outputs identical: {identical}")
    path = write_results(args.name, {
        "videos": args.videos, "frames_per_video": args.frames, "size": args.size, "model": args.model,
        "workers": args.workers, "threads_per_worker": 1, "runs": runs,
        "ratio_wall_cluster_over_serial": ratio, "identical_outputs": identical,
        "machine": machine_info(sorted(os.sched_getaffinity(0))),
    })
    print(f"wrote {path}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
