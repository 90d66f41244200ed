"""Timing helper shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best_of_interleaved(*runs: Callable[[], Any], rounds: int) -> list[tuple[Any, float]]:
    """Run each of ``runs`` ``rounds`` times, interleaved, so they see the same machine load.

    On a shared VM one run's time can differ from the next one's by 10-20 %; the best round is
    the least disturbed one, and a ratio of best times compares like with like.

    Returns:
        Per run, in order: ``(its last result, its best wall time in seconds)``.
    """
    results: list[Any] = [None] * len(runs)
    best = [float("inf")] * len(runs)
    for _ in range(rounds):
        for index, run in enumerate(runs):
            start = time.perf_counter()
            results[index] = run()
            best[index] = min(best[index], time.perf_counter() - start)
    return list(zip(results, best))
