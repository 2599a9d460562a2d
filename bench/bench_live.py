"""Live tracking latency: `LiveTracker` one 256x256 frame at a time against the original's batch-1 time.

    python bench/bench_live.py                      # 10,000 frames (the issue's protocol)
    python bench/bench_live.py --frames 2000        # a quicker run
    python bench/bench_live.py --original-frames 0  # jfacemap only

What is timed, per frame, on ONE pinned core (the first core this process
may use; XLA:CPU single-threaded, the original with torch.set_num_threads(1)):

- jfacemap: `LiveTracker(load_tracker("base"), (256, 256))(frame)`: copy
  into the staging buffer, the pre-compiled batch-1 program (percentile
  normalisation, network, decoding), keypoints back on the host. Compilation
  and warm-up happen in the constructor (reported, not timed). Frames cycle
  through 256 synthetic face-like frames.
- original (facemap 1.0.8 in its own venv, bench/bench_tracker_speed.py's
  peer script, the SAME weights): `Pose.predict_landmarks`' timed body at
  batch 1 (`preprocess_img` + `predict` + `adjust_keypoints`), per call.

The two alternate in blocks (jfacemap's frames and the original's calls
split into `--blocks` parts, one after the other), so machine noise reaches
both. Python's garbage collector is frozen after warm-up for both loops
(`gc.freeze()`, as a live session would: a full collection over JAX's
objects otherwise lands inside some frames). Reported: median, p90, p99,
max, mean ms per frame; targets: jfacemap's median <= original's / 1.5,
jfacemap's p99 <= 1.5 x its median.

Writes bench/results/live.json (bench.common.write_results).
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_tracker_speed import SIZE, Original, set_threads, synthetic_frames  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=10_000, help="jfacemap frames timed (default 10,000)")
    ap.add_argument("--original-frames", type=int, default=None,
                    help="original calls timed (default frames / 20, at least 100; 0 skips the original)")
    ap.add_argument("--blocks", type=int, default=10, help="alternating blocks (default 10)")
    ap.add_argument("--model", default="base", help="tracker (default: the shipped base model)")
    ap.add_argument("--name", default="live", help="results name (default live)")
    args = ap.parse_args(argv)
    if args.original_frames is None:
        args.original_frames = max(100, args.frames // 20)
    if args.frames < 1 or args.original_frames < 0 or args.blocks < 1:
        ap.error("--frames and --blocks must be >= 1, --original-frames >= 0")
    return args


def percentiles(ms) -> dict:
    import numpy as np

    ms = np.asarray(ms, np.float64)
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"frames": int(len(ms)), "median_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "max_ms": float(ms.max()), "mean_ms": float(ms.mean())}


def split(n: int, parts: int) -> list[int]:
    return [n // parts + (i < n % parts) for i in range(parts)]


def main(argv=None) -> None:
    args = parse_args(argv)
    threads, cores = set_threads(1)  # before JAX starts

    import jax
    import numpy as np

    from bench.common import machine_info, print_table, write_results
    from jfacemap.io.torch_weights import save_torch_state_dict
    from jfacemap.live import LiveTracker
    from jfacemap.nets.convert import unet_to_torch_state_dict
    from jfacemap.track.model_store import load_tracker

    model, bodyparts, _ = load_tracker(args.model)
    frames = synthetic_frames(256)
    started = time.perf_counter()
    tracker = LiveTracker(model, (SIZE, SIZE))
    build_seconds = time.perf_counter() - started
    notes: list[str] = []

    original = original_info = None
    tmp = tempfile.TemporaryDirectory(prefix="jfacemap-live-")
    if args.original_frames:
        try:
            from bench.peers import facemap_python

            weights = save_torch_state_dict(Path(tmp.name) / "weights.pt", unet_to_torch_state_dict(model))
            np.save(Path(tmp.name) / "frames.npy", frames[:1])
            original = Original(facemap_python(), weights, Path(tmp.name) / "frames.npy", threads)
            original_info = original.ask(op="info")
            if "error" in original_info:
                raise RuntimeError(original_info["error"])
            warm = original.ask(op="each", batch=1, calls=5)  # first calls: allocator, oneDNN kernels
            if "error" in warm:
                raise RuntimeError(warm["error"])
            got = original.ask(op="keypoints", batch=1)
            theirs = np.asarray(got["keypoints"], np.float32)[0]
            ours = tracker(frames[0])
            notes.append(f"sanity: max |x, y| difference to the original on frame 0: "
                         f"{float(np.nanmax(np.abs(theirs[:, :2] - ours[:, :2]))):.2e} px")
        except Exception as err:  # noqa: BLE001 - report and go on without it
            notes.append(f"original program unavailable: {err}")
            if original is not None:
                original.close()
            original = original_info = None

    print(f"one pinned core {cores}; jfacemap on {jax.devices()[0]}; model {args.model}; "
          f"LiveTracker built (compile + warm-up) in {build_seconds:.1f} s")
    tracker.reset_stats()
    theirs_ms: list[float] = []
    gc.collect()
    gc.freeze()
    n_frame = 0
    ours_blocks = split(args.frames, args.blocks)
    theirs_blocks = split(args.original_frames if original is not None else 0, args.blocks)
    for block, (n_ours, n_theirs) in enumerate(zip(ours_blocks, theirs_blocks)):
        for _ in range(n_ours):
            tracker(frames[n_frame % len(frames)])
            n_frame += 1
        if n_theirs:
            got = original.ask(op="each", batch=1, calls=n_theirs)
            if "error" in got:
                notes.append(f"original failed: {got['error']}")
                original.close()
                original = None
            else:
                theirs_ms += [s * 1e3 for s in got["each"]]
        ours_now = tracker.stats()
        print(f"  block {block + 1}/{args.blocks}: jfacemap {ours_now['frames']} frames, median "
              f"{ours_now['median_ms']:.2f} ms, p99 {ours_now['p99_ms']:.2f}"
              + (f"; original {len(theirs_ms)} calls, median {np.median(theirs_ms):.1f} ms" if theirs_ms else ""),
              flush=True)
    gc.unfreeze()
    if original is not None:
        original.close()
    tmp.cleanup()

    ours = tracker.stats()
    rows = [{"program": "jfacemap LiveTracker", **ours}]
    if theirs_ms:
        rows.append({"program": "original batch 1", **percentiles(theirs_ms)})
    targets = {"p99_over_median": ours["p99_ms"] / ours["median_ms"]}
    targets["p99_target_met"] = targets["p99_over_median"] <= 1.5
    if theirs_ms:
        targets["original_median_over_ours"] = rows[1]["median_ms"] / ours["median_ms"]
        targets["median_target_met"] = targets["original_median_over_ours"] >= 1.5
    print()
    print_table(rows, ["program", "frames", "median_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms"])
    print("targets: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in targets.items()))
    for note in notes:
        print("NOTE:", note)

    info = machine_info(pinned_cores=cores)
    info["jax_devices"] = [str(d) for d in jax.devices()]
    info["original"] = original_info
    path = write_results(args.name, {
        "benchmark": "live tracking latency at batch 1, 256x256 uint8 frames, one pinned core",
        "protocol": {"frames": args.frames, "original_frames": args.original_frames, "blocks": args.blocks,
                     "model": args.model, "gc": "frozen after warm-up",
                     "jfacemap": "LiveTracker(model, (256, 256))(frame): staging copy + pre-compiled batch-1 "
                                 "program + keypoints on the host",
                     "original": "facemap 1.0.8 preprocess_img + predict + adjust_keypoints at batch 1, torch CPU, "
                                 "1 thread, same weights"},
        "machine": info, "build_seconds": build_seconds, "rows": rows, "targets": targets,
        "jfacemap_latencies_ms": [round(float(v), 3) for v in tracker.latencies_ms],
        "original_latencies_ms": [round(v, 3) for v in theirs_ms], "notes": notes,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
