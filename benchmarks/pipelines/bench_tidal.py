"""Pipelines benchmark, Tidal side, in Tidal's own interpreter.

    python benchmarks/pipelines/bench_tidal.py chain --work DIR [--runs 3] [--warmup 1] \\
        [--profile PATH]
    python benchmarks/pipelines/bench_tidal.py ray --work DIR [--rounds 5] [--cpus N]

chain: in this fresh process, a SQLite workspace in DIR, then the 200-step chain of
workload.py on the inline executor, tracking on (a pipeline run, a tracked child run per step,
each output stored), cache on (each step looks up its key first; a new ``start`` each run makes
every key new): ``--warmup`` untimed runs, then ``--runs`` timed ones. ``--profile`` writes a
cProfile of one more run. ray: a local Ray runtime with ``--cpus`` CPUs (started by Tidal's
Ray executor, as ``executor="ray"`` does), then rounds that alternate 200 independent small
steps on Tidal's Ray executor and the same work as 200 plain ``ray.remote`` tasks. Each prints
one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload as w


def _workspace(work: Path) -> Any:
    import tidal

    return tidal.workspace(f"sqlite:///{work / 'tidal.db'}", str(work / "artifacts"))


def _function_s(calls: int) -> float:
    """What the chain's step functions themselves take: ``calls`` direct calls of the plain
    function behind the step (median of 5 repeats)."""
    samples = []
    for _ in range(5):
        value, start = 0, time.perf_counter()
        for _ in range(calls):
            value = w.inc.function(value)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def chain(work: Path, runs: int, warmup: int, profile: str | None) -> dict[str, Any]:
    import tidal
    from tidal.pipelines import run_pipeline

    ws = _workspace(work)
    walls, start = [], 0
    for index in range(warmup + runs):
        start += 1000
        began = time.perf_counter()
        result = run_pipeline(w.chain, {"start": start}, workspace=ws)
        wall = time.perf_counter() - began
        if index >= warmup:
            walls.append(wall)
        statuses = {r.status for r in result.steps.values()}
        last = result.output(f"inc_{w.STEPS}")
        if statuses != {"done"} or last != start + w.STEPS or len(result.steps) != w.STEPS:
            raise SystemExit(f"chain run {index}: statuses {statuses}, last output {last}")
    children = len(tidal.get_run(result.id).children)
    if profile:
        import cProfile

        start += 1000
        cProfile.runctx("run_pipeline(w.chain, {'start': start}, workspace=ws)",
                        globals(), {"run_pipeline": run_pipeline, "w": w, "start": start,
                                    "ws": ws}, profile)
    return {"tool": "tidal", "version": tidal.__version__, "python": platform.python_version(),
            "steps": w.STEPS, "wall_s": walls, "median_s": statistics.median(walls),
            "function_s": _function_s(w.STEPS), "child_runs": children}


def ray_rounds(work: Path, rounds: int, cpus: int) -> dict[str, Any]:
    import ray

    import tidal
    from tidal.pipelines import run_pipeline
    from tidal.pipelines.executors.ray import RayExecutor

    ws = _workspace(work)
    started = time.perf_counter()
    runtime = RayExecutor(num_cpus=cpus)  # starts Ray; the runs' own executors reuse it
    start_s = time.perf_counter() - started
    raw_spin = ray.remote(w.spin)

    def tidal_fan(offset: int, count: int, loops: int) -> tuple[float, int]:
        began = time.perf_counter()
        result = run_pipeline(w.fan, {"count": count, "loops": loops, "offset": offset},
                              executor="ray", workspace=ws)
        wall = time.perf_counter() - began
        if {r.status for r in result.steps.values()} != {"done"}:
            raise SystemExit("a step of the fan-out did not run")
        return wall, sum(result.output(node) for node in result.steps)

    def raw_fan(offset: int, count: int, loops: int) -> tuple[float, int]:
        began = time.perf_counter()
        values = ray.get([raw_spin.remote(offset + i, loops) for i in range(count)])
        return time.perf_counter() - began, sum(values)

    # warm-up: workers started, modules imported, functions exported, on both sides
    tidal_fan(10**9, 4 * cpus, w.LOOPS)
    raw_fan(10**9, 4 * cpus, w.LOOPS)
    found: dict[str, list[float]] = {"tidal": [], "raw": [], "tidal_trivial": [],
                                     "raw_trivial": []}
    same = True
    for index in range(rounds):
        offset = (index + 1) * 10 * w.STEPS
        order = [("tidal", tidal_fan), ("raw", raw_fan)]
        if index % 2:
            order.reverse()
        sums = {}
        for name, run in order:
            wall, sums[name] = run(offset, w.STEPS, w.LOOPS)
            found[name].append(wall)
        same = same and sums["tidal"] == sums["raw"]
        for name, run in order:  # the fixed cost alone: steps that do (almost) nothing
            wall, _ = run(offset, w.STEPS, 1)
            found[f"{name}_trivial"].append(wall)
    spins = []
    for _ in range(20):
        began = time.perf_counter()
        w.spin(1, w.LOOPS)
        spins.append(time.perf_counter() - began)
    runtime.close()
    return {"tool": "tidal", "version": tidal.__version__, "ray": ray.__version__,
            "python": platform.python_version(), "cpus": cpus, "steps": w.STEPS,
            "loops": w.LOOPS, "ray_start_s": start_s, "spin_s": statistics.median(spins),
            "same_results": same, **{f"{k}_s": v for k, v in found.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    one = sub.add_parser("chain")
    one.add_argument("--work", type=Path, required=True)
    one.add_argument("--runs", type=int, default=3)
    one.add_argument("--warmup", type=int, default=1)
    one.add_argument("--profile")
    two = sub.add_parser("ray")
    two.add_argument("--work", type=Path, required=True)
    two.add_argument("--rounds", type=int, default=5)
    two.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    import json

    if args.mode == "chain":
        answer = chain(args.work, args.runs, args.warmup, args.profile)
    else:
        answer = ray_rounds(args.work, args.rounds, args.cpus)
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
