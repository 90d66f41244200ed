"""benchmarks.timing.best_of_interleaved: interleaved rounds, last result and best time per run."""

from __future__ import annotations

import benchmarks.timing as timing
from benchmarks.timing import best_of_interleaved


def test_rounds_interleave_and_keep_each_runs_best_time(monkeypatch):
    clock = iter([0.0, 5.0, 5.0, 6.0, 6.0, 8.0, 8.0, 12.0])  # a: 5 s then 2 s; b: 1 s then 4 s
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    calls: list[str] = []

    def a():
        calls.append("a")
        return len(calls)

    def b():
        calls.append("b")
        return -len(calls)

    (result_a, best_a), (result_b, best_b) = best_of_interleaved(a, b, rounds=2)
    assert calls == ["a", "b", "a", "b"]
    assert (result_a, result_b) == (3, -4)  # the last round's results
    assert (best_a, best_b) == (2.0, 1.0)  # each run's best round
