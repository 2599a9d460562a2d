"""Encode stage on simulated recordings with known ground truth: deep vs linear vs the best achievable.

    python -m bench.bench_encode                      # 10,000 neurons x 1 h, non-linear and linear simulations
    python -m bench.bench_encode --neurons 2000 --minutes 20 --epochs 100   # a quick look

For each simulation (jfacemap.synth.neural: neurons driven by rectified,
temporally filtered functions of the keypoints, plus shared latents and
noise; `--linear` variant: a linear function of the smoothed keypoints) it
runs `encode_recording` (RRR rank 21 on 100-ms-smoothed keypoints; the deep
encoder on the default "validated" schedule, or --schedule paper / full) and compares on the test frames:

- ve_*: mean variance explained per neuron; best_ve: the simulator's
  best achievable (variance of the behaviour-driven part);
- explainable: peer prediction (200 um strips) vs the true explainable variance;
- normalised VE = mean VE / mean explainable VE, against the best
  achievable normalised value mean(best_ve) / mean(true explainable).

Writes bench/results/encode_simulated.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


from bench.common import machine_info, print_table, write_results  # noqa: E402
from jfacemap.encode.pipeline import encode_recording  # noqa: E402
from jfacemap.io.behavior import keypoint_coordinates  # noqa: E402
from jfacemap.synth.neural import ground_truth_ve, simulate_neural  # noqa: E402


def run_one(linear: bool, n_neurons: int, seconds: float, seed: int, epochs: int | None,
            schedule: str = "validated") -> dict:
    start = time.perf_counter()
    sim = simulate_neural(n_neurons=n_neurons, duration_s=seconds, seed=seed, linear=linear)
    t_sim = time.perf_counter() - start
    x, _ = keypoint_coordinates(sim.keypoints, sim.bodyparts)

    def on_epoch(epoch, row):
        if (epoch + 1) % 50 == 0:
            print(f"  epoch {epoch + 1}: train {row['train_loss']:.4f}"
                  + (f" test {row['test_loss']:.4f}" if row.get("test_loss") is not None else ""), flush=True)

    overrides = {} if epochs is None else {"epochs": epochs}
    start = time.perf_counter()
    result = encode_recording(sim.spks, sim.neural_times, x, sim.behavior_times, xpos=sim.xpos, ypos=sim.ypos,
                              deep_overrides=overrides or None, schedule=schedule,
                              on_epoch=on_epoch, log=lambda m: print("  " + m, flush=True))
    t_encode = time.perf_counter() - start
    truth = ground_truth_ve(sim, result.split.test_idx)
    best, explainable = float(truth["best_ve"].mean()), float(truth["explainable_ve"].mean())
    s = result.summary
    best_normalized = best / explainable
    row = {
        "simulation": "linear" if linear else "non-linear",
        "neurons": n_neurons, "minutes": seconds / 60,
        "best_ve": best, "ve_linear": s["ve_linear"], "ve_deep": s["ve_deep"],
        "true_explainable": explainable, "peer_explainable": s["explainable_ve"],
        "peer_error": s["explainable_ve"] / explainable - 1,
        "best_normalized": best_normalized,
        "normalized_linear": s["normalized_ve_linear"], "normalized_deep": s["normalized_ve_deep"],
        "deep_of_best": s["normalized_ve_deep"] / best_normalized,
        "deep_of_best_raw": s["ve_deep"] / best,
        "deep_over_linear": s["deep_over_linear"],
        "schedule": schedule, "epochs": s["deep_recipe"]["epochs"], "lr": s["deep_recipe"]["lr"],
        "epochs_run": s["deep_recipe"].get("epochs_run", s["deep_recipe"]["epochs"]),
        "best_epoch": s["deep_recipe"].get("best_epoch"),
        "sim_seconds": t_sim, "encode_seconds": t_encode,
    }
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--neurons", type=int, default=10_000)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="deep epochs (default: the paper's schedule)")
    ap.add_argument("--only", choices=("linear", "non-linear"), default=None)
    ap.add_argument("--schedule", choices=("validated", "paper", "full"), default="validated",
                    help="the deep encoder's schedule (jfacemap.encode.pipeline.deep_recipe)")
    args = ap.parse_args(argv)

    rows = []
    for linear in (False, True):
        if args.only and args.only != ("linear" if linear else "non-linear"):
            continue
        print(f"{'linear' if linear else 'non-linear'} simulation: {args.neurons} neurons x {args.minutes:g} min",
              flush=True)
        rows.append(run_one(linear, args.neurons, args.minutes * 60, args.seed, args.epochs, args.schedule))
    print_table(rows, ["simulation", "best_ve", "ve_linear", "ve_deep", "true_explainable", "peer_explainable",
                       "best_normalized", "normalized_linear", "normalized_deep", "deep_of_best", "deep_over_linear"])
    name = "encode_simulated" if (args.neurons, args.minutes, args.epochs) == (10_000, 60.0, None) else "encode_simulated_custom"
    name += "" if args.schedule == "validated" else f"_{args.schedule}"
    path = write_results(name, {"args": vars(args), "rows": rows, "machine": machine_info()})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
