"""Pipelines benchmark, Prefect side, in the Prefect virtual environment's interpreter.

    benchmarks/.venvs/prefect/bin/python benchmarks/pipelines/bench_prefect.py \\
        --work DIR [--runs 3] [--warmup 1]

The 200-step chain of workload.py as a Prefect 3 flow of 200 tasks, each adding 1 to the
previous task's result. Prefect runs as it does out of the box with no server configured: no
PREFECT_API_URL, so the first flow run starts its ephemeral local API server (on a SQLite
database under PREFECT_HOME=DIR/prefect-home, which run.py keeps between rounds), and results
are not persisted. Each flow and task run is recorded by that server, as each Tidal step is a
tracked run. Prefect's INFO log lines are off (PREFECT_LOGGING_LEVEL=WARNING), which spares it
writing 400 lines per flow, and so is its telemetry (PREFECT_SERVER_ANALYTICS_ENABLED=false).
``--warmup`` untimed flow runs (the first starts the server), then ``--runs`` timed ones.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

STEPS = 200  # as workload.STEPS, which this interpreter cannot import (no Tidal here)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    (args.work / "prefect-home").mkdir(parents=True, exist_ok=True)
    os.environ.pop("PREFECT_API_URL", None)
    os.environ["PREFECT_HOME"] = str(args.work / "prefect-home")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] = "false"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"

    import prefect
    from prefect import flow, task

    @task
    def inc(value: int) -> int:
        return value + 1

    @flow
    def chain(length: int, start: int) -> int:
        value = start
        for _ in range(length):
            value = inc(value)
        return value

    walls, start = [], 0
    for index in range(args.warmup + args.runs):
        start += 1000
        began = time.perf_counter()
        last = chain(STEPS, start)
        wall = time.perf_counter() - began
        if last != start + STEPS:
            raise SystemExit(f"flow run {index}: last result {last}, not {start + STEPS}")
        if index >= args.warmup:
            walls.append(wall)
    import json

    print(json.dumps({"tool": "prefect", "version": prefect.__version__,
                      "python": platform.python_version(), "steps": STEPS, "wall_s": walls,
                      "median_s": statistics.median(walls)}), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
