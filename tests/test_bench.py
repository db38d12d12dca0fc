"""``tfotflow bench --quick`` produces complete, finite JSON (the numbers are not asserted)."""

import functools
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from tfotflow import cli
from tfotflow._keras import keras
from tfotflow.bench.report import summary_tables


def numbers(value, path=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from numbers(item, f"{path}[{index}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, value


@pytest.mark.slow
def test_bench_quick_writes_complete_finite_json(tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(cli.main, ["bench", "--quick", "--json", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())
    assert {"trace", "peers", "training_speed", "versions"} <= set(results)

    trace = results["trace"]["rows"][0]
    assert {
        "closed_form_exact",
        "autodiff_exact",
        "hutchinson_1",
        "hutchinson_8",
        "gradient_only",
    } <= set(trace["seconds"])
    assert {
        "speedup_vs_autodiff_exact",
        "achieved_gflops",
        "matmul_gflops",
        "relative_error",
        "peak_memory_gb",
    } <= set(trace)
    assert trace["relative_error"]["autodiff_exact"] < 1e-8  # exact agrees with exact
    peers = results["peers"]["rows"][0]
    assert {"otflow_train_step", "otflow_log_prob", "otflow_sample"} <= set(peers["seconds"])
    assert peers["ffjord_parameters"] > 0 and peers["function_evaluations_log_prob"]["otflow"]
    speed = results["training_speed"]
    assert {"seconds_graph", "seconds_xla", "achieved_gflops_graph", "matmul_gflops"} <= set(
        speed["roofline"]
    )
    assert speed["scaling"] and speed["peak_memory_gb"]["graph"] > 0
    assert [row["rule"] for row in speed["chunk_rules"]] == [
        "machine",
        "small_cache_4MiB",
        "one_pass",
    ]

    values = list(numbers(results))
    assert len(values) > 50
    bad = [path for path, value in values if not math.isfinite(value)]
    assert not bad, bad


def spy_on_test_scores(monkeypatch, module):
    """Maps each contender's name to {NLL: validation NLL} for every score of ``module``'s
    races off the validation rows (the rows a contender is first scored on), with the
    validation rows scored again in the state that score saw."""
    original, validation, seen = module.reference_nll, {}, {}

    def spy(contender, split, probe):
        nll = original(contender, split, probe)
        if validation.setdefault(contender.name, split) is not split:
            on_validation = original(contender, validation[contender.name], probe)
            seen.setdefault(contender.name, {})[nll] = on_validation
        return nll

    monkeypatch.setattr(module, "reference_nll", spy)
    return seen


@pytest.mark.slow
def test_time_to_quality_quick_reports_every_race_and_matched_accuracy(tmp_path, monkeypatch):
    from tfotflow.bench import time_to_quality
    from tfotflow.plotting import plot_races

    scored_off_validation = spy_on_test_scores(monkeypatch, time_to_quality)

    point = {"learning_rate": 3e-3, "width_factor": 2}  # FFJORD as if a grid chose it
    tuned = {"peer": "ffjord", "d": 2, "chosen": point, "grid": [{}] * 6}
    tuned.update(dataset="checkerboard", budget_seconds=60.0)
    result = time_to_quality.run(quick=True, tuned=[tuned])
    row = result["rows"][0]
    peers = {"ffjord", "bayesflow_fm"} if time_to_quality.bayesflow_available() else {"ffjord"}
    assert row["settings"]["ffjord"]["learning_rate"] == 3e-3
    assert row["fair"]["tuning"]["ffjord"]["chosen"] == point
    assert row["fair"]["tuning"]["otflow"].startswith(time_to_quality.OTFLOW_TUNING)
    assert set(row["races"]) == {"otflow", *peers}
    for name in row["races"]:
        race = row["races"][name]
        assert race["iterations"] > 0 and race["curve"][0][0] == 0
        assert [seconds for _, seconds, _ in race["curve"]] == sorted(
            seconds for _, seconds, _ in race["curve"]
        )
        inference = row["inference"][name]
        # The chosen setting is within 0.01 nats of the reference, or is the reference.
        assert (
            abs(inference["nll"] - inference["reference_nll"]) <= time_to_quality.TOLERANCE_NATS
            or inference["setting"] == inference["reference_setting"]
        )
        assert inference["function_evaluations"] > 0 and inference["log_prob_per_second"] > 0
    for peer in peers:  # the target: the worse of the two best validation NLLs
        expected = max(row["races"][peer]["best_nll"], row["races"]["otflow"]["best_nll"])
        assert row["versus"][peer]["target_nll"] == expected
        assert row["inference_speedups"][peer] > 0
    for race in row["races"].values():  # quality: the test NLL at the best validation
        best = min(range(len(race["curve"])), key=lambda i: race["curve"][i][2])
        assert race["best_index"] == best and race["best_nll"] == race["curve"][best][2]
        assert math.isfinite(race["test_nll_at_best"])
    for name, race in row["races"].items():  # scored on the test rows in the best's state
        on_validation = scored_off_validation[name][race["test_nll_at_best"]]
        assert on_validation == pytest.approx(race["best_nll"], abs=time_to_quality.TOLERANCE_NATS)
    fair = row["fair"]  # what each contender got, recorded
    assert set(fair["xla"]) == set(fair["preprocessing"]) == set(row["races"])
    assert set(fair["xla_probe"]) == peers and set(fair["still_improving"]) == set(row["races"])
    assert set(fair["scoring_xla"]) == set(fair["scoring_xla_probe"]) == set(row["races"])
    checkpoints = row["inference_checkpoints"]  # matched accuracy at equal quality
    assert set(checkpoints["at"]) == set(row["inference"])
    for name, at in checkpoints["at"].items():
        index = checkpoints["index"][name]
        assert at["validation_nll"] == row["races"][name]["curve"][index][2]
        assert at["validation_nll"] <= checkpoints["target_nll"]
        assert row["inference"][name]["reference_nll"] == pytest.approx(at["test_nll"], abs=1e-3)
    bad = [path for path, value in numbers(result) if not math.isfinite(value)]
    assert not bad, bad
    (table,) = summary_tables({"time_to_quality": result})
    assert table.row_count == len(peers)
    assert plot_races(result, tmp_path / "races.png").stat().st_size > 10_000


@pytest.mark.slow
def test_conditional_race_scores_conditional_nll_and_posterior_moments(monkeypatch):
    from tfotflow.bench import time_to_quality

    # The compilation probes are the quick race's (checked there); here, no XLA anywhere.
    monkeypatch.setattr(time_to_quality, "faster_compilation", lambda *_, **__: (False, {}))
    monkeypatch.setattr(time_to_quality, "faster_scoring", lambda *_, **__: {})
    result = time_to_quality.run(quick=True, names=("linear_gaussian",))
    row = result["rows"][0]
    assert row["d"] == 10 and row["condition_dim"] == 10
    peers = {"bayesflow_fm"} if time_to_quality.bayesflow_available() else set()
    assert set(row["races"]) == {"otflow", *peers}  # FFJORD takes no conditions
    posterior = row["posterior"]
    assert posterior["exact_variance"] == pytest.approx(0.05)
    for name in row["races"]:
        errors = posterior["models"][name]
        assert errors["mean_max_abs_error"] > 0 and errors["covariance_max_abs_error"] > 0
    bad = [path for path, value in numbers(result) if not math.isfinite(value)]
    assert not bad, bad


@pytest.mark.slow  # two short runs, each compiled with XLA
def test_the_raced_otflow_is_tfotflow_train_file(tmp_path):
    """The race's OT-Flow contender runs the product's own path: from the same file, seed
    and settings it ends with the weights ``tfotflow train FILE`` saves, to the bit."""
    from tests.test_regression import fixed_table
    from tfotflow import datasets
    from tfotflow.bench.clock import Clock
    from tfotflow.bench.contenders import OTFlowContender
    from tfotflow.cli import main

    table = fixed_table(tmp_path / "table.csv")
    short = {"iterations": 12, "warm_start": 10, "validate_every": 6}
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in short.items()]
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main, ["train", str(table), *flags, "--out", str(out), "--no-plot"]
    )
    assert result.exit_code == 0, result.output
    trained = keras.models.load_model(out / "model.keras")

    contender = OTFlowContender(datasets.from_file(table), overrides=short)
    race = contender.run(Clock(lambda: 0.0, budget_seconds=1e6))
    assert race["iterations"] > 0
    for ours, theirs in zip(contender.model.weights, trained.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_time_to_quality_schedule_and_crossing():
    from tfotflow.bench.clock import geometric_schedule, seconds_to_reach

    assert geometric_schedule(2.0, 10.0, 2.0) == [2.0, 4.0, 8.0, 10.0]
    curve = [[0, 0.0, 1.0], [10, 3.0, 2.5], [20, 6.0, 1.5], [30, 9.0, 1.2]]
    assert seconds_to_reach(curve, 1.5) == 6.0
    assert seconds_to_reach(curve, 1.0) is None  # only the untrained score reached it


def test_matched_accuracy_takes_each_model_where_it_first_reached_the_common_level():
    from tfotflow.bench.time_to_quality import equal_quality_checkpoints

    def race(curve):
        best = min(range(len(curve)), key=lambda i: curve[i][2])
        return {"curve": curve, "best_nll": curve[best][2]}

    races = {
        "ours": race([[0, 0.0, 9.0], [10, 1.0, 5.0], [20, 2.0, 4.0], [30, 3.0, 3.9]]),
        "peer": race([[0, 0.0, 9.5], [50, 2.0, 4.5], [90, 4.0, 4.1]]),
    }
    test_nlls = {"ours": [9, 5, 4, 3.9], "peer": [9.5, 4.6, 4.12]}

    def test_nll_at(name, index):
        return test_nlls[name][index]

    checkpoints = equal_quality_checkpoints(races, ["ours", "peer"], test_nll_at)
    assert checkpoints["target_nll"] == 4.1  # the worse of the two bests
    assert checkpoints["index"] == {"ours": 2, "peer": 2}  # each one's first score at or below
    assert checkpoints["at"]["ours"] == {
        "iteration": 20,
        "seconds": 2.0,
        "validation_nll": 4.0,
        "test_nll": 4,
    }
    assert checkpoints["test_nll_spread"] == pytest.approx(0.12) and not checkpoints["equal"]
    test_nlls["peer"][2] = 4.03
    assert equal_quality_checkpoints(races, ["ours", "peer"], test_nll_at)["equal"]


def test_a_fixed_step_peer_is_scored_where_doubling_its_steps_moves_log_p_by_under_001():
    """BayesFlow's reference solve doubles its steps until log p moves by less than 0.01
    nats (mean over rows) when they double again, so it agrees with a solve of four times as
    many steps; a stiff field (its weights scaled up) needs more than the first 8."""
    from tfotflow.bench import contenders, time_to_quality

    if not time_to_quality.bayesflow_available():
        pytest.skip("BayesFlow is not installed: pip install 'tfotflow[bench]'")
    keras.utils.set_random_seed(0)
    peer = contenders.FlowMatchingContender(
        2, widths=(32, 32), learning_rate=1e-3, dtype="float32"
    )
    peer.network.set_weights([3.0 * weights for weights in peer.network.get_weights()])
    points = np.random.default_rng(0).normal(size=(200, 2)).astype("float32")
    assert peer.reference_setting() == 8
    peer.tighten(points)
    steps = peer.reference_setting()
    assert steps > 8 and steps not in peer.settings()

    def log_p(n):
        return np.asarray(peer.log_prob_fn(n)(points), np.float64)

    assert np.mean(np.abs(log_p(steps) - log_p(4 * steps))) < 1.1 * contenders.TOLERANCE_NATS
    assert np.mean(np.abs(log_p(steps // 2) - log_p(steps))) >= contenders.TOLERANCE_NATS
    peer.tighten(points)  # already tight: the steps stay
    assert peer.reference_setting() == steps


def test_scores_run_compiled_the_faster_way_and_a_failing_way_loses():
    import time

    import tensorflow as tf

    from tfotflow.bench.contenders import faster_scoring

    class Contender:
        name, condition_dim, scoring_xla = "peer", 0, False

        def __init__(self, slow_way, failing_way=None):
            self.slow_way, self.failing_way, self.calls = slow_way, failing_way, []

        def reference_setting(self):
            return 8

        def log_prob_fn(self, setting):
            way = self.scoring_xla
            if way == self.failing_way:
                raise tf.errors.InvalidArgumentError(None, None, "XLA cannot compile this")

            def log_prob(x):
                self.calls.append((setting, way))
                if way == self.slow_way:
                    time.sleep(0.05)
                return tf.reduce_sum(x, axis=1)

            return log_prob

    points = np.ones((5, 2), np.float32)
    slow_plain = Contender(slow_way=False)
    seconds = faster_scoring(slow_plain, points)
    assert slow_plain.scoring_xla and seconds["false"] > seconds["true"]
    assert {way for _, way in slow_plain.calls} == {False, True}
    assert {setting for setting, _ in slow_plain.calls} == {8}  # the reference setting
    slow_xla = Contender(slow_way=True)
    faster_scoring(slow_xla, points)
    assert not slow_xla.scoring_xla
    failing_xla = Contender(slow_way=False, failing_way=True)
    seconds = faster_scoring(failing_xla, points)
    assert not failing_xla.scoring_xla and seconds["true"] == "failed: InvalidArgumentError"


def test_training_time_counts_between_step_calls_and_stops_at_its_budget(monkeypatch):
    from tfotflow.bench import timing

    ticks = iter(range(1000))  # a clock that advances one second at every reading
    monkeypatch.setattr(timing.time, "perf_counter", lambda: float(next(ticks)))
    model = keras.Sequential([keras.layers.Dense(1)])
    model.steps_per_execution, model.stop_training = 5, False
    timer = timing.TrainingTime(budget_seconds=4.0)
    timer.set_model(model)
    timer.on_train_begin()
    timer.on_train_batch_begin(0)  # 0
    timer.on_train_batch_end(0)  # 1: the first call, untimed; mark at 2
    assert (timer.untimed, timer.seconds, timer.steps) == (1.0, 0.0, 0)
    timer.on_train_batch_begin(1)
    timer.on_train_batch_end(1)  # 3: one timed second; mark at 4
    timer.on_epoch_end(0)  # 5: the second since the mark counts at the epoch's end
    assert (timer.seconds, timer.steps, timer.epoch_seconds) == (1.0, 5, [2.0])
    assert not model.stop_training
    timer.on_train_batch_end(2)  # 6: two more; mark at 7
    timer.on_train_batch_end(3)  # 8: one more, 4 in all: the budget is spent
    assert (timer.seconds, timer.steps) == (4.0, 15)
    assert model.stop_training
    timer.on_train_begin()  # a second fit: its first call is untimed again
    timer.on_train_batch_begin(0)  # 10
    timer.on_train_batch_end(0)  # 11
    assert (timer.untimed, timer.seconds) == (2.0, 4.0)


@pytest.mark.slow
def test_startup_quick_reports_first_and_steady_calls():
    from tfotflow.bench import startup

    result = startup.run(quick=True)
    assert [row["setting"] for row in result["rows"]] == list(startup.QUICK_SETTINGS)
    for row in result["rows"]:
        ratios = [row[key] for key in row if key.endswith("_ratio")]
        assert len(ratios) == 3 and all(math.isfinite(r) and r > 0 for r in ratios), row
    assert summary_tables({"startup": result})


@pytest.mark.slow
def test_recipe_suite_quick():
    """The recipe suite trains a set every way and scores each on its test split. (The
    scoring suite's parts are tested in test_score; its matched-accuracy step is
    time_to_quality's, tested above.)"""
    from tfotflow.bench import recipe

    result = recipe.run(quick=True, names=("banana",))
    ways = {(row["dataset"], row["way"]) for row in result["rows"]}
    assert ways == {("banana", way) for way in ("tuned", "file", "keras")}
    assert all(math.isfinite(row["test_nll"]) for row in result["rows"])


def test_across_seeds_takes_medians_and_keeps_unreached_targets_visible():
    from tfotflow.bench.race_summaries import across_seeds, head_to_head

    def curve(*points):  # (seconds, nll) after a first score at 0 s
        return {
            "curve": [[0, 0.0, 9.0], *([i + 1, t, nll] for i, (t, nll) in enumerate(points))],
            "best_nll": min(nll for _, nll in points),
        }

    def row(seed, ours, peer):
        return {"dataset": "toy", "seed": seed, "races": {"otflow": ours, "peer": peer}}

    # The target is the worse best (2.0); OT-Flow is there at 10 s, the peer at 40 s.
    races = row(0, curve((10, 2.0), (20, 1.5)), curve((40, 2.0)))["races"]
    duel = head_to_head(races, "otflow", "peer")
    assert duel == {
        "target_nll": 2.0,
        "test_nll_at_best": {"otflow": None, "peer": None},  # no validation scores here
        "seconds_to_target": {"otflow": 10, "peer": 40},
        "time_to_quality_speedup": 4.0,
    }
    rows = [
        row(0, curve((10, 2.0)), curve((20, 2.0))),  # 2x
        row(1, curve((10, 3.0)), curve((80, 3.0))),  # 8x
        row(2, curve((10, 1.0)), curve((30, 1.0))),  # 3x
    ]
    summary = across_seeds(rows)
    assert summary["seeds"] == [0, 1, 2]
    assert summary["versus"]["otflow vs peer"] == {
        "speedups": [2.0, 8.0, 3.0],
        "median_speedup": 3.0,
        "target_nlls": [2.0, 3.0, 1.0],
    }
    assert summary["median_best_nll"] == {"otflow": 2.0, "peer": 2.0}
    # A seed on which the peer never reached the target after training began (its best was
    # its untrained score) leaves no median to report.
    untrained_best = {"curve": [[0, 0.0, 1.0], [1, 20.0, 5.0]], "best_nll": 1.0}
    unreached = across_seeds([rows[0], row(1, curve((10, 1.0)), untrained_best)])
    assert unreached["versus"]["otflow vs peer"]["speedups"] == [2.0, None]
    assert unreached["versus"]["otflow vs peer"]["median_speedup"] is None
    # Every OT-Flow setting meets every other contender; one raced on a single seed is left out.
    for r in rows:
        r["races"]["otflow_fast"] = curve((5, 1.0))
    rows[0]["races"]["ffjord"] = curve((50, 1.0))
    assert set(across_seeds(rows)["versus"]) == {
        "otflow vs peer",
        "otflow vs otflow_fast",
        "otflow_fast vs otflow",
        "otflow_fast vs peer",
    }


def test_a_first_seed_only_contender_races_every_seed_when_named(monkeypatch):
    from tfotflow.bench import time_to_quality

    raced = []

    def compete(data, problem, *, seed, only, inference, **options):
        raced.append((seed, sorted(only), inference))
        return {"dataset": "miniboone_mixture", "seed": seed, "races": {}}

    monkeypatch.setattr(time_to_quality, "compete", compete)
    monkeypatch.setattr(time_to_quality, "across_seeds", lambda rows: {})
    monkeypatch.setattr(time_to_quality.datasets, "load", lambda *args, **kwargs: None)
    time_to_quality.run(names=("miniboone_mixture",), seeds=(0, 1))
    assert "ffjord" in raced[0][1] and "ffjord" not in raced[1][1]  # by default: seed 0 only
    assert [inference for *_, inference in raced] == [True, False]
    raced.clear()
    named = ["otflow_03", "ffjord"]
    time_to_quality.run(names=("miniboone_mixture",), seeds=(0, 1), contenders=named)
    assert raced == [(0, sorted(named), True), (1, sorted(named), False)]


def test_a_race_prints_each_score_as_it_is_taken(capsys):
    from tfotflow.bench.clock import Clock, log_score

    on_score = functools.partial(log_score, "bayesflow_fm")
    clock = Clock(lambda: 1.5, budget_seconds=4.0, first_score=2.0, on_score=on_score)
    clock.begin()
    clock.add(2.5)
    clock.add(2.0)
    assert clock.done and [point[1] for point in clock.curve] == [0.0, 2.5, 4.5]
    printed = capsys.readouterr().err.splitlines()
    expected = "bayesflow_fm: iteration 1, 2.5 s, validation NLL 1.5000"
    assert printed == [printed[0], expected, printed[2]]


def test_a_crossing_is_narrowed_by_scoring_the_checkpoints_kept_between_scores():
    """Checkpoints are kept on a schedule ``between + 1`` times finer than the scores; a
    crossing's bracket is then bisected over them, each scored in its own state, until no
    checkpoint is left inside; the model's state is put back for the test at any score."""
    from tfotflow.bench.clock import Clock, refine_crossings

    state = {"seconds": 0.0}

    def validation_nll():  # falls with the training seconds of the state scored
        return 10.0 / (1.0 + state["seconds"])

    def clock_for(speed):
        clock = Clock(
            validation_nll,
            budget_seconds=64.0,
            first_score=1.0,
            factor=4.0,
            snapshot=lambda: dict(state),
            restore=lambda saved: state.update(saved),
            between=3,
        )
        return clock, speed

    def train(clock, speed):
        state["seconds"] = 0.0
        clock.begin()
        while not clock.done:
            state["seconds"] += 0.25 * speed  # ``speed`` seconds' worth of learning a second
            clock.add(0.25)
        return clock

    ours, peer = train(*clock_for(2.0)), train(*clock_for(1.0))
    assert [point[1] for point in peer.curve] == [0.0, 1.0, 4.0, 16.0, 64.0]
    assert len(peer.checkpoints) == 1 + 1 + 4 * 3  # at 0, then every √2 × the last from 1 s
    target = 10.0 / (1.0 + 64.0)  # the peer's best, at its end; ours reaches it at 32 s
    refine_crossings({"otflow": ours, "peer": peer}, "otflow")
    # bisected over the three checkpoints (22.75, 32 and 45.5 s) within (16, 64]
    assert [point[1] for point in ours.curve] == [0.0, 1.0, 4.0, 16.0, 22.75, 32.0, 64.0]
    assert [point[1] for point in peer.curve] == [0.0, 1.0, 4.0, 16.0, 32.0, 45.5, 64.0]
    assert ours.curve[5][2] == target and ours.curve[4][2] > target
    for index, (_, seconds, nll) in enumerate(ours.curve):
        ours.restore_score(index)
        assert validation_nll() == pytest.approx(nll) and state["seconds"] == 2.0 * seconds


def test_the_race_summary_reads_time_to_quality_on_validation():
    """Per (set, peer): the median over seeds of the peer's time to the worse best validation
    NLL over OT-Flow's, each ratio's bracket from the scores around the crossings, the test
    NLLs at the best validation, and what each contender got."""
    from tfotflow.bench.race_summaries import race_summary

    def race(curve, test, budget=10.0):
        best = min(range(len(curve)), key=lambda i: curve[i][2])
        return {
            "curve": curve,
            "test_curve": [[i, s, t] for (i, s, _), t in zip(curve, test)],
            "best_nll": curve[best][2],
            "test_nll_at_best": test[best],
            "budget_seconds": budget,
            "still_improving": curve[best][1] >= 0.8 * budget,
        }

    def row(seed, peer_seconds, tuning="none: the problem's settings"):
        ours = race([[0, 0.0, 5.0], [10, 1.0, 3.0], [20, 2.0, 2.0]], [5.1, 3.1, 2.1])
        theirs = race(
            [[0, 0.0, 5.0], [5, peer_seconds / 2, 3.0], [9, peer_seconds, 2.5], [12, 10.0, 2.6]],
            [5.2, 3.2, 2.4, 2.7],
        )
        fair = {
            "xla": {"otflow": True, "bayesflow_fm": False},
            "preprocessing": {},
            "tuning": {"bayesflow_fm": tuning},
        }
        return {
            "dataset": "toy",
            "d": 2,
            "seed": seed,
            "fair": fair,
            "races": {"otflow": ours, "bayesflow_fm": theirs},
        }

    tuned = {"grid_points": 6, "chosen": {"learning_rate": 3e-3}}
    rows = [row(0, 4.0), row(1, 8.0), row(0, 3.0, tuned), row(2, 6.0)]
    summary, against_tuned = race_summary(rows)  # the tuned peer's race is summarized apart
    assert not summary["peer_tuned"] and summary["seeds"] == [0, 1, 2]
    assert against_tuned["peer_tuned"] and against_tuned["seeds"] == [0]
    assert (
        against_tuned["speedups"] == [1.5]
        and against_tuned["fair"]["tuning"]["bayesflow_fm"] == tuned
    )
    # target 2.5 (the worse best validation NLL): OT-Flow at 2 s, the peer at 4, 8, 6 s
    assert summary["speedups"] == [2.0, 4.0, 3.0] and summary["median_speedup"] == 3.0
    assert summary["speedup_range"] == [2.0, 4.0]
    assert summary["speedup_bounds"][0] == [2.0 / 2.0, 4.0 / 1.0]  # crossings in (1, 2], (2, 4]
    assert summary["otflow_test_nll"] == 2.1 and summary["peer_test_nll"] == 2.4
    assert summary["fair"]["xla"] == {"otflow": True, "bayesflow_fm": False}
    assert summary["fair"]["still_improving"]["bayesflow_fm"] == [False, True, False]


def test_each_peer_gets_three_rates_by_two_sizes_to_tune():
    from tfotflow.bench.tuning import GRIDS, grid_options

    for peer, grid in GRIDS.items():
        rates = {point["learning_rate"] for point in grid}
        sizes = {
            tuple(sorted((k, str(v)) for k, v in p.items() if k != "learning_rate")) for p in grid
        }
        assert len(grid) == 6 and len(rates) == 3 and len(sizes) == 2, peer
    base = {"widths": (64, 64), "learning_rate": 1e-3}
    point = {"learning_rate": 3e-3, "widths_factor": 2}
    assert grid_options("bayesflow_fm", base, point) == {
        "widths": (128, 128),
        "learning_rate": 3e-3,
    }
    assert base == {"widths": (64, 64), "learning_rate": 1e-3}  # the problem's stay


def test_a_tuned_peer_races_at_the_point_its_grid_chose():
    from tfotflow.bench.problems import suite_problem
    from tfotflow.bench.time_to_quality import OTFLOW_TUNING, UNTUNED, tuned_options

    problem = suite_problem(4)
    chosen = {"learning_rate": 2.5e-4, "widths": [128] * 5}
    result = {"peer": "bayesflow_fm_defaults", "d": 4, "chosen": chosen, "grid": [{}] * 6}
    result.update(dataset="mixture_d4_draw0", budget_seconds=120.0)
    tuning, options = tuned_options([result], problem, 4)
    assert options["bayesflow_fm_defaults"] == {"defaults": True, **chosen}
    assert options["ffjord"] == problem["ffjord"] and problem["bayesflow_fm_defaults"] == {
        "defaults": True
    }
    assert tuning["bayesflow_fm_defaults"] == {
        "grid_points": 6,
        "tuning_set": "mixture_d4_draw0",
        "budget_s": 120.0,
        "chosen": chosen,
    }
    assert tuning["ffjord"] == UNTUNED and tuning["otflow"] == OTFLOW_TUNING
    assert tuning["otflow_likelihood"].endswith("{'main_phase': 'likelihood'}")
    with pytest.raises(ValueError, match="tuned at d = 4 for a race at d = 16"):
        tuned_options([result], suite_problem(16), 16)
    with pytest.raises(ValueError, match="which this race does not run"):
        tuned_options([{**result, "peer": "bayesflow_fm"}], problem, 4)


@pytest.mark.slow
def test_tuning_trains_each_point_for_the_budget_and_keeps_the_lowest_validation_nll(
    monkeypatch,
):
    from tfotflow.bench import time_to_quality
    from tfotflow.bench.tuning import tune

    # The compilation probe is the race's own (checked by the quick race); here, no XLA.
    monkeypatch.setattr(time_to_quality, "faster_compilation", lambda *_, **__: (False, {}))

    grid = [{"learning_rate": 1e-3}, {"learning_rate": 3e-3, "width_factor": 2}]
    result = tune("8gaussians", "ffjord", quick=True, grid=grid)
    assert [row["point"] for row in result["grid"]] == grid
    for row in result["grid"]:
        assert row["iterations"] > 0 and len(row["curve"]) == 3  # untrained, half, end
        assert row["best_nll"] == min(nll for _, _, nll in row["curve"])
    small, wide = result["grid"]
    assert wide["settings"]["hidden"] > small["settings"]["hidden"]
    assert wide["settings"]["learning_rate"] == 3e-3
    assert result["chosen"] == min(result["grid"], key=lambda row: row["best_nll"])["point"]
    assert result["machine"]["processors"] >= 1 and result["d"] == 2
    with pytest.raises(ValueError, match="`peer` must be a peer"):
        tune("8gaussians", "otflow", quick=True)
