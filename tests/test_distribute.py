"""tf.distribute: two logical CPUs under MirroredStrategy, and two workers on localhost."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from tfotflow import distribute

JOB = pathlib.Path(__file__).with_name("distributed_job.py")


def run_job(*arguments, env=None, timeout=300):
    completed = subprocess.run(
        [sys.executable, str(JOB), *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def assert_same_weights(a, b, tolerance=1e-10):
    for x, y in zip(a["weights"], b["weights"]):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tolerance, atol=tolerance)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["moons", "banana"])  # unconditional, conditional
def test_mirrored_on_two_logical_cpus_matches_one_device(tmp_path, dataset):
    single = run_job("default", tmp_path / "single", 6, "--dataset", dataset)
    mirrored = run_job(
        "mirrored", tmp_path / "mirrored", 6, "--logical-cpus", 2, "--dataset", dataset
    )
    assert single["replicas"] == 1 and mirrored["replicas"] == 2
    assert single["iterations"] == mirrored["iterations"] == 6
    np.testing.assert_allclose(single["nll"], mirrored["nll"], rtol=1e-6)  # float32 metrics
    assert_same_weights(single, mirrored)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_agree_and_the_chiefs_checkpoint_resumes_alone(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(
            subprocess.Popen(
                [sys.executable, str(JOB), "multiworker", str(tmp_path / f"run{index}"), "4"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(config)},
            )
        )
    results = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr[-3000:]
            results.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for process in processes:
            process.kill()
    chief, worker = results
    assert chief["replicas"] == worker["replicas"] == 2
    assert chief["chief"] and not worker["chief"]
    assert_same_weights(chief, worker, tolerance=1e-12)
    assert (tmp_path / "run0" / "last.npz").exists()
    assert not (tmp_path / "run1" / "last.npz").exists()  # only the chief writes

    alone = run_job("default", tmp_path / "run0", 6, "--resume")
    assert alone["iterations"] == 6 and alone["replicas"] == 1


def test_strategy_errors(monkeypatch):
    with pytest.raises(ValueError, match="strategy='ring'"):
        distribute.make_strategy("ring")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.make_strategy("multiworker")
    assert distribute.is_chief()
