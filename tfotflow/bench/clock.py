"""A race's clock: training time counted, scores on a geometric schedule, and crossings.

A race trains a model for a budget of *training* seconds (the clock stops while it is scored)
and scores its validation NLL whenever the training time has grown by a factor since the last
score; between two scores it keeps unscored checkpoints, on which :func:`refine_crossings`
later narrows the time at which a curve first reached a target. The races that use it are in
:mod:`tfotflow.bench.time_to_quality`; the evidence in ``benchmarks/README.md``.
"""

import bisect
import math
import sys
import time


def geometric_schedule(first, last, factor):
    """Training-time checkpoints first, first·factor, … up to and including ``last``."""
    times, t = [], float(first)
    while t < last:
        times.append(t)
        t *= factor
    return [*times, float(last)]


class Clock:
    """Training seconds, the validation scores taken on a geometric schedule of them, and the
    model's checkpoints in between.

    Args:
        score: returns the current validation NLL (a float); its time is not counted.
        budget_seconds: training seconds to spend.
        first_score: training seconds before the first score.
        factor: then a score whenever the training time has grown by this factor since the
            last one, and one at the end.
        on_score: called with each new [iteration, training seconds, validation NLL] as it
            is scored (a progress log that survives an interrupted race), or None.
        snapshot: called for the model's state at each score and at ``between`` more times
            between two scores (their gap cut into ``between + 1`` equal ratios), or None:
            the checkpoints :meth:`refine` scores where a crossing needs them, and
            :meth:`restore_score` puts back.
        restore: puts a ``snapshot()`` back (needed with ``snapshot``).
        between: unscored checkpoints between two scores.
    """

    def __init__(
        self,
        score,
        *,
        budget_seconds,
        first_score=2.0,
        factor=1.4,
        on_score=None,
        snapshot=None,
        restore=None,
        between=3,
    ):
        self.score, self.on_score = score, on_score
        self.snapshot, self._restore = snapshot, restore
        self.budget_seconds = float(budget_seconds)
        scores = geometric_schedule(first_score, budget_seconds, factor)
        between = 0 if snapshot is None else between
        self.schedule = scores[:1]  # the scores' times, each gap cut geometrically
        for start, end in zip(scores, scores[1:]):
            ratio = end / start
            self.schedule += [start * ratio ** (j / (between + 1)) for j in range(1, between + 1)]
            self.schedule.append(end)
        self.scored_times = set(range(0, len(self.schedule), between + 1))  # their indices
        self.due = 0  # the index of the next time in the schedule
        self.trained, self.iterations, self.curve = 0.0, 0, []
        self.checkpoints = []  # [iteration, training seconds, state]: every time kept
        self.scored = []  # the index in ``checkpoints`` of each point of ``curve``
        self.untimed_seconds = 0.0  # each phase's first step: tracing and compiling

    def begin(self):
        """Scores the untrained model."""
        self._keep(scored=True)

    def add(self, seconds, iterations=1):
        """Counts ``seconds`` of training over ``iterations`` steps; keeps a checkpoint when
        one is due and scores it when a score is (once, however many scheduled times one
        stretch of training passed)."""
        self.trained += seconds
        self.iterations += iterations
        if not self.done and self.trained >= self.schedule[self.due]:
            scored = False
            while not self.done and self.trained >= self.schedule[self.due]:
                scored |= self.due in self.scored_times
                self.due += 1
            self._keep(scored)

    @property
    def done(self):
        """Whether the budget is spent (its last score taken)."""
        return self.due >= len(self.schedule)

    def finish(self):
        """Takes the last score now when training ended before the budget was spent."""
        if not self.done:
            self.due = len(self.schedule)
            self._keep(scored=True)

    def _keep(self, scored):
        state = None if self.snapshot is None else self.snapshot()
        self.checkpoints.append([self.iterations, self.trained, state])
        if scored:
            self._record(len(self.checkpoints) - 1)

    def _record(self, checkpoint):
        """Scores the model (in the state of ``checkpoint``) into the curve, in time order."""
        iteration, seconds, _ = self.checkpoints[checkpoint]
        point = [iteration, seconds, float(self.score())]
        at = bisect.bisect(self.scored, checkpoint)
        self.curve.insert(at, point)
        self.scored.insert(at, checkpoint)
        if self.on_score is not None:
            self.on_score(point)

    def restore_score(self, index):
        """Puts back the model's state at the ``index``-th point of ``curve``."""
        self._restore(self.checkpoints[self.scored[index]][2])

    def refine(self, target):
        """Scores one more checkpoint where the curve first reaches ``target``: the middle
        one of those kept between the last score above it and the first at or below it.
        Returns whether there was one (the crossing's bracket is then narrower; without,
        it is as narrow as the checkpoints allow)."""
        at = crossing_index(self.curve, target)
        if not at:
            return False
        inside = range(self.scored[at - 1] + 1, self.scored[at])
        if not inside:
            return False
        self._restore(self.checkpoints[inside[len(inside) // 2]][2])
        self._record(inside[len(inside) // 2])
        return True

    def result(self):
        """The race: ``curve`` (a list of [iteration, training seconds, validation NLL]),
        the ``iterations`` run, the ``first_iteration_seconds`` (tracing included; not
        counted in the training time), ``best_nll`` (the best validation NLL),
        ``best_index`` (its point in the curve), ``best_seconds`` (when), and
        ``still_improving``: whether that best came in the last fifth of the budget (the
        curve had not flattened)."""
        best = min(range(len(self.curve)), key=lambda i: self.curve[i][2])
        return {
            "curve": self.curve,
            "iterations": self.iterations,
            "first_iteration_seconds": self.untimed_seconds,
            "best_nll": self.curve[best][2],
            "best_index": best,
            "best_seconds": self.curve[best][1],
            "still_improving": self.curve[best][1] >= 0.8 * self.budget_seconds,
        }


def race(step, batches, clock):
    """Trains with ``step(batch)`` until ``clock`` (a :class:`Clock`) says the budget is
    spent; the first step, which traces and compiles, is not counted. Returns
    :meth:`Clock.result`."""
    start = time.perf_counter()
    step(next(batches)).numpy()  # traces and compiles: not training progress
    clock.untimed_seconds = time.perf_counter() - start
    clock.begin()
    while not clock.done:
        batch = next(batches)
        start = time.perf_counter()
        loss = float(step(batch).numpy())
        clock.add(time.perf_counter() - start)
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"training loss became {loss} at iteration {clock.iterations}"
            )
    return clock.result()


def refine_crossings(clocks, ours):
    """Narrows, by the checkpoints each :class:`Clock` kept, the bracket of every crossing a
    duel reads: OT-Flow's (the clock ``ours``) and each peer's first score at or below the
    duel's target (the worse of the two best validation NLLs), scoring a checkpoint within a
    bracket until none is left in any (a new score may move a best, so a target)."""
    refined = True
    while refined:
        refined = False
        for peer in (name for name in clocks if name != ours):
            duel = (clocks[ours], clocks[peer])
            target = max(min(point[2] for point in clock.curve) for clock in duel)
            for clock in duel:
                refined |= clock.refine(target)


def crossing_index(curve, target):
    """The index in ``curve`` of its first score after training began that is ≤ ``target``,
    or None when training never reached it."""
    return next((i for i, (step, _, nll) in enumerate(curve) if step and nll <= target), None)


def seconds_to_reach(curve, target):
    """Training seconds at the first score after training began that is ≤ ``target``.

    None when training never reached it.
    """
    at = crossing_index(curve, target)
    return None if at is None else curve[at][1]


def crossing_bracket(curve, target):
    """``(before, at)``: the training seconds of the last score above ``target`` and of the
    first at or below it after training began (the crossing lies between), or None."""
    at = crossing_index(curve, target)
    return (curve[at - 1][1], curve[at][1]) if at else None  # the first score opens none


def log_score(name, point):
    """Prints a race's curve point (iteration, training seconds, validation NLL) to stderr as
    it is scored."""
    iteration, seconds, validation = point
    print(
        f"{name}: iteration {iteration}, {seconds:.1f} s, validation NLL {validation:.4f}",
        file=sys.stderr,
    )
