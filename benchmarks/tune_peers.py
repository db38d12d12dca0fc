"""The races' tuning grid on a tuning set: each peer's settings chosen by validation NLL.

Run: python benchmarks/tune_peers.py --dataset mixture_d4_draw0 --peer bayesflow_fm_defaults
         [--peer ffjord] [--seed 0] [--quick]

For each ``--peer``, :func:`tfotflow.bench.tuning.tune`: every point of its grid (three
learning rates by two sizes) trained for the race's budget on the set, scored on its
validation rows at half the budget and at the end, the lowest chosen. Writes
results/tuning_DATASET_PEER.json, and each point's row to the .partial.json beside it as it
ends (a stopped run keeps them).
"""

import argparse
import json
import pathlib

from tfotflow.bench.tuning import tune
from tfotflow.checkpoint import atomic_write_bytes

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--peer", action="append", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for peer in args.peer:
        out = pathlib.Path(__file__).parent / "results" / f"tuning_{args.dataset}_{peer}.json"
        finished = []

        def save(row, out=out, finished=finished):
            finished.append(row)
            text = json.dumps(finished, indent=1) + "\n"
            atomic_write_bytes(out.with_suffix(".partial.json"), text.encode())

        result = tune(args.dataset, peer, seed=args.seed, quick=args.quick, on_point=save)
        print(json.dumps({"peer": peer, "chosen": result["chosen"]}), flush=True)
        atomic_write_bytes(out, (json.dumps(result, indent=1) + "\n").encode())
