"""Movie / motion SVD: jfacemap's `movie_svd` against the original's `facemap.process.run`.

Same video, same bin, both movie and motion PCs (500 components). Each
program runs in its own subprocess (the original in its peer venv, SPEC 8)
and times itself from just before the call to just after its output file is
written, so interpreter start and imports are left out; runs alternate
(ours, theirs, ours, ...) so background load hits both alike, and medians
are reported. The original's `_proc.npy` is a pickle: it is opened only
inside the peer process, which re-saves the masks and PCs as plain .npy.

Agreement: principal-angle cosines between the spans of the first k masks
(k = 10, 50, 100, all), |cosine| between matched masks i = 0..9, and
|correlation| of matched temporal PCs. Prints a table and writes
bench/results/movie_svd.json.

    python bench/bench_movie_svd.py                     # synthetic 256x256 x 3000 + test_vid.mp4
    python bench/bench_movie_svd.py --repeats 3 --frames 3000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# The comparison here (QR of pixels x 500 masks) runs single-threaded: on the shared
# 2-core machine multi-threaded OpenBLAS is many times slower. The programs under
# test get their own setting (--threads), from the environment as it was.
_CALLER_ENV = dict(os.environ)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import machine_info, print_table, write_results  # noqa: E402
from bench.peers import facemap_python  # noqa: E402
from jfacemap.synth.export import save_synthetic_session  # noqa: E402

REAL_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "mirror-mouse" / "videos" / "test_vid.mp4"
KS = (10, 50, 100, 500)

# Runs in OUR environment. argv: video out_dir bin pixel_centre(0/1)
OURS = r"""
import json, sys, time, warnings
import numpy as np
from jfacemap.encode.movie_pcs import movie_svd
from jfacemap.encode.movie_pcs_store import save_movie_svd
video, out, sbin, pixel_centre = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
warnings.simplefilter("ignore")
t0 = time.perf_counter()
result = movie_svd(video, n_components=500, bin_size=sbin, pixel_centre=pixel_centre)
save_movie_svd(out + "/ours_svd.npz", result)
seconds = time.perf_counter() - t0
f = result.full
np.savez(out + "/ours.npz", movie_masks=f.movie_masks.reshape(len(f.movie_masks), -1),
         motion_masks=f.motion_masks.reshape(len(f.motion_masks), -1), movie_pcs=f.movie_pcs,
         motion_pcs=f.motion_pcs, movie_sv=f.movie_sv, motion_sv=f.motion_sv)
print(json.dumps({"seconds": seconds, "n_frames": result.n_frames}))
"""

# Runs INSIDE the facemap venv; the pickled _proc.npy never leaves it. argv: video out_dir bin
THEIRS = r"""
import json, os, sys, time
import numpy as np
from facemap import process
video, out, sbin = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.perf_counter()
savename = process.run([[video]], sbin=sbin, motSVD=True, movSVD=True, savepath=out)
seconds = time.perf_counter() - t0
proc = np.load(savename, allow_pickle=True).item()
np.savez(out + "/theirs.npz", movie_masks=proc["movMask"][0].T, motion_masks=proc["motMask"][0].T,
         movie_pcs=proc["movSVD"][0], motion_pcs=proc["motSVD"][0], movie_sv=np.asarray(proc["movSv"]),
         motion_sv=np.asarray(proc["motSv"]))
