"""The races' summaries over the seeds of the named results.

Run: python benchmarks/races_summary.py [--generalization] IN.json [IN.json ...]

Reads time_to_quality results (or the list of rows of a .partial.json) and writes,
atomically, benchmarks/results/races_summary.json
(:func:`tfotflow.bench.race_summaries.race_summary`: one row per data set and peer) or, with
``--generalization``, benchmarks/results/generalization_summary.json
(:func:`tfotflow.bench.race_summaries.generalization_summary`: one row per suite set), with
the files it read.
"""

import json
import pathlib
import sys

from tfotflow.bench.race_summaries import generalization_summary, race_summary
from tfotflow.checkpoint import atomic_write_bytes

if __name__ == "__main__":
    sources = sys.argv[1:]
    generalization = "--generalization" in sources
    sources = [source for source in sources if source != "--generalization"]
    rows = []
    for path in sources:
        result = json.loads(pathlib.Path(path).read_text())
        rows.extend(result if isinstance(result, list) else result["rows"])
    summarize, stem = (
        (generalization_summary, "generalization_summary")
        if generalization
        else (race_summary, "races_summary")
    )
    summary = {"sources": sources, "rows": summarize(rows)}
    out = pathlib.Path(__file__).parent / "results" / f"{stem}.json"
    atomic_write_bytes(out, (json.dumps(summary, indent=1) + "\n").encode())
    print(json.dumps(summary, indent=1))
