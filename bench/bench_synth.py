"""Rendering speed of the synthetic mouse-face generator on ONE CPU core.

    python bench/bench_synth.py [--frames 1000] [--seeds 3] [--size 256]

The process pins itself to one core (os.sched_setaffinity) and limits BLAS /
OpenMP threads before numpy is imported. Setup (static face, whisker layers,
noise bank: once per session) is timed apart from rendering. Prints a table
and writes bench/results/synth_render.json.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _pin_one_core() -> list[int] | None:
    try:
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=3, help="sessions per style (different mice and views)")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()

    pinned = _pin_one_core()
    import numpy as np

    from bench.common import machine_info, print_table, write_results
    from jfacemap.synth import make_session
    from jfacemap.synth.face import get_renderer

    rows = []
    for style in ("lab1", "lab2"):
        setups, rates, warm = [], [], []
        for seed in range(args.seeds):
            session = make_session(args.frames, seed=seed, style=style, size=args.size)
            get_renderer.cache_clear()
            t0 = time.perf_counter()
            get_renderer(session.params)
            setups.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            frames, keypoints = session.render(0, args.frames)
            rates.append(args.frames / (time.perf_counter() - t0))
            t0 = time.perf_counter()  # again: every whisker layer is built by now
            session.render(0, args.frames)
            warm.append(args.frames / (time.perf_counter() - t0))
            assert frames.shape == (args.frames, args.size, args.size) and keypoints.shape == (args.frames, 15, 3)
        # first 100 frames of a fresh session, setup included (what a short call costs)
        session = make_session(100, seed=99, style=style, size=args.size)
        get_renderer.cache_clear()
        t0 = time.perf_counter()
        session.render(0, 100)
        first_100 = time.perf_counter() - t0
        rows.append(
            {
                "style": style,
                "size": args.size,
                "frames": args.frames,
                "sessions": args.seeds,
                "setup_s_mean": float(np.mean(setups)),
                "setup_s_max": float(np.max(setups)),
                "fps_mean": float(np.mean(rates)),
                "fps_min": float(np.min(rates)),
                "fps_warm": float(np.mean(warm)),
                "first_100_frames_s": first_100,
            }
        )
    print(f"synthetic rendering, one core (pinned to {pinned}), {args.size}x{args.size}")
    columns = ["style", "size", "frames", "sessions", "setup_s_mean", "setup_s_max", "fps_mean", "fps_min", "fps_warm"]
    print_table(rows, columns + ["first_100_frames_s"])
    path = write_results(
        "synth_render",
        {
            "benchmark": "synthetic session rendering (frames + ground-truth keypoints), after setup",
            "notes": "fps_*: first pass over the session (includes building whisker layers lazily); "
            "fps_warm: the same frames again; first_100_frames_s: a fresh 100-frame session, setup included",
            "machine": machine_info(pinned_cores=pinned),
            "pinned_to_one_core": pinned is not None and len(pinned) == 1,
            "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
            "results": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
