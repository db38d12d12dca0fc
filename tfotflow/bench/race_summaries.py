"""Races read across seeds: each duel's time to quality, and the summaries the issues ask for.

:func:`head_to_head` reads one duel (the peer's time to the worse of the two best validation
NLLs over OT-Flow's), :func:`across_seeds` a data set's medians, :func:`race_summary` the rows
of ``benchmarks/results/races_summary.json`` and :func:`generalization_summary` those of
``generalization_summary.json``.
"""

import pathlib

import numpy as np

from tfotflow.bench import suite
from tfotflow.bench.clock import crossing_bracket, seconds_to_reach


def head_to_head(races, ours, peer):
    """Time to quality of the race ``ours`` against ``peer`` (names in ``races``, a dict of
    :func:`tfotflow.bench.clock.race` results): the target is the worse of the two best
    validation NLLs, each side's time the training seconds at which its validation NLL first
    reached it, and the speed-up the peer's time over ours (None when either never reached it);
    each side's quality is its test NLL where its validation NLL was best."""
    target = max(races[peer]["best_nll"], races[ours]["best_nll"])
    reach = {name: seconds_to_reach(races[name]["curve"], target) for name in (ours, peer)}
    return {
        "target_nll": target,
        # None for races scored before validation rows were (committed results)
        "test_nll_at_best": {name: races[name].get("test_nll_at_best") for name in (ours, peer)},
        "seconds_to_target": reach,
        "time_to_quality_speedup": (
            reach[peer] / reach[ours] if reach[peer] and reach[ours] else None
        ),
    }


def across_seeds(rows):
    """Medians over one data set's races with different seeds (rows of
    :func:`tfotflow.bench.time_to_quality.compete`).

    For every OT-Flow setting raced on every seed (a contender named "otflow…") against every
    other contender raced on every seed, keyed "ours vs other": the speed-up and the target
    of each seed (:func:`head_to_head`) and their median (None unless every seed reached the
    target); for each contender, the median best test NLL."""
    contenders = sorted(set.intersection(*(set(row["races"]) for row in rows)))
    versus = {}
    for ours in (name for name in contenders if name.startswith("otflow")):
        for other in (name for name in contenders if name != ours):
            duels = [head_to_head(row["races"], ours, other) for row in rows]
            speedups = [duel["time_to_quality_speedup"] for duel in duels]
            reached = [x for x in speedups if x is not None]
            versus[f"{ours} vs {other}"] = {
                "speedups": speedups,
                "median_speedup": float(np.median(reached)) if len(reached) == len(rows) else None,
                "target_nlls": [duel["target_nll"] for duel in duels],
            }
    return {
        "dataset": rows[0]["dataset"],
        "seeds": [row["seed"] for row in rows],
        "versus": versus,
        "median_best_nll": {
            name: float(np.median([row["races"][name]["best_nll"] for row in rows]))
            for name in contenders
        },
    }


