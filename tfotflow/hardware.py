"""Machine facts that size the work: the CPU's cache sizes, the trace's batch chunk, XLA or not.

The exact trace streams [chunk, d, m] Jacobians through one matrix product and a few
elementwise reductions per layer. Over the whole batch at once those arrays spill far out of
cache and the passes are bandwidth-bound; in very small chunks TensorFlow's per-op overhead
dominates. Chunks of half the last-level cache were the fastest of the sizes measured
(benchmarks/README.md, "trace chunk"), so on a CPU each chunk's Jacobian takes about half the
last-level cache, and on a GPU, where one large product is fastest, the batch is not cut at
all.
"""

import functools
import os
import pathlib
import platform

# When the cache size cannot be read (no sysfs, no sysconf entry): a common per-socket L3.
FALLBACK_CACHE_BYTES = 8 * 2**20
# Never cut finer than this: below it the per-chunk overhead of TensorFlow ops dominates.
MIN_CHUNK_ELEMENTS = 2**18

_override = {"cache_bytes": None}


def _parse_size(text):
    """'32768K' → 33554432; '1M' → 1048576; '512' → 512."""
    text = text.strip().upper()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


@functools.cache
def cpu_caches():
    """The data and unified caches of CPU 0, ``[{"level", "type", "bytes", "shared_by"}]``.

    Read from ``/sys/devices/system/cpu/cpu0/cache`` (Linux); empty where that is absent.
    """
    caches = []
    for index in sorted(pathlib.Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            if kind == "Instruction":
                continue
            shared = (index / "shared_cpu_list").read_text().strip()
            caches.append(
                {
                    "level": int((index / "level").read_text()),
                    "type": kind,
                    "bytes": _parse_size((index / "size").read_text()),
                    "shared_by": _count_cpus(shared),
                }
            )
        except (OSError, ValueError):
            continue
    return caches


def machine():
    """``{"cpu": model name, "processors": logical CPUs, "machine": architecture, "caches":
    :func:`cpu_caches`}``: what a timing is recorded beside. The model name is read from
    ``/proc/cpuinfo`` where there is one (Linux), else it is ``platform.processor()`` (empty
    where the platform says nothing); the caches are empty where sysfs is absent."""
    cpu = platform.processor()
    try:
        lines = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return {
        "cpu": names[0] if names else cpu,
        "processors": os.cpu_count(),
        "machine": platform.machine(),
        "caches": [dict(cache) for cache in cpu_caches()],
    }


def _count_cpus(cpu_list):
    """'0-3,8' → 5."""
    count = 0
    for part in cpu_list.split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


def last_level_cache_bytes():
    """The size of the largest cache CPU 0 can use (its last level), in bytes.

    From sysfs, else ``os.sysconf`` (L3, then L2), else ``FALLBACK_CACHE_BYTES``; overridden
    by :func:`override_cache_bytes` (to measure how the rule does on a smaller cache).
    """
    if _override["cache_bytes"] is not None:
        return _override["cache_bytes"]
    caches = cpu_caches()
    if caches:
        return max(cache["bytes"] for cache in caches)
    for name in ("SC_LEVEL3_CACHE_SIZE", "SC_LEVEL2_CACHE_SIZE"):
        try:
            size = os.sysconf(name)
        except (ValueError, OSError):
            continue
        if size > 0:
            return size
    return FALLBACK_CACHE_BYTES


def override_cache_bytes(cache_bytes):
    """Makes :func:`last_level_cache_bytes` return ``cache_bytes`` (None: read the machine).

    Takes effect in functions traced afterwards.
    """
    _override["cache_bytes"] = None if cache_bytes is None else int(cache_bytes)


@functools.cache
def _has_gpu():
    import tensorflow as tf  # here, so that the command line can read use_xla without it

    return bool(tf.config.list_logical_devices("GPU"))


def even_sizes(n, chunks):
    """``chunks`` sizes that sum to ``n`` and differ by at most one: (7, 3) → [3, 2, 2]."""
    return [n // chunks + (k < n % chunks) for k in range(chunks)]


def trace_chunk_elements(itemsize):
    """The Jacobian elements per batch chunk of the trace recurrence, or None for no chunks.

    Args:
        itemsize: bytes per element (4 for float32, 8 for float64).

    Returns:
        None on a machine with a GPU (one product over the whole batch); otherwise
        max(``MIN_CHUNK_ELEMENTS``, last-level cache bytes / 2 / itemsize).
    """
    if _override["cache_bytes"] is None and _has_gpu():
        return None
    return max(MIN_CHUNK_ELEMENTS, last_level_cache_bytes() // 2 // itemsize)


# Below this dimension a step is a few small products and TensorFlow's per-op overhead
# dominates, which XLA's fusion removes; above it the trace's large products dominate and the
# plain graph runs them as fast (see benchmarks/README.md, training step).
XLA_BELOW_DIM = 16


def use_xla(dim):
    """Whether training at data dimension ``dim`` compiles its step with XLA: ``dim < 16``,
    with or without a condition (the trace runs over the d columns of x only)."""
    return dim < XLA_BELOW_DIM
