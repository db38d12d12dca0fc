"""Test NLL reached vs the truth on toy sets and MINIBOONE; writes results/quality.json.

Run: python benchmarks/quality.py [--quick] [--miniboone DIR] [--only NAME] [--iterations N]
(DIR holds miniboone/val.npy and test.npy, e.g. ../shared/data)
"""

import argparse
import json
import pathlib

from tfotflow.bench import quality

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--miniboone", default=None)
    parser.add_argument("--only", nargs="*", default=["8gaussians", "checkerboard"])
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    result = quality.run(
        quick=args.quick, names=args.only, miniboone_dir=args.miniboone, iterations=args.iterations
    )
    text = json.dumps(result, indent=1)
    print(text)
    out = pathlib.Path(args.out or pathlib.Path(__file__).parent / "results" / "quality.json")
    out.write_text(text + "\n")
