"""Scaling of neural prediction: variance explained vs number of neurons and vs training time.

    python -m bench.bench_encode_scaling                       # linear and deep, 10,000 neurons x 1 h
    python -m bench.bench_encode_scaling --models linear       # the linear model only (minutes)

One simulated recording (jfacemap.synth.neural, non-linear); the test frames
stay fixed. Neurons: random subsets of each size (positions kept, so peer
prediction runs on the subset). Training time: the first fraction of each
training segment. The paper: explained variance saturates around 10,000
neurons and keeps rising with recording length. Writes
bench/results/encode_scaling.json (or encode_scaling_<models>.json).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bench.common import machine_info, print_table, write_results  # noqa: E402
from jfacemap.encode.pipeline import encode_recording  # noqa: E402
from jfacemap.io.behavior import keypoint_coordinates  # noqa: E402
from jfacemap.synth.neural import ground_truth_ve, simulate_neural  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--neurons", type=int, default=10_000)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--sizes", default="500,1000,2000,5000,10000")
    ap.add_argument("--fractions", default="0.125,0.25,0.5,1.0")
    ap.add_argument("--models", default="linear,deep")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    models = args.models.split(",")
    sim = simulate_neural(n_neurons=args.neurons, duration_s=args.minutes * 60, seed=args.seed)
    x, _ = keypoint_coordinates(sim.keypoints, sim.bodyparts)
    rng = np.random.default_rng(args.seed)

    def run(neurons: np.ndarray, fraction: float) -> dict:
        r = encode_recording(sim.spks[neurons], sim.neural_times, x, sim.behavior_times, xpos=sim.xpos[neurons],
                             ypos=sim.ypos[neurons], models=models, train_fraction=fraction, seed=args.seed)
        truth = ground_truth_ve(sim, r.split.test_idx)
        row = {"neurons": len(neurons), "train_min": len(r.split.train_idx) / 3.0 / 60,
               "best_ve": float(truth["best_ve"][neurons].mean())}
        for m in models:
            row[f"ve_{m}"] = r.summary[f"ve_{m}"]
            row[f"normalized_{m}"] = r.summary[f"normalized_ve_{m}"]
        print(row, flush=True)
        return row

    by_neurons = [run(np.sort(rng.choice(args.neurons, n, replace=False)), 1.0)
                  for n in (int(s) for s in args.sizes.split(",")) if n <= args.neurons]
    all_neurons = np.arange(args.neurons)
    by_time = [run(all_neurons, float(f)) for f in args.fractions.split(",")]
    columns = ["neurons", "train_min", "best_ve"] + [f"{k}_{m}" for m in models for k in ("ve", "normalized")]
    print("vs neurons (all training time)")
    print_table(by_neurons, columns)
    print("vs training time (all neurons)")
    print_table(by_time, columns)
    name = "encode_scaling" if models == ["linear", "deep"] else f"encode_scaling_{'_'.join(models)}"
    path = write_results(name, {"args": vars(args), "vs_neurons": by_neurons, "vs_training_time": by_time,
                                "machine": machine_info()})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
