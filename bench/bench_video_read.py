"""Video reading speed: jfacemap's iter_chunks against plain imageio_ffmpeg.read_frames.

Both read every frame as 8-bit gray, alternating within one run so machine
load affects both alike; `video_info` counting (decode and packet modes) and
`read_frames` random access are timed too. Prints a table and merges one
entry per video into bench/results/video_read.json.

    python bench/bench_video_read.py                      # synthetic 640x480, 300 frames
    python bench/bench_video_read.py --video ../shared/data/mirror-mouse/videos/test_vid.mp4
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import machine_info  # noqa: E402
from jfacemap.io.video import iter_chunks, read_frames, video_info, write_video  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "video_read.json"


def synthetic_video(folder: Path, n: int = 300, h: int = 480, w: int = 640) -> Path:
    """A moving pattern plus sensor-like noise, H.264 yuv420p crf 17 like a camera file."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:h, :w].astype(np.float32)

    def frames():
        for t in range(n):
            img = 90 + 60 * np.sin((x + 3 * t) / 23.0) * np.cos((y - 2 * t) / 31.0)
            img += rng.normal(0, 4, (h, w))
            yield np.clip(img, 0, 255).astype(np.uint8)

    return write_video(folder / "synthetic_640x480.mp4", frames(), 50)


def read_with_iter_chunks(path: Path) -> int:
    return sum(len(chunk) for chunk in iter_chunks(path, 256))


def read_with_imageio(path: Path) -> int:
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="gray", bits_per_pixel=8)
    meta = next(gen)
    w, h = meta["size"]
    n = 0
    for frame in gen:  # the same per-frame view a caller needs
        np.frombuffer(frame, np.uint8).reshape(h, w)
        n += 1
    return n


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", type=Path, help="video to read (default: a synthetic one)")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.video or synthetic_video(Path(tmp))
        info = video_info(path)
        times: dict[str, list[float]] = {"iter_chunks": [], "imageio read_frames": []}
        counts = {}
        for _ in range(args.repeats):  # alternate so drift hits both
            for name, fn in (("iter_chunks", read_with_iter_chunks),
                             ("imageio read_frames", read_with_imageio)):
                dt, n = timed(fn, path)
                times[name].append(dt)
                counts[name] = n
        count_exact = [timed(video_info, path)[0] for _ in range(args.repeats)]
        count_quick = [timed(video_info, path, False)[0] for _ in range(args.repeats)]
        idx = np.random.default_rng(0).integers(0, info.n_frames, 20)
        random_read = [timed(read_frames, path, idx)[0] for _ in range(max(2, args.repeats // 2))]
        label = args.video.name if args.video else "synthetic_640x480.mp4 (300 frames, 50 fps)"

    med = {k: statistics.median(v) for k, v in times.items()}
    fps = {k: info.n_frames / v for k, v in med.items()}
    ratio = fps["iter_chunks"] / fps["imageio read_frames"]
    print(f"video: {label}  {info.n_frames} frames  {info.width}x{info.height}  {info.fps:g} fps")
    print(f"{'reader':<28}{'median s':>10}{'frames/s':>12}")
    for name in times:
        print(f"{name:<28}{med[name]:>10.3f}{fps[name]:>12.0f}")
    print(f"{'ratio iter_chunks/imageio':<28}{'':>10}{ratio:>12.2f}")
    print(f"{'video_info exact (decode)':<28}{statistics.median(count_exact):>10.3f}"
          f"{info.n_frames / statistics.median(count_exact):>12.0f}")
    print(f"{'video_info exact=False':<28}{statistics.median(count_quick):>10.3f}"
          f"{info.n_frames / statistics.median(count_quick):>12.0f}")
    print(f"{'read_frames, 20 random':<28}{statistics.median(random_read):>10.3f}"
          f"{20 / statistics.median(random_read):>12.0f}")
    assert counts["iter_chunks"] == info.n_frames, counts

    entry = {
        "video": label, "n_frames": info.n_frames, "height": info.height, "width": info.width,
        "repeats": args.repeats, "frames_counted": counts,
        "seconds": times, "median_seconds": med, "frames_per_s": fps,
        "ratio_iter_chunks_over_imageio": ratio,
        "video_info_exact_s": count_exact, "video_info_quick_s": count_quick,
        "read_frames_20_random_s": random_read,
        "machine": machine_info() | {"ffmpeg": imageio_ffmpeg.get_ffmpeg_version()}, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    old[label] = entry
    args.out.write_text(json.dumps(old, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
