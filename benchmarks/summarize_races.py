"""Merges time_to_quality results (e.g. seeds run separately) and their medians across seeds.

Run: python benchmarks/summarize_races.py OUT.json IN.json [IN.json ...]

Takes the rows of every input (a result, or the list of rows of a .partial.json), groups them
by data set, and writes OUT.json with the rows as recorded and each group's
:func:`tfotflow.bench.time_to_quality.across_seeds` (every OT-Flow setting against every
other contender, per seed and median), atomically, and its curves as OUT.png.
"""

import collections
import json
import pathlib
import sys

from tfotflow.bench.time_to_quality import across_seeds
from tfotflow.checkpoint import atomic_write_bytes
from tfotflow.plotting import plot_races


def main(out, *inputs):
    rows = []
    for path in inputs:
        recorded = json.loads(pathlib.Path(path).read_text())
        rows += recorded if isinstance(recorded, list) else recorded["rows"]
    groups = collections.defaultdict(list)
    for row in rows:
        groups[row["dataset"]].append(row)
    result = {
        "benchmark": "time_to_quality",
        "quick": False,
        "rows": rows,
        "across_seeds": [across_seeds(group) for group in groups.values() if len(group) > 1],
    }
    out = pathlib.Path(out)
    atomic_write_bytes(out, (json.dumps(result, indent=1) + "\n").encode())
    plot_races(result, out.with_suffix(".png"))
    print(json.dumps(result["across_seeds"], indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