os.remove(savename)
print(json.dumps({"seconds": seconds, "n_frames": int(proc["motSVD"][0].shape[0])}))
"""


def run_script(python: Path, script: str, *args, env: dict) -> dict:
    result = subprocess.run([str(python), "-c", script, *map(str, args)], capture_output=True, text=True,
                            env=env, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"{python}: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def orthonormal_rows(masks: np.ndarray) -> np.ndarray:
    """Orthonormal basis (rows) of the span of `masks` rows, order kept (the original's
    single-run masks are U*S, not unit length)."""
    q, _ = np.linalg.qr(masks.astype(np.float64).T)
    return q.T


def agreement(ours: np.lib.npyio.NpzFile, theirs: np.lib.npyio.NpzFile, kind: str) -> dict:
    a, b = orthonormal_rows(ours[f"{kind}_masks"]), orthonormal_rows(theirs[f"{kind}_masks"])
    out: dict = {"n_ours": len(a), "n_theirs": len(b)}
    for k in KS:
        k = min(k, len(a), len(b))
        cos = np.linalg.svd(a[:k] @ b[:k].T, compute_uv=False)
        out[f"k{k}"] = {"mean_cos": float(cos.mean()), "min_cos": float(cos.min()),
                        "median_cos": float(np.median(cos))}
        # Theirs inside ours plus one: our masks keep the uniform-image direction theirs lack.
        cos1 = np.linalg.svd(a[:k + 1] @ b[:k].T, compute_uv=False)
        out[f"k{k}"] |= {"mean_cos_in_ours_k+1": float(cos1.mean()), "min_cos_in_ours_k+1": float(cos1.min())}
    out["matched_mask_abs_cos"] = np.abs(np.sum(a[:10] * b[:10], axis=1)).round(4).tolist()
    pa, pb = ours[f"{kind}_pcs"][:, :10], theirs[f"{kind}_pcs"][:, :10]
    n = min(len(pa), len(pb))
    corr = [abs(float(np.corrcoef(pa[:n, i], pb[:n, i])[0, 1])) for i in range(min(pa.shape[1], pb.shape[1]))]
    out["matched_pc_abs_corr"] = np.round(corr, 4).tolist()
    # Masks orthogonal to a uniform image: the original removes each frame's pixel mean.
    out["theirs_mask_pixel_mean_max"] = float(np.abs(b[:10].mean(axis=1)).max() * np.sqrt(b.shape[1]))
    out["ours_mask_pixel_mean_max"] = float(np.abs(a[:10].mean(axis=1)).max() * np.sqrt(a.shape[1]))
    return out


def _last_k(agree: dict) -> str:
    return max((k for k in agree if k.startswith("k")), key=lambda k: int(k[1:]))


def bench_video(video: Path, sbin: int, repeats: int, python: Path, env: dict, work: Path) -> dict:
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    counts = {}
    runs = [(r, name) for r in range(repeats) for name in ("ours", "theirs")] + [(0, "ours_pixel_centred")]
    for r, name in runs:
        out = work / f"{video.stem}_{name}_{r}"
        out.mkdir(parents=True, exist_ok=True)
        if name == "theirs":
            info = run_script(python, THEIRS, video, out, sbin, env=env)
        else:
            info = run_script(Path(sys.executable), OURS, video, out, sbin, int(name != "ours"), env=env)
        times.setdefault(name, []).append(info["seconds"])
        counts[name] = info["n_frames"]
        print(f"  {video.name} {name} run {r}: {info['seconds']:.1f} s", flush=True)
    ours = np.load(work / f"{video.stem}_ours_0" / "ours.npz")
    centred = np.load(work / f"{video.stem}_ours_pixel_centred_0" / "ours.npz")
    theirs = np.load(work / f"{video.stem}_theirs_0" / "theirs.npz")
    return {
        "video": str(video), "bin": sbin, "frames": counts,
        "seconds": times, "median_s": {k: statistics.median(v) for k, v in times.items()},
        "speedup_theirs_over_ours": statistics.median(times["theirs"]) / statistics.median(times["ours"]),
        "agreement": {variant: {kind: agreement(mine, theirs, kind) for kind in ("movie", "motion")}
                      for variant, mine in (("ours", ours), ("ours_pixel_centred", centred))},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=3000, help="synthetic video length")
    ap.add_argument("--size", type=int, default=256, help="synthetic frame size (square)")
    ap.add_argument("--video", type=Path, action="append", help="extra/other videos (default: test_vid.mp4)")
    ap.add_argument("--bin", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS/OMP threads for both programs (0: their defaults). Default 1: on the shared "
                         "2-core machine multi-threaded OpenBLAS runs 5-50x slower for both")
    args = ap.parse_args()

    python = facemap_python()
    env = dict(_CALLER_ENV, PYTHONNOUSERSITE="1")
    if args.threads:
        env |= {v: str(args.threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        synth = work / f"synth_{args.size}.mp4"
        save_synthetic_session(synth, n_frames=args.frames, seed=0, size=args.size)
        videos = [synth, *(args.video or ([REAL_VIDEO] if REAL_VIDEO.is_file() else []))]
        for video in videos:
            res = bench_video(video, args.bin, args.repeats, python, env, work)
            results.append(res)
            for variant in ("ours", "ours_pixel_centred"):
                for kind in ("movie", "motion"):
                    rows.append(_row(video, res, variant, kind))
    columns = list(dict.fromkeys(c for row in rows for c in row))
    print_table(rows, columns)
    path = write_results("movie_svd", {
        "benchmark": "movie/motion SVD: jfacemap movie_svd vs facemap 1.0.8 process.run (sbin, 500 PCs)",
        "notes": "median wall seconds of `repeats` alternating runs, each in its own process, timed around "
                 "the call plus writing its output; cosines of principal angles between the spans of the "
                 "first k spatial masks; ours_pixel_centred = ours with the original's per-frame pixel-mean "
                 "removal (one extra untimed-in-table run) to compare like with like",
        "machine": machine_info(), "threads": args.threads, "repeats": args.repeats,
        "results": results,
    })
    print(f"wrote {path}")


def _row(video: Path, res: dict, variant: str, kind: str) -> dict:
    agree = res["agreement"][variant][kind]
    ks = [k for k in ("k10", "k50", "k100") if k in agree]
    return {
        "video": video.name, "variant": variant.replace("ours_pixel_centred", "ours-pc"), "kind": kind,
        "frames": res["frames"]["ours"], "ours_s": res["median_s"]["ours"], "theirs_s": res["median_s"]["theirs"],
        "theirs/ours": res["speedup_theirs_over_ours"],
        **{f"cos@{k[1:]} mean/min": f"{agree[k]['mean_cos']:.3f}/{agree[k]['min_cos']:.3f}" for k in ks},
        "cos@all mean/min": "{mean_cos:.3f}/{min_cos:.3f}".format(**agree[_last_k(agree)]),
        "top5 |cos|": " ".join(f"{c:.2f}" for c in agree["matched_mask_abs_cos"][:5]),
        "top5 PC |r|": " ".join(f"{c:.2f}" for c in agree["matched_pc_abs_corr"][:5]),
    }


if __name__ == "__main__":
    main()
