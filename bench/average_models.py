"""Average the weights of two trackers fine-tuned from the same start (a "model soup").

    python -m bench.average_models base /work/base-pad-model --weight-b 0.3 --name base-soup --out weights/base-soup

Why: a model fine-tuned on a shifted synthetic family gains there and on the
real faces but loses on the held-out style (lab2); the weight-space average of
it and its starting point keeps most of both (Wortsman et al. 2022, "Robust
fine-tuning of zero-shot models", WiSE-FT). Parameters and BatchNorm running
statistics are interpolated alike: (1 - w) * A + w * B. Both models must share
the architecture, bodyparts and input context; B must have been trained on
from A, or the average is meaningless (the script cannot check that, so
model.json records both).

model.json: B's (recipe, training data, history), plus `averaged` (A, B, w
and both checksums), `lineage` (A's, then A and B) and `compute_total_seconds`
(A's total + B's own training). The layout prior is B's. Its test errors are
B's until rescored: `python -m bench.evaluate_base_model --model OUT --test-set --write`.
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np
from flax import nnx

from jfacemap.io.model_folder import CHECKSUM_KEY
from jfacemap.track.model_store import MODEL_INFO_KEYS, load_tracker, save_tracker


def training_command(info: dict) -> str:
    """The train_base_model command that drew the training set a model.json's `training_data`
    describes: its `command`, or for an averaged model its B side's (through averages of averages)."""
    return info.get("averaged", {}).get("b_command") or info["command"]


def average_weights(model_a, model_b, weight_b: float):
    """A copy of `model_b` with every variable (params, BatchNorm statistics) set to
    (1 - weight_b) * A + weight_b * B. The shape prior and context are B's."""
    if not 0.0 <= weight_b <= 1.0:
        raise ValueError(f"weight_b {weight_b} is not in [0, 1]")
    sa, sb = nnx.state(model_a), nnx.state(model_b)
    same = jax.tree_util.tree_structure(sa) == jax.tree_util.tree_structure(sb) and all(
        np.shape(x) == np.shape(y) for x, y in zip(jax.tree_util.tree_leaves(sa), jax.tree_util.tree_leaves(sb)))
    if not same:
        raise ValueError("the two models differ in architecture: their weights cannot be averaged")
    out = nnx.clone(model_b)
    nnx.update(out, jax.tree_util.tree_map(lambda a, b: (1.0 - weight_b) * a + weight_b * b, sa, sb))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="the starting model (name or folder)")
    ap.add_argument("b", help="the model fine-tuned from A (name or folder)")
    ap.add_argument("--weight-b", type=float, required=True, help="B's share, 0-1")
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True, help="model folder to write")
    args = ap.parse_args(argv)

    a, names_a, meta_a = load_tracker(args.a)
    b, names_b, meta_b = load_tracker(args.b)
    if list(names_a) != list(names_b) or a.context != b.context:
        raise SystemExit(f"{args.a} and {args.b} differ in bodyparts or input context: not averaged")
    model = average_weights(a, b, args.weight_b)
    meta = {k: v for k, v in meta_b.items() if k not in MODEL_INFO_KEYS}
    own_b = float(meta_b.get("compute", {}).get("seconds", 0.0))
    total_a = float(meta_a.get("compute_total_seconds") or meta_a.get("compute", {}).get("seconds", 0.0))
    meta.update({
        "name": args.name,
        "command": "python -m bench.average_models " + " ".join(argv if argv is not None else sys.argv[1:]),
        "averaged": {"a": args.a, "b": args.b, "weight_b": args.weight_b,
                     "a_weights_sha256": meta_a.get(CHECKSUM_KEY), "b_weights_sha256": meta_b.get(CHECKSUM_KEY),
                     "b_command": training_command(meta_b)},
        "lineage": list(meta_a.get("lineage", [])) + [
            {"name": meta_a.get("name", args.a), "compute": meta_a.get("compute"), "command": meta_a.get("command")},
            {"name": meta_b.get("name", args.b), "compute": meta_b.get("compute"), "command": meta_b.get("command")}],
        "compute_total_seconds": round(total_a + own_b, 1),
    })
    folder = save_tracker(args.out, model, names_b, meta)
    print(f"{folder}: (1 - {args.weight_b}) x {args.a} + {args.weight_b} x {args.b}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
