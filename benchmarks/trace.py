"""Closed-form exact trace vs autodiff exact trace vs Hutchinson; writes results/trace.json.

Run: python benchmarks/trace.py [--quick]
"""

import json
import pathlib
import sys

from tfotflow.bench import trace

if __name__ == "__main__":
    result = trace.run(quick="--quick" in sys.argv)
    print("\n".join(trace.format_rows(result)))
    out = pathlib.Path(__file__).parent / "results" / "trace.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
