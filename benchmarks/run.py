"""Runs one benchmark suite and writes its JSON to benchmarks/results/SUITE.json.

Run: python benchmarks/run.py SUITE [--quick] [--miniboone DIR]
SUITE is one of trace, peers, training_speed, quality, scaling_out (see README.md here);
DIR (quality only) holds miniboone/val.npy and test.npy, e.g. ../shared/data.
"""

import argparse
import json
import pathlib

from tfotflow import bench
from tfotflow.checkpoint import atomic_write_bytes

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("suite", choices=bench.SUITES)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--miniboone", default=None)
    args = parser.parse_args()
    result = bench.run([args.suite], quick=args.quick, miniboone_dir=args.miniboone)
    text = json.dumps(result[args.suite], indent=1)
    print(text)
    out = pathlib.Path(__file__).parent / "results" / f"{args.suite}.json"
    atomic_write_bytes(out, (text + "\n").encode())