def race_summary(rows):
    """One row per (data set, peer) of finished races (rows of
    :func:`tfotflow.bench.time_to_quality.compete`, any seeds): ``dataset``, ``d``, ``peer``,
    ``seeds``; ``median_speedup`` (the median over seeds of the peer's time to the worse of the
    two best validation NLLs over OT-Flow's time to it; None unless every seed reached it),
    ``speedup_range`` ([min, max] over seeds) and ``speedup_bounds`` (per seed, the ratio's
    range from the scores that bracket each crossing: its resolution); ``otflow_test_nll`` and
    ``peer_test_nll`` (medians of each contender's test NLL at its best validation); and
    ``fair``: what each contender got (``xla``, ``preprocessing``, ``tuning``, ``budget_s``,
    and ``still_improving`` per seed). OT-Flow is the "otflow" race (the settings users get).
    Races against a peer at its defaults and at a tuned point (``fair["tuning"]``,
    :func:`tfotflow.bench.time_to_quality.tuned_options`) are summarized apart: ``peer_tuned``
    says which the row is."""
    groups = {}
    for row in (row for row in rows if "otflow" in row["races"]):
        for peer in (name for name in row["races"] if not name.startswith("otflow")):
            tuned = isinstance(row.get("fair", {}).get("tuning", {}).get(peer), dict)
            groups.setdefault((row["dataset"], peer, tuned), []).append(row)
    summary = []
    for (dataset, peer, tuned), seeded in groups.items():
        duels = [head_to_head(row["races"], "otflow", peer) for row in seeded]
        speedups = [duel["time_to_quality_speedup"] for duel in duels]
        bounds = []
        for row, duel in zip(seeded, duels):
            ours = crossing_bracket(row["races"]["otflow"]["curve"], duel["target_nll"])
            theirs = crossing_bracket(row["races"][peer]["curve"], duel["target_nll"])
            bounds.append(
                None
                if ours is None or theirs is None or not ours[0] or not ours[1]
                else [theirs[0] / ours[1], theirs[1] / ours[0]]
            )
        reached = [x for x in speedups if x is not None]
        fair = {key: {} for key in ("xla", "preprocessing", "tuning", "budget_s")}
        fair["still_improving"] = {}
        record = seeded[0].get("fair", {})
        for name in ("otflow", peer):
            for key in ("xla", "preprocessing", "tuning"):
                fair[key][name] = record.get(key, {}).get(name, "not recorded")
            fair["budget_s"][name] = seeded[0]["races"][name]["budget_seconds"]
            fair["still_improving"][name] = [
                row["races"][name].get("still_improving") for row in seeded
            ]
        summary.append(
            {
                "dataset": dataset,
                "d": seeded[0]["d"],
                "peer": peer,
                "peer_tuned": tuned,
                "seeds": [row["seed"] for row in seeded],
                "median_speedup": (
                    float(np.median(reached)) if len(reached) == len(seeded) else None
                ),
                "speedup_range": [min(reached), max(reached)] if reached else None,
                "speedups": speedups,
                "speedup_bounds": bounds,
                "otflow_test_nll": _median_of(seeded, "otflow", "test_nll_at_best"),
                "peer_test_nll": _median_of(seeded, peer, "test_nll_at_best"),
                "fair": fair,
            }
        )
    return summary


def generalization_summary(rows):
    """One row per generalization-suite set of finished races (rows of
    :func:`tfotflow.bench.time_to_quality.compete`, any seeds): ``dataset``, ``d``,
    ``character``, ``seeds``; the medians over seeds of each contender's test NLL at its best
    validation (``otflow_test_nll``, ``bayesflow_test_nll``, ``ffjord_test_nll``; None for a
    peer not raced), of the peer's time to the worse of the two best validation NLLs over
    OT-Flow's (``speedup_vs_bayesflow``, ``speedup_vs_ffjord``; None unless every seed reached
    it), of OT-Flow's training seconds with its compilation (``otflow_wall_s``; scores not
    counted) and the exact NLL of the test rows; ``doublings``, the most times any seed's
    training solve doubled; ``weights`` per contender."""
    groups = {}
    for row in rows:
        parsed = suite.parse(pathlib.Path(row["dataset"]).stem)
        if parsed is not None:
            groups.setdefault(row["dataset"], (parsed, []))[1].append(row)
    summary = []
    for dataset, ((character, dim, _), seeded) in groups.items():
        peers = {"bayesflow": "bayesflow_fm_defaults", "ffjord": "ffjord"}
        entry = {
            "dataset": dataset,
            "d": dim,
            "character": character,
            "seeds": [row["seed"] for row in seeded],
            "exact_test_nll": float(np.median([row["exact_test_nll"] for row in seeded])),
            "otflow_test_nll": _median_of(seeded, "otflow", "test_nll_at_best"),
        }
        for short, peer in peers.items():
            raced = all(peer in row["races"] for row in seeded)
            entry[f"{short}_test_nll"] = (
                _median_of(seeded, peer, "test_nll_at_best") if raced else None
            )
            speedups = [
                head_to_head(row["races"], "otflow", peer)["time_to_quality_speedup"]
                for row in seeded
                if raced
            ]
            reached = raced and None not in speedups
            entry[f"speedup_vs_{short}"] = float(np.median(speedups)) if reached else None
        ours = [row["races"]["otflow"] for row in seeded]
        entry["doublings"] = max(race_.get("doublings", 0) for race_ in ours)
        entry["otflow_wall_s"] = float(
            np.median([r["curve"][-1][1] + r["first_iteration_seconds"] for r in ours])
        )
        entry["weights"] = {name: r["parameters"] for name, r in seeded[0]["races"].items()}
        summary.append(entry)
    return summary


def _median_of(rows, name, key):
    values = [row["races"][name].get(key) for row in rows]
    return None if None in values else float(np.median(values))
