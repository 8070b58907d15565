"""What every benchmark runner shares: running a bench script in an anchor's interpreter,
describing the machine and the command, and writing its section of RESULTS.md."""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import subprocess
import sys
from argparse import ArgumentParser, Namespace
from pathlib import Path
from typing import Any, NoReturn

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"


def fail(message: str) -> NoReturn:
    """Exit with status 2: the benchmark could not run."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def check_anchor_python(path: str, module: str, tool: str, option: str, variable: str,
                        create_venv: str) -> None:
    """Refuse, with the command that fixes it, an interpreter that cannot import ``module``."""
    if not Path(path).is_file() or not os.access(path, os.X_OK):
        fail(f"no {tool} interpreter at {path}.\nCreate the anchor environment from the "
             f"repository root:\n\n    {create_venv}\n\nor point {option} (or {variable}) at "
             f"the python of an environment that has {tool}.")
    probe = subprocess.run([path, "-c", "import importlib.util, sys; "
                            f"sys.exit(importlib.util.find_spec({module!r}) is None)"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        fail(f"{path} cannot import {module}.\nInstall it there, e.g.:\n\n    {create_venv}")


def run_bench(python: str, script: Path, options: list[str]) -> dict[str, Any]:
    """Run a bench script and return the last JSON object it printed."""
    command = [python, str(script), *options]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
    if done.returncode != 0:
        fail(f"{script.name} exited with status {done.returncode}: {shlex.join(command)}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        fail(f"{script.name} printed no JSON result")
    return json.loads(lines[-1])


def fmt_s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def add_result_options(parser: ArgumentParser, section: str, *,
                       raw: str = "every raw result",
                       tmp_root: str = "where the stores go") -> None:
    """``--write-results``, ``--json`` and ``--tmp-root``, which every runner takes."""
    parser.add_argument("--write-results", action="store_true",
                        help=f"update the {section} section of benchmarks/RESULTS.md")
    parser.add_argument("--json", metavar="PATH", help=f"also save {raw} as JSON")
    parser.add_argument("--tmp-root", help=f"{tmp_root} (default: the system's temporary "
                                           "folder)")


def parse_full_run(parser: ArgumentParser, partial: list[str]) -> Namespace:
    """Parse the arguments, refusing ``--write-results`` with any of the ``partial`` options:
    RESULTS.md records full runs only."""
    args = parser.parse_args()
    given = [option for option in partial
             if getattr(args, option.lstrip("-").replace("-", "_")) not in (None, False)]
    if args.write_results and given:
        parser.error(f"--write-results records full runs only; drop {', '.join(given)}")
    return args


def machine() -> str:
    model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            kib = int(re.search(r"MemTotal:\s+(\d+)", meminfo.read()).group(1))
            memory = f", {kib / 2**20:.0f} GiB memory"
    except (OSError, AttributeError):
        pass
    return (f"{os.cpu_count()} cores, {model or platform.processor() or 'unknown CPU'}"
            f"{memory}, {platform.system()} {platform.release()}")


def command_line() -> str:
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO))
    except ValueError:
        script_text = str(script)
    return shlex.join(["python", script_text, *sys.argv[1:]])


def load_average() -> str:
    try:
        return " / ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def results_section(title: str, loads: tuple[str, str], facts: list[str], head: str,
                    table: str) -> str:
    """A benchmark's RESULTS.md section: its title, when, where and how it ran (plus the
    runner's own ``facts``, one bullet each), then its printed header and table verbatim."""
    from datetime import UTC, datetime

    now = datetime.now(UTC).astimezone().isoformat(timespec="seconds")
    return "\n".join([
        f"## {title}",
        "",
        f"- Date: {now}",
        f"- Machine: {machine()}",
        f"- Command: `{command_line()}`",
        f"- Load average (1/5/15 min) before: {loads[0]}; after: {loads[1]}",
        *(f"- {fact}" for fact in facts),
        "",
        "```text",
        head,
        "",
        table,
        "```",
        "",
    ])


