"""What the pipelines benchmark runs on the Tidal side: a step that adds 1 to an int, chained
200 times (a), and a small CPU-bound step run 200 times side by side (b). bench_prefect.py
defines the same chain for Prefect, bench_tidal.py the same small work as plain Ray tasks."""

from __future__ import annotations

import tidal

#: Steps in the chain (a) and in the fan-out (b).
STEPS = 200
#: Iterations of spin() in each step of (b): about 8 ms of pure-Python work on a current core.
LOOPS = 120_000


def spin(seed: int, loops: int) -> int:
    """The small steps' work: a loop of integer arithmetic, the same in a step and in a plain
    Ray task."""
    total = seed
    for i in range(loops):
        total = (total * 31 + i) % 1_000_003
    return total


@tidal.step
def inc(value: int) -> int:
    return value + 1


@tidal.pipeline
def chain(length: int = STEPS, start: int = 0):
    """``length`` steps, each adding 1 to the previous one's output. A new ``start`` makes
    every cache key new, so each step runs (after its cache lookup, as by default)."""
    value = start
    for _ in range(length):
        value = inc(value)


@tidal.step
def small(seed: int, loops: int = LOOPS) -> int:
    return spin(seed, loops)


@tidal.pipeline
def fan(count: int = STEPS, loops: int = LOOPS, offset: int = 0):
    """``count`` independent small steps; a new ``offset`` gives them new seeds."""
    for i in range(count):
        small(seed=offset + i, loops=loops)
