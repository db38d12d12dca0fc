"""``tfotflow bench --quick`` produces complete, finite JSON (the numbers are not asserted)."""

import json
import math

from click.testing import CliRunner

from tfotflow import cli


def numbers(value, path=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from numbers(item, f"{path}[{index}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, value


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

    values = list(numbers(results))
    assert len(values) > 50
    bad = [path for path, value in values if not math.isfinite(value)]
    assert not bad, bad
