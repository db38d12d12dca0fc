"""Timing: interleaved medians (every contender once per round, after warm-up) and the
training seconds of Keras ``fit`` calls."""

import gc
import resource
import statistics
import time

import tensorflow as tf

from tfotflow._keras import keras


def _block(result):
    """Waits for every tensor in ``result`` (TensorFlow may run asynchronously)."""
    for value in tf.nest.flatten(result):
        if hasattr(value, "numpy"):
            value.numpy()


def interleaved_medians(contenders, *, rounds=5, warmup=1):
    """Median wall time in seconds of each zero-argument callable, measured in turns.

    Args:
        contenders: a dict from name to a callable returning tensors.
        rounds: timed rounds; each round runs every contender once, in order. Defaults to 5.
        warmup: untimed rounds first (tracing, compilation, caches). Defaults to 1.

    Returns:
        A dict from name to the median seconds.
    """
    for _ in range(warmup):
        for function in contenders.values():
            _block(function())
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, function in contenders.items():
            gc.collect()
            start = time.perf_counter()
            _block(function())
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


class TrainingTime(keras.callbacks.Callback):
    """The training seconds of one or more Keras ``fit`` calls: the wall time between the ends
    of consecutive step calls (the validations, checkpoints and callbacks between them
    included, as a user's run pays them). The first call of each ``fit`` (tracing and
    compiling) is not counted; its seconds add to ``untimed``.

    ``seconds`` and ``steps`` (model steps: a call runs ``steps_per_execution`` of them) sum
    over the fits; ``epoch_seconds`` holds the training seconds at each epoch's end. With
    ``budget_seconds``, training stops once that many seconds are trained. Subclasses hear
    of each call by :meth:`first_call` and :meth:`timed`, and may stop training by
    :attr:`done`.
    """

    def __init__(self, budget_seconds=None):
        super().__init__()
        self.budget_seconds = budget_seconds
        self.seconds, self.steps, self.untimed, self.epoch_seconds = 0.0, 0, 0.0, []
        self._mark = self._start = None

    def on_train_begin(self, logs=None):
        self._mark = None

    def on_train_batch_begin(self, batch, logs=None):
        if self._mark is None:
            self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._mark is None:  # the fit's first call: compiled then
            self.untimed += now - self._start
            self.first_call()
        else:
            steps = getattr(self.model, "steps_per_execution", 1)
            self.seconds += now - self._mark
            self.steps += steps
            self.timed(now - self._mark, steps)
        if self.done:
            self.model.stop_training = True
        self._mark = time.perf_counter()  # after anything the hooks did

    def on_epoch_end(self, epoch, logs=None):
        since = 0.0 if self._mark is None else time.perf_counter() - self._mark
        self.epoch_seconds.append(self.seconds + since)

    def first_call(self):
        """Called after each fit's first (untimed) step call."""

    def timed(self, seconds, steps):
        """Called after each timed step call of ``seconds`` and ``steps`` model steps."""

    @property
    def done(self):
        """Whether to stop training: the budget, when there is one, is spent."""
        return self.budget_seconds is not None and self.seconds >= self.budget_seconds


def peak_memory_gb():
    """The process's peak resident memory so far, in GB.

    Reads ``VmHWM`` from ``/proc/self/status`` where there is one: unlike ``ru_maxrss``, it
    starts afresh in a new program, so a child process does not report its parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e9  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux


def matmul_gflops(rows, inner, cols, dtype, *, rounds=5):
    """The machine's measured dense matmul rate for a [rows, inner] × [inner, cols] product."""
    a = tf.random.normal([rows, inner], dtype=dtype)
    b = tf.random.normal([inner, cols], dtype=dtype)
    product = tf.function(lambda a, b: a @ b)
    seconds = interleaved_medians({"matmul": lambda: product(a, b)}, rounds=rounds)["matmul"]
    return 2.0 * rows * inner * cols / seconds / 1e9


def training_step(loss_fn, variables, optimizer, *, jit_compile=False):
    """A compiled step: the gradient of ``loss_fn(x)`` applied to ``variables``."""

    @tf.function(jit_compile=jit_compile)
    def step(x):
        with tf.GradientTape() as tape:
            loss = loss_fn(x)
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    return step
