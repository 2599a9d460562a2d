"""Which deep-encoder schedule to ship: the paper's data-size rules vs the full schedule, across recordings.

    python -m bench.bench_encode_schedule                       # 20/60/120 min x 1k/10k neurons, both schedules
    python -m bench.bench_encode_schedule --minutes 20 --neurons 1000   # one cell

The default ("validated") trains the full schedule with early stopping on the
last tenth of each training segment (after a 3 s gap). The paper (SPEC section 3) shrinks the schedule for small data: fewer than
2,000 neurons -> LR and weight decay / 10; under 1 h of training data -> LR
and weight decay / 2 and 100 fewer epochs. The "full" schedule ignores both
rules (AdamW 1e-3, 300 epochs, LR / 10 and / 100 over the last 100 and 50).
Each cell simulates a non-linear recording (jfacemap.synth.neural), fits both
and scores the deep encoder against the simulator's best achievable variance
explained on the same test frames (deep_of_best) and against reduced-rank
regression (deep_over_rrr = ve_deep / ve_linear). Rows are appended to the
JSON as they finish, so an interrupted run keeps what it measured.

Writes bench/results/encode_schedule.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.bench_encode import run_one  # noqa: E402
from bench.common import machine_info, print_table, write_results  # noqa: E402

COLUMNS = ["minutes", "neurons", "schedule", "epochs", "lr", "best_ve", "ve_linear", "ve_deep",
           "deep_of_best", "deep_over_rrr", "encode_seconds"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[20.0, 60.0, 120.0])
    ap.add_argument("--neurons", type=int, nargs="+", default=[1000, 10_000])
    ap.add_argument("--schedules", nargs="+", default=["validated", "paper", "full"],
                    choices=["validated", "paper", "full"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="encode_schedule")
    args = ap.parse_args(argv)

    rows = []
    for minutes in args.minutes:
        for neurons in args.neurons:
            for schedule in args.schedules:
                print(f"{neurons} neurons x {minutes:g} min, {schedule} schedule", flush=True)
                row = run_one(False, neurons, minutes * 60, args.seed, None, schedule=schedule)
                row |= {"deep_over_rrr": row["ve_deep"] / row["ve_linear"]}
                rows.append(row)
                write_results(args.name, {"args": vars(args), "rows": rows, "machine": machine_info()})
    print_table(rows, COLUMNS)
    print(f"wrote bench/results/{args.name}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
