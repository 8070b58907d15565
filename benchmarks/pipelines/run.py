"""Pipelines benchmark: Tidal's per-step overhead, its Ray executor against plain Ray tasks,
and a 200-step chain against Prefect 3, in one run on the same machine.

    python benchmarks/pipelines/run.py [--prefect-python PATH] [--rounds N] [--quick]
                                       [--profile] [--write-results] [--json PATH]
                                       [--tmp-root DIR]

(a) the inline executor's overhead per step on a chain of 200 trivial steps, tracking on;
(c) the same chain as a Prefect flow (the Prefect virtual environment's interpreter:
--prefect-python, else $TIDAL_BENCH_PREFECT_PYTHON, else benchmarks/.venvs/prefect/bin/python),
in rounds that alternate a fresh Tidal process and a fresh Prefect process, which one goes
first alternating too; (b) 200 independent small steps on Tidal's Ray executor against the
same work as plain ``ray.remote`` tasks, alternating, on one local Ray runtime. Prints each
figure, the ratio and the target. Exit status: 0 when every target and check passes, 1 when
one fails, 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_PREFECT_PYTHON = REPO / "benchmarks" / ".venvs" / "prefect" / "bin" / "python"

sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import workload as w  # noqa: E402
from report import (  # noqa: E402
    ResultTable,
    add_result_options,
    check_anchor_python,
    fail,
    finish,
    fmt_s,
    load_average,
    parse_full_run,
    say,
)

# Targets of the pipelines issue.
STEP_OVERHEAD_S = 5e-3
RAY_SHARE = 0.5
PREFECT_RATIO = 1.0

FULL = {"rounds": 3, "runs": 3, "warmup": 1, "ray_rounds": 5}
QUICK = {"rounds": 1, "runs": 1, "warmup": 1, "ray_rounds": 1}

PREFECT_VERSION = "3.8.8"
CREATE_VENV = ("python3 -m venv benchmarks/.venvs/prefect && "
               f"benchmarks/.venvs/prefect/bin/pip install prefect=={PREFECT_VERSION} "
               "'fastapi<0.151'")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Pipelines benchmark: step overhead, the Ray executor against plain Ray, "
                    "and a 200-step chain against Prefect 3.")
    parser.add_argument("--prefect-python",
                        default=os.environ.get("TIDAL_BENCH_PREFECT_PYTHON"),
                        help="interpreter of a virtual environment with Prefect installed "
                             "(default: $TIDAL_BENCH_PREFECT_PYTHON, else "
                             "benchmarks/.venvs/prefect/bin/python)")
    parser.add_argument("--rounds", type=int, help="alternating Tidal/Prefect rounds for (a) "
                                                   f"and (c) (default {FULL['rounds']}); (b) "
                                                   f"runs {FULL['ray_rounds']}")
    parser.add_argument("--quick", action="store_true",
                        help="one round of everything for a smoke run; targets are shown but "
                             "do not set the exit status")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one Tidal chain run with cProfile and print where "
                             "its time goes")
    add_result_options(parser, "pipelines")
    return parse_full_run(parser, ["--quick", "--rounds"])


def bench(python: str, script: str, options: list[str], log: Path) -> dict[str, Any]:
    """Run a bench script, its chatter (Ray's and Prefect's logs) kept in ``log``; the last
    JSON object it printed."""
    command = [python, str(HERE / script), *options]
    with open(log, "a", encoding="utf-8") as errors:
        errors.write(f"\n$ {shlex.join(command)}\n")
        errors.flush()
        done = subprocess.run(command, check=False, stdout=subprocess.PIPE, stderr=errors,
                              text=True, cwd=REPO)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8").splitlines()[-30:])
        fail(f"{script} exited with status {done.returncode}: {shlex.join(command)}\n"
             f"{tail}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        fail(f"{script} printed no JSON result")
    return json.loads(lines[-1])


# -- running ------------------------------------------------------------------------------------

def run_all(prefect_python: str, work: Path, sizes: dict[str, int],
            profile: bool) -> dict[str, Any]:
    log = work / "chatter.log"
    runs = ["--runs", str(sizes["runs"]), "--warmup", str(sizes["warmup"])]
    raw: dict[str, Any] = {"sizes": sizes, "rounds": []}
    for index in range(sizes["rounds"]):
        prefect_first = index % 2 == 1
        say(f"Round {index + 1} of {sizes['rounds']}: the 200-step chain, "
            + ("Prefect first..." if prefect_first else "Tidal first..."))
        jobs = [("tidal", lambda i=index: bench(sys.executable, "bench_tidal.py",
                                                ["chain", "--work", str(work / f"tidal-{i}"),
                                                 *runs], log)),
                ("prefect", lambda: bench(prefect_python, "bench_prefect.py",
                                          ["--work", str(work / "prefect"), *runs], log))]
        if prefect_first:
            jobs.reverse()
        raw["rounds"].append({tool: job() for tool, job in jobs})
    say(f"(b) 200 small steps on Ray: {sizes['ray_rounds']} alternating rounds of Tidal's Ray "
        "executor and plain ray.remote tasks (starting Ray takes a few seconds)...")
    raw["ray"] = bench(sys.executable, "bench_tidal.py",
                       ["ray", "--work", str(work / "ray"), "--rounds",
                        str(sizes["ray_rounds"])], log)
    if profile:
        say("Profiling one Tidal chain run...")
        path = work / "chain.prof"
        bench(sys.executable, "bench_tidal.py",
              ["chain", "--work", str(work / "profile"), "--runs", "1", "--warmup", "1",
               "--profile", str(path)], log)
        raw["profile"] = profile_summary(path)
    return raw


def profile_summary(path: Path) -> list[str]:
    """The Tidal functions that took the most time, cumulative, as printable lines."""
    import io
    import pstats

    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("cumulative").print_stats(r"tidal[/\\]", 30)
    return out.getvalue().splitlines()


# -- the table ----------------------------------------------------------------------------------

class Table(ResultTable):
    HEADER = ("Figure", "Tidal", "Compared with", "Ratio", "Target", "Result")
    RIGHT = frozenset({1, 2, 3})

    def add(self, figure: str, tidal: str = "", other: str = "", ratio: str = "",
            target: str = "", passed: bool | None = None) -> None:
        self.row(figure, tidal, other, ratio, target, passed=passed)

def times(ratio: float) -> str:
    return "-" if math.isnan(ratio) else f"{ratio:.2f}x"


def build_table(raw: dict[str, Any], quick: bool) -> Table:
    table = Table()
    median = statistics.median
    rounds = raw["rounds"]
    steps = w.STEPS
    samples = len(rounds) * raw["sizes"]["runs"]

    # (a) inline overhead per step
    tidal_walls = [r["tidal"]["median_s"] for r in rounds]
    wall = median(tidal_walls)
    function_s = median(r["tidal"]["function_s"] for r in rounds)
    per_step = (wall - function_s) / steps
    table.add(f"(a) inline: overhead per step, 200-step chain ({samples} runs)",
              fmt_s(per_step), target=f"<= {fmt_s(STEP_OVERHEAD_S)}",
              passed=per_step <= STEP_OVERHEAD_S)
    per_round = [(r["tidal"]["median_s"] - r["tidal"]["function_s"]) / steps for r in rounds]
    table.add("(a) overhead per step, per round (min..max)",
              f"{fmt_s(min(per_round))} .. {fmt_s(max(per_round))}")
    table.add("(a) chain wall time / the step functions' own time", fmt_s(wall),
              fmt_s(function_s))
    children = {r["tidal"]["child_runs"] for r in rounds}
    table.add("(a) tracked child runs per chain run", str(min(children)), target="200",
              passed=children == {steps})

    # (c) against Prefect
    prefect_wall = median(r["prefect"]["median_s"] for r in rounds)
    ratios = [r["prefect"]["median_s"] / r["tidal"]["median_s"] for r in rounds]
    ratio = median(ratios)
    table.add("(c) 200-step chain: Tidal inline vs Prefect flow", fmt_s(wall),
              fmt_s(prefect_wall), times(ratio), f"> {PREFECT_RATIO:.0f}x (Tidal faster)",
              ratio > PREFECT_RATIO)
    table.add("(c) ratio per round (min..max)", "", "",
              f"{times(min(ratios))} .. {times(max(ratios))}")
    table.add("(c) per step", fmt_s(wall / steps), fmt_s(prefect_wall / steps))

    # (b) Ray
    ray = raw["ray"]
    tidal_b, raw_b = median(ray["tidal_s"]), median(ray["raw_s"])
    shares = [r / t for t, r in zip(ray["tidal_s"], ray["raw_s"], strict=True)]
    share = median(shares)
    table.add(f"(b) Ray, {steps} small steps ({fmt_s(ray['spin_s'])} each): steps/s",
              f"{steps / tidal_b:,.0f}/s", f"{steps / raw_b:,.0f}/s", f"{share:.0%}",
              f">= {RAY_SHARE:.0%} of plain Ray", share >= RAY_SHARE)
    table.add("(b) share of plain Ray's throughput, per round (min..max)", "", "",
              f"{min(shares):.0%} .. {max(shares):.0%}")
    table.add("(b) wall time for the 200 steps", fmt_s(tidal_b), fmt_s(raw_b))
    trivial_t, trivial_r = median(ray["tidal_trivial_s"]), median(ray["raw_trivial_s"])
    table.add("(b) trivial steps (no work): wall time for 200", fmt_s(trivial_t),
              fmt_s(trivial_r), f"{trivial_r / trivial_t:.0%}")
    table.add("(b) same results as plain Ray (sum of the 200 outputs)", "", "",
              target="equal", passed=ray["same_results"])
    table.add("(b) starting the local Ray runtime (once)", fmt_s(ray["ray_start_s"]))
    if quick:
        table.failed = [f for f in table.failed if "same" in f or "child runs" in f]
    return table


def header(raw: dict[str, Any], quick: bool) -> str:
    t, p = raw["rounds"][0]["tidal"], raw["rounds"][0]["prefect"]
    ray = raw["ray"]
    lines = [
        (f"Tidal {t['version']} (Python {t['python']}, SQLite workspace, tracking on: a run per "
         f"pipeline and per step, each output stored, cache lookups on); Prefect "
         f"{p['version']} (Python {p['python']}, ephemeral local API server on SQLite, results "
         f"not persisted, its own virtual environment); Ray {ray['ray']} (local runtime, "
         f"{ray['cpus']} CPUs, started by Tidal's Ray executor)."),
        ("(a), (c): a chain of 200 steps, each adding 1 to an int, in fresh processes that "
         f"alternate (1 warm-up chain, then the median of {raw['sizes']['runs']} timed ones "
         "per process). Overhead per step = (chain wall time - the step functions' own time) "
         "/ 200; the functions take microseconds in all, so this is wall / 200."),
        (f"(b): 200 independent steps of ~{fmt_s(ray['spin_s'])} of pure-Python work each, "
         "on Tidal's Ray executor (run_pipeline(..., executor='ray')) against the same "
         "function as 200 plain ray.remote tasks and one ray.get, alternating, after a "
         "warm-up of both. Share = plain Ray's wall time / Tidal's, i.e. Tidal's throughput "
         "as a share of plain Ray's."),
        "(c) Ratio: how many times faster Tidal is (Prefect's time / Tidal's).",
    ]
    if quick:
        lines.append("QUICK RUN: one round; targets apply to the full run only.")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    prefect_python = args.prefect_python or str(DEFAULT_PREFECT_PYTHON)
    check_anchor_python(prefect_python, "prefect", "Prefect", "--prefect-python",
                        "TIDAL_BENCH_PREFECT_PYTHON", CREATE_VENV)
    if importlib.util.find_spec("ray") is None:
        fail(f"{sys.executable} cannot import ray, which (b) runs on; install it with:\n\n"
             "    pip install 'ray>=2.9'")
    sizes = dict(QUICK if args.quick else FULL)
    if args.rounds is not None:
        sizes["rounds"] = args.rounds
    load_before = load_average()
    work = Path(tempfile.mkdtemp(prefix="tidal-bench-pipelines-", dir=args.tmp_root))
    try:
        raw = run_all(prefect_python, work, sizes, args.profile)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2), encoding="utf-8")
    if raw.get("profile"):
        print("Where one Tidal chain run spends its time (cProfile, cumulative, Tidal's "
              "functions):")
        print("\n".join(raw["profile"]))
    table = build_table(raw, args.quick)
    finish(table, header(raw, args.quick), quick=args.quick, write=args.write_results,
           name="pipelines", title="Pipelines: step overhead, Ray executor, Tidal against "
                                   "Prefect",
           load_before=load_before,
           facts=[f"CPUs this process may use: {len(os.sched_getaffinity(0))}"])


if __name__ == "__main__":
    main()
