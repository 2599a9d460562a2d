"""Whole-video tracking throughput against its two bounds, on the same file in one run.

    python -m bench.bench_track_throughput                         # synthetic 640x480 video
    python -m bench.bench_track_throughput --video ../shared/data/mirror-mouse/videos/test_vid.mp4

Three passes over the same video, alternated `--repeats` times:
  decode only   iter_chunks, nothing else (the GPU target: end to end >= 80 % of this)
  forward only  the jitted predict fn on frames already in memory (the CPU target: >= 90 %)
  end to end    track_video: decode in a thread, predict, write the pose file
Prints a table; writes bench/results/track_throughput_<device>.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench.bench_tracker_speed import random_model  # noqa: E402
from bench.common import machine_info, print_table, write_results  # noqa: E402
from jfacemap.io.video import iter_chunks, video_info, write_video  # noqa: E402
from jfacemap.skeleton import FACEMAP_BODYPARTS  # noqa: E402
from jfacemap.track.inference import make_predict_fn  # noqa: E402
from jfacemap.track.predict import DEFAULT_CHUNK, track_video  # noqa: E402


def synthetic_video(folder: Path, n: int, height: int = 480, width: int = 640) -> Path:
    """A 640x480 clip: moving texture + noise, so decoding does real work."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:height, :width]

    def frames():
        for i in range(n):
            f = 90 + 40 * np.sin((xx + 3 * i) / 23.0) * np.cos(yy / 17.0) + rng.normal(0, 8, (height, width))
            yield np.clip(f, 0, 255).astype(np.uint8)

    return write_video(folder / "clip.mp4", frames(), fps=50.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", type=Path, help="video to track (default: synthetic 640x480)")
    ap.add_argument("--frames", type=int, default=200, help="length of the synthetic video")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    model = random_model()
    bodyparts = list(FACEMAP_BODYPARTS)
    with tempfile.TemporaryDirectory() as tmp:
        video = args.video or synthetic_video(Path(tmp), args.frames)
        info = video_info(video)
        frames = np.concatenate(list(iter_chunks(video)))
        predict = make_predict_fn(model, None, (info.height, info.width))
        predictors: dict = {}

        def decode_only():
            return sum(len(c) for c in iter_chunks(video, chunk_size=args.chunk_size))

        def forward_only():
            out = None
            for i in range(0, len(frames), args.batch_size):
                batch = frames[i : i + args.batch_size]
                if len(batch) < args.batch_size:  # same padding as track_video: one compiled shape
                    batch = np.concatenate([batch, np.repeat(batch[-1:], args.batch_size - len(batch), 0)])
                out = predict(batch)
            jax.block_until_ready(out)
            return len(frames)

        def end_to_end():
            kp = track_video(video, model, bodyparts, batch_size=args.batch_size, chunk_size=args.chunk_size,
                             out_path=Path(tmp) / "out_FacemapPose.h5", resume=False, predictors=predictors)
            return len(kp)

        passes = {"decode only": decode_only, "forward only": forward_only, "end to end": end_to_end}
        forward_only(), end_to_end()  # compile both shapes before timing
        seconds: dict[str, list[float]] = {name: [] for name in passes}
        for _ in range(args.repeats):
            for name, run in passes.items():
                start = time.perf_counter()
                n = run()
                seconds[name].append(time.perf_counter() - start)
                assert n == info.n_frames, (name, n, info.n_frames)

    fps = {name: info.n_frames / statistics.median(s) for name, s in seconds.items()}
    rows = [{"pass": name, "median s": statistics.median(seconds[name]), "frames/s": fps[name]} for name in passes]
    device = jax.devices()[0]
    print(f"video {video.name if args.video else 'synthetic'}: {info.n_frames} frames {info.width}x{info.height}; "
          f"batch {args.batch_size}, chunk {args.chunk_size}; device {device.device_kind}")
    print_table(rows, ["pass", "median s", "frames/s"])
    ratios = {
        "end_to_end_over_forward_only": fps["end to end"] / fps["forward only"],
        "end_to_end_over_decode_only": fps["end to end"] / fps["decode only"],
    }
    for name, value in ratios.items():
        print(f"{name:<32} {value:.2f}")
    path = write_results(f"track_throughput_{device.platform}", {
        "video": str(args.video or f"synthetic {info.width}x{info.height}, {info.n_frames} frames"),
        "batch_size": args.batch_size, "chunk_size": args.chunk_size, "repeats": args.repeats,
        "seconds": seconds, "frames_per_s": fps, "ratios": ratios,
        "targets": {"cpu": "end to end >= 0.9 x forward only", "gpu": "end to end >= 0.8 x decode only"},
        "device": str(device), "machine": machine_info(),
    })
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
