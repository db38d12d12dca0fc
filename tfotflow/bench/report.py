"""Rich tables summarising benchmark results (the JSON holds everything)."""

from rich.table import Table


def _ratio(value):
    return "—" if value is None else f"{value:.2f}x"


def summary_tables(results):
    """One table per suite present in ``results``."""
    tables = []
    if "trace" in results:
        table = Table(
            "d",
            "m",
            "n",
            "exact s",
            "autodiff s",
            "hutch-1 s",
            "autodiff / exact (>1: exact faster)",
            "exact / hutch-1 (>1: exact slower)",
            "GFLOP/s",
            "of matmul rate",
            title="exact trace (matmul rate = one [n·d, m]×[m, m] product; above 100 %: the "
            "chunks stay in cache and beat it)",
        )
        for row in results["trace"]["rows"]:
            s = row["seconds"]
            table.add_row(
                str(row["d"]),
                str(row["width"]),
                str(row["batch"]),
                f"{s['closed_form_exact']:.4f}",
                f"{s['autodiff_exact']:.4f}",
                f"{s['hutchinson_1']:.4f}",
                _ratio(row["speedup_vs_autodiff_exact"]),
                _ratio(row["ratio_to_hutchinson_1"]),
                f"{row['achieved_gflops']:.1f}",
                f"{row['fraction_of_matmul']:.0%}",
            )
        tables.append(table)
    if "peers" in results:
        table = Table(
            "d",
            "m",
            "n",
            "peer",
            "train step",
            "log_prob",
            "sample",
            "NFE",
            title="peer time / OT-Flow time (>1: OT-Flow faster)",
        )
        for row in results["peers"]["rows"]:
            for peer in row["peers"]:
                table.add_row(
                    str(row["d"]),
                    str(row["width"]),
                    str(row["batch"]),
                    peer,
                    _ratio(row["speedups"].get(f"{peer}_train_step")),
                    _ratio(row["speedups"].get(f"{peer}_log_prob")),
                    _ratio(row["speedups"].get(f"{peer}_sample")),
                    f"{row['function_evaluations_log_prob'][peer]} vs "
                    f"{row['function_evaluations_log_prob']['otflow']}",
                )
        tables.append(table)
    if "training_speed" in results:
        roof = results["training_speed"]["roofline"]
        table = Table(
            "config",
            "graph s",
            "XLA s",
            "GFLOP/s",
            "matmul GFLOP/s",
            "of matmul",
            "peak GB",
            title="training step",
        )
        memory = results["training_speed"]["peak_memory_gb"]
        table.add_row(
            f"d={roof['d']} m={roof['width']} n={roof['batch']} nt={roof['num_steps']}",
            f"{roof['seconds_graph']:.3f}",
            f"{roof['seconds_xla']:.3f}",
            f"{max(roof['achieved_gflops_graph'], roof['achieved_gflops_xla']):.1f}",
            f"{roof['matmul_gflops']:.1f}",
            f"{roof['fraction_of_matmul']:.0%}",
            f"{memory['graph']:.2f}",
        )
        tables.append(table)
        table = Table(
            "trace chunk rule",
            "chunk elements",
            "step s",
            "GFLOP/s",
            "of matmul",
            title="training step by trace chunking (matmul rate = one [n·d, m]×[m, m] product;"
            " above 100 %: chunks in cache beat it)",
        )
        for row in results["training_speed"].get("chunk_rules", []):
            table.add_row(
                row["rule"],
                str(row["chunk_elements"]),
                f"{row['seconds']:.3f}",
                f"{row['achieved_gflops']:.1f}",
                f"{row['fraction_of_matmul']:.0%}",
            )
        tables.append(table)
        table = Table("d", "m", "n", "seconds", "time ratio", "flop ratio", title="scaling")
        for row in results["training_speed"]["scaling"]:
            table.add_row(
                str(row["d"]),
                str(row["width"]),
                str(row["batch"]),
                f"{row['seconds']:.4f}",
                f"{row['time_ratio']:.2f}",
                f"{row['flop_ratio']:.2f}",
            )
        tables.append(table)
    if "startup" in results:
        table = Table(
            "setting",
            "first step s",
            "steady step s",
            "first/steady step",
            "first/steady log_prob",
            "new step count/steady",
            title="first call vs steady call (tracing and compilation; lower is better)",
        )
        for row in results["startup"]["rows"]:
            table.add_row(
                f"{row['setting']} d={row['d']} m={row['width']} n={row['batch']}",
                f"{row['first_step_seconds']:.2f}",
                f"{row['steady_step_seconds']:.3f}",
                _ratio(row["first_step_ratio"]),
                _ratio(row["first_log_prob_ratio"]),
                _ratio(row["first_other_steps_ratio"]),
            )
        tables.append(table)
    if "quality" in results:
        table = Table(
            "dataset", "test NLL", "truth", "gap", "iterations", "seconds", title="quality"
        )
        for row in results["quality"]["rows"]:
            truth = row["true_entropy"]
            table.add_row(
                row["dataset"],
                f"{row['test_nll']:.4f}",
                "—" if truth is None else f"{truth:.4f}",
                "—" if row["gap"] is None else f"{row['gap']:.4f}",
                str(row["iterations_run"]),
                f"{row['wall_seconds']:.0f}",
            )
        tables.append(table)
    if "recipe" in results:
        table = Table(
            "dataset",
            "way",
            "test NLL",
            "gap to truth",
            "wall s",
            "CPU s",
            title="automatic recipe (file, plain Keras) against the tuned one",
        )
        for row in results["recipe"]["rows"]:
            table.add_row(
                row["dataset"],
                row["way"],
                f"{row['test_nll']:.4f}",
                "—" if row["gap"] is None else f"{row['gap']:.4f}",
                f"{row['wall_seconds']:.0f}",
                f"{row['cpu_seconds']:.0f}",
            )
        tables.append(table)
    if "scoring" in results:
        result = results["scoring"]
        ours = result["otflow_score_file"]
        table = Table(
            "model",
            "setting",
            "NLL",
            "rows/s",
            "score FILE rows/s ÷ this (>1: tfotflow score faster)",
            title=f"scoring {result['rows']:,} rows at d = {result['d']} ({result['data']}); "
            f"tfotflow score: {ours['rows_per_second']:,.0f} rows/s, peak RSS "
            f"{ours['peak_rss_mib_after']:,.0f} MiB",
        )
        for name, row in result["matched"].items():
            table.add_row(
                name,
                f"{row['setting']:g}",
                f"{row['nll']:.3f}",
                f"{row['log_prob_per_second']:,.0f}",
                _ratio(result["score_file_speedups"].get(name)),
            )
        tables.append(table)
    if "scaling_out" in results:
        table = Table("strategy", "replicas", "samples/s", "relative", title="tf.distribute")
        for row in results["scaling_out"]["rows"]:
            table.add_row(
                row["strategy"],
                str(row["replicas"]),
                f"{row['samples_per_second']:.0f}",
                f"{row['relative_throughput']:.2f}",
            )
        tables.append(table)
    if "time_to_quality" in results:
        table = Table(
            "dataset",
            "peer",
            "target NLL",
            "OT-Flow s",
            "peer s",
            "to quality (×, higher: OT-Flow faster)",
            "OT-Flow setting",
            "peer setting",
            "log_prob (×, higher: OT-Flow faster)",
            title="time to the same exact test NLL, and exact log_prob at matched accuracy "
            "(peer time / OT-Flow time)",
        )
        for row in results["time_to_quality"]["rows"]:
            inference = row["inference"] or {}  # matched accuracy: first seed only
            ours = inference.get("otflow")
            for peer, versus in row["versus"].items():
                reach = versus["seconds_to_target"]
                theirs = inference.get(peer)
                table.add_row(
                    row["dataset"],
                    peer,
                    f"{versus['target_nll']:.3f}",
                    "—" if reach["otflow"] is None else f"{reach['otflow']:.0f}",
                    "—" if reach[peer] is None else f"{reach[peer]:.0f}",
                    _ratio(versus["time_to_quality_speedup"]),
                    "—" if ours is None else f"{ours['setting']} steps",
                    "—" if theirs is None else f"{theirs['setting']:g}",
                    _ratio(row["inference_speedups"].get(peer)),
                )
        tables.append(table)
    return tables