def finish(table: Any, head: str, *, quick: bool, write: bool, name: str, title: str,
           load_before: str, facts: list[str] | None = None) -> NoReturn:
    """Print the header and the table (``table.render()``), say whether every target and
    check passed (``table.failed`` lists those that did not), write RESULTS.md when asked, and
    exit non-zero on any failure."""
    rendered = table.render()
    print()
    print(head)
    print()
    print(rendered)
    print()
    if table.failed:
        print("FAILED: " + "; ".join(table.failed))
    else:
        print("All targets and checks pass." if not quick
              else "Checks pass (quick run: targets not enforced).")
    if write:
        write_results(name, results_section(title, (load_before, load_average()), facts or [],
                                            head, rendered))
        print(f"Updated {RESULTS.relative_to(RESULTS.parents[1])}")
    sys.exit(1 if table.failed else 0)


def source_state() -> str:
    """The commit measured, and any source files that differed from it; take it before the
    run, so that it names the files measured."""
    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], capture_output=True, text=True, cwd=REPO)
        return done.stdout if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = git("status", "--porcelain", "--", "src").splitlines()  # "XY path" per line
    changed = ", ".join(line[3:] for line in dirty if len(line) > 3)
    return f"commit {commit}" + (f", with uncommitted changes to {changed}" if changed else "")


def say(message: str) -> None:
    """Progress on stderr, so that stdout holds only the figures."""
    print(message, file=sys.stderr, flush=True)


class ResultTable:
    """The table every runner prints: one row per figure, PASS/FAIL where the figure has a
    target, and the failed figures listed in ``failed``. ``right`` are the columns aligned
    to the right (the figures)."""

    HEADER: tuple[str, ...] = ()
    RIGHT: frozenset[int] = frozenset()

    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []
        self.failed: list[str] = []
        self.failed_checks: list[str] = []  # correctness checks, which quick runs enforce too

    def row(self, figure: str, *cells: str, passed: bool | None = None,
            check: bool = False) -> None:
        verdict = "" if passed is None else "PASS" if passed else "FAIL"
        if passed is False:
            self.failed.append(figure)
            if check:
                self.failed_checks.append(figure)
        self.rows.append((figure, *cells, verdict))

    def enforce_checks_only(self) -> None:
        """For a quick run: its sizes are not the targets', so only the checks can fail it."""
        self.failed = list(self.failed_checks)

    def render(self) -> str:
        rows = [self.HEADER, *self.rows]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self.HEADER))]

        def line(row: tuple[str, ...]) -> str:
            cells = [cell.rjust(widths[i]) if i in self.RIGHT else cell.ljust(widths[i])
                     for i, cell in enumerate(row)]
            return "  ".join(cells).rstrip()

        rule = "  ".join("-" * width for width in widths)
        return "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])])


class ComparisonTable(ResultTable):
    """Tidal's figure against another tool's, their ratio and the target."""

    HEADER = ("Figure", "Tidal", "Compared with", "Ratio", "Target", "Result")
    RIGHT = frozenset({1, 2, 3})

    def add(self, figure: str, tidal: str = "", other: str = "", ratio: str = "",
            target: str = "", passed: bool | None = None, check: bool = False) -> None:
        self.row(figure, tidal, other, ratio, target, passed=passed, check=check)


def write_results(name: str, text: str) -> None:
    """Replace the benchmark's own section of RESULTS.md (between its markers), or add it."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = f"{begin}\n{text.rstrip()}\n{end}\n"
    if RESULTS.exists():
        current = RESULTS.read_text(encoding="utf-8")
    else:
        current = ("# Benchmark results\n\nThe latest figures of each benchmark in this folder, "
                   "written by its runner (see README.md). Do not edit a section by hand: run "
                   "the benchmark again.\n\n")
    if begin in current and end in current:
        before, rest = current.split(begin, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        updated = before + section + ("\n" + after if after else "")
    else:
        updated = current.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(updated, encoding="utf-8")
