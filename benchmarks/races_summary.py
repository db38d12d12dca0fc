"""The races' summary: one row per (data set, peer) over the seeds of the named results.

Run: python benchmarks/races_summary.py IN.json [IN.json ...]

Reads time_to_quality results (or the list of rows of a .partial.json) and writes
benchmarks/results/races_summary.json, atomically:
:func:`tfotflow.bench.time_to_quality.race_summary` of every row, with the files it read.
"""

import json
import pathlib
import sys

from tfotflow.bench.time_to_quality import race_summary
from tfotflow.checkpoint import atomic_write_bytes

if __name__ == "__main__":
    rows, sources = [], sys.argv[1:]
    for path in sources:
        result = json.loads(pathlib.Path(path).read_text())
        rows.extend(result if isinstance(result, list) else result["rows"])
    summary = {"sources": sources, "rows": race_summary(rows)}
    out = pathlib.Path(__file__).parent / "results" / "races_summary.json"
    atomic_write_bytes(out, (json.dumps(summary, indent=1) + "\n").encode())
    print(json.dumps(summary, indent=1))
