"""The machine facts behind the trace chunk and the XLA choice."""

import pytest

from tfotflow import hardware


def test_cache_sizes_parse_and_the_last_level_is_the_largest():
    assert hardware._parse_size("32768K") == 32 * 2**20
    assert hardware._parse_size("1M") == 2**20
    assert hardware._parse_size("512") == 512
    assert hardware._count_cpus("0-3,8") == 5
    caches = hardware.cpu_caches()
    if not caches:
        pytest.skip("this machine exposes no /sys/devices/system/cpu/cpu0/cache")
    assert all(cache["bytes"] > 0 and cache["shared_by"] >= 1 for cache in caches)
    assert hardware.last_level_cache_bytes() == max(cache["bytes"] for cache in caches)


def test_chunk_rule_follows_the_cache_and_has_a_floor():
    try:
        hardware.override_cache_bytes(32 * 2**20)
        assert hardware.trace_chunk_elements(4) == 2**22
        assert hardware.trace_chunk_elements(8) == 2**21
        hardware.override_cache_bytes(4 * 2**20)
        assert hardware.trace_chunk_elements(4) == 2**19
        hardware.override_cache_bytes(2**10)
        assert hardware.trace_chunk_elements(4) == hardware.MIN_CHUNK_ELEMENTS
    finally:
        hardware.override_cache_bytes(None)
    assert hardware.last_level_cache_bytes() > 2**10


def test_even_sizes():
    assert hardware.even_sizes(7, 3) == [3, 2, 2]
    assert hardware.even_sizes(11, 6) == [2, 2, 2, 2, 2, 1]
    assert hardware.even_sizes(4, 4) == [1, 1, 1, 1]


def test_xla_below_sixteen_dimensions():
    assert hardware.use_xla(2) and hardware.use_xla(15)
    assert not hardware.use_xla(16) and not hardware.use_xla(43)


def test_machine_names_the_cpu_model_from_cpuinfo(monkeypatch, tmp_path):
    import os
    import pathlib

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\nflags\t: avx\n")
    real_path = pathlib.Path
    monkeypatch.setattr(
        hardware.pathlib,
        "Path",
        lambda path: cpuinfo if path == "/proc/cpuinfo" else real_path(path),
    )
    facts = hardware.machine()
    assert facts["cpu"] == "Example CPU @ 2.0GHz"
    assert facts["processors"] == os.cpu_count() and facts["machine"]
    assert facts["caches"] == hardware.cpu_caches()  # the sizes beside the model name
    cpuinfo.unlink()  # no /proc/cpuinfo: the platform's word, a string
    assert isinstance(hardware.machine()["cpu"], str)
