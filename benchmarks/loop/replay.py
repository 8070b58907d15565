"""Prequential (test-then-train) replays of one stream by the three contestants.

Time moves in windows (the every-window contestant's retraining period) cut into ticks (the
loop controller's interval). Each row is first predicted by the model serving at that moment
and scored against its label; only then does it become labelled history that a contestant may
train on. Labels arrive at the end of the tick their rows fall in.

- static: fitted once on the first windows, never again.
- every window: the same fit on the latest span of rows after every window.
- Tidal loop: the real ``tidal.loop.Controller`` with the stream's policy, on a fresh
  workspace, driven by a replay clock. Each tick's rows are routed by the endpoint's current
  weights to the versions its routes resolve to now (``tidal.models.load``), written to the
  prediction log with the stream's timestamps and their labels written as feedback stamped at
  the tick's end, then the controller ticks once. Every retraining, gate, canary step,
  promotion and rollback is the controller's own, read back from the loop's history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from report import say
from workload import Stream


@dataclass
class Outcome:
    """One contestant's replay: per evaluated row, whether its prediction was right."""

    correct: np.ndarray
    retrains: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def ms(moment: Any) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Plan:
    """Where the evaluation starts, and the windows and ticks after it."""

    start: datetime  # the first window's start
    evaluate_from: datetime  # rows before this train the first model
    windows: list[tuple[datetime, datetime]]  # evaluated windows
    times: np.ndarray  # each row's time in ms

    @classmethod
    def of(cls, stream: Stream) -> Plan:
        frame = stream.frame
        start = frame["timestamp"].iloc[0].to_pydatetime()
        end = frame["timestamp"].iloc[-1].to_pydatetime()
        evaluate_from = start + stream.initial_windows * stream.window
        windows, a = [], evaluate_from
        while a <= end:
            windows.append((a, a + stream.window))
            a += stream.window
        times = frame["timestamp"].dt.as_unit("ms").astype("int64").to_numpy()
        return cls(start, evaluate_from, windows, times)

    def rows(self, a: datetime, b: datetime) -> slice:
        lo, hi = np.searchsorted(self.times, [ms(a), ms(b)], side="left")
        return slice(int(lo), int(hi))

    @property
    def evaluated(self) -> slice:
        return self.rows(self.evaluate_from, self.windows[-1][1])

    def ticks(self, stream: Stream) -> list[tuple[datetime, datetime]]:
        per_window = stream.window // stream.tick
        return [(a + i * stream.tick, a + (i + 1) * stream.tick)
                for a, _ in self.windows for i in range(per_window)]


def static(stream: Stream, plan: Plan) -> Outcome:
    frame, began = stream.frame, time.perf_counter()
    model = stream.fit(frame.iloc[plan.rows(plan.start, plan.evaluate_from)])
    rows = frame.iloc[plan.evaluated]
    correct = model.predict(rows[stream.features]) == rows[stream.label].to_numpy()
    return Outcome(np.asarray(correct), 0, time.perf_counter() - began)


def every_window(stream: Stream, plan: Plan, span: timedelta) -> Outcome:
    """Retrain on the latest ``span`` of rows after every window."""
    frame, began = stream.frame, time.perf_counter()
    model = stream.fit(frame.iloc[plan.rows(plan.start, plan.evaluate_from)])
    parts, retrains = [], 0
    for index, (a, b) in enumerate(plan.windows):
        rows = frame.iloc[plan.rows(a, b)]
        if len(rows):
            parts.append(model.predict(rows[stream.features]) == rows[stream.label].to_numpy())
        if index + 1 < len(plan.windows):  # a model after the last window would serve nothing
            model = stream.fit(frame.iloc[plan.rows(b - span, b)])
            retrains += 1
    return Outcome(np.concatenate(parts), retrains, time.perf_counter() - began)


def tidal_loop(stream: Stream, plan: Plan, root: Path, seed: int = 0) -> Outcome:
    import tidal
    from tidal.errors import TidalError
    from tidal.loop import Controller, apply_policy, history
    from tidal.models.loaded import load_version
    from tidal.serving import deploy, get_endpoint, record_feedback
    from tidal.serving.prediction_log import PredictionLog, PredictionRecord

    began = time.perf_counter()
    frame, policy = stream.frame, stream.policy
    endpoint, model_name = policy["endpoint"], policy["model"]
    ws = tidal.workspace(root / stream.name)
    initial = frame.iloc[plan.rows(plan.start, plan.evaluate_from)]
    columns = [*stream.features, stream.label]
    dataset = tidal.datasets.register(f"{stream.name}-initial", initial[columns].reset_index(
        drop=True), workspace=ws)
    first = tidal.models.register(model_name, stream.fit(initial), run=False,
                                  datasets=[dataset],
                                  input_example=initial[stream.features].head(5),
                                  workspace=ws)
    tidal.models.set_alias(model_name, "champion", first.version, workspace=ws)
    deploy(endpoint, {f"models:/{model_name}@champion": 100}, workspace=ws)
    apply_policy(policy, workspace=ws)

    now = [plan.evaluate_from]
    controller = Controller(policy["name"], workspace=ws, clock=lambda: now[0])
    log = PredictionLog(ws, worker="replay", max_queue=10**7, flush_rows=10**7,
                        flush_interval=3600.0)
    log.start()
    rng = np.random.default_rng(seed)
    labels = frame[stream.label].tolist()
    records = frame[stream.features].to_dict("records")
    parts: list[np.ndarray] = []
    served: dict[int, int] = {}  # rows answered per version
    errors: list[str] = []
    tick_seconds: list[float] = []
    ticks = plan.ticks(stream)
    for index, (a, b) in enumerate(ticks):
        span = plan.rows(a, b)
        rows = frame.iloc[span]
        n = len(rows)
        if n:
            routes = get_endpoint(endpoint, workspace=ws).config.routes
            loaded = [load_version(tidal.models.get_version(r.uri, workspace=ws))
                      for r in routes]
            weights = np.cumsum([r.weight for r in routes])
            # As a server picks a live route: at random by weight, request by request.
            pick = np.minimum(np.searchsorted(weights, rng.random(n) * weights[-1],
                                              side="right"), len(routes) - 1)
            predictions = np.empty(n, dtype=object)
            latency = np.zeros(n)
            for j, model in enumerate(loaded):
                mine = np.flatnonzero(pick == j)
                if not len(mine):
                    continue
                t0 = time.perf_counter()
                out = model.predict(rows.iloc[mine][stream.features])
                latency[mine] = (time.perf_counter() - t0) * 1000 / len(mine)
                predictions[mine] = list(out)
                served[model.version.version] = served.get(model.version.version, 0) + \
                    len(mine)
            truth = np.asarray(labels[span.start:span.stop])
            parts.append(np.array([p == t for p, t in zip(predictions, truth)]))
            ids = [f"{stream.name}-{i}" for i in range(span.start, span.stop)]
            for k in range(n):
                i = span.start + k
                model = loaded[pick[k]]
                log.log(PredictionRecord(
                    ids[k], int(plan.times[i]), endpoint, routes[pick[k]].uri,
                    model.version.uri, model.version.version, False,
                    {name: [value] for name, value in records[i].items()},
                    [predictions[k]], float(latency[k])))
            log.flush(timeout=600)
            # Labels come back when the tick closes, stamped with the stream's time.
            for first in range(0, n, 10_000):
                record_feedback(endpoint, [
                    {"request_id": ids[k], "label": labels[span.start + k]}
                    for k in range(first, min(n, first + 10_000))], at=b, workspace=ws)
        now[0] = b
        t0 = time.perf_counter()
        try:
            controller.tick()
        except TidalError as error:
            errors.append(f"{b:%Y-%m-%d %H:%M}: {type(error).__name__}: {error.message}")
            say(f"  {stream.name}: tick at {b:%Y-%m-%d %H:%M} failed: {error.message}")
        tick_seconds.append(time.perf_counter() - t0)
        if (index + 1) % max(1, len(ticks) // 10) == 0:
            say(f"  {stream.name}: loop replay {index + 1}/{len(ticks)} ticks, "
                f"{time.perf_counter() - began:.0f} s")
    controller.close()
    log.close()
    decisions = history(endpoint, workspace=ws)
    logged = len(tidal.serving.read_prediction_log(endpoint, workspace=ws))
    return Outcome(np.concatenate(parts), sum(
        1 for d in decisions if d.kind == "retrain" and d.outcome == "trained"),
        time.perf_counter() - began, {
            "decisions": [{"kind": d.kind, "outcome": d.outcome, "at": d.at,
                           "summary": d.summary, "model_uri": d.model_uri}
                          for d in decisions],
            "ticks": len(ticks), "tick_seconds": tick_seconds, "errors": errors,
            "logged": logged, "dropped": log.dropped, "served": served,
            "final_routes": {r.uri: r.weight for r in get_endpoint(
                endpoint, workspace=ws).config.routes}})
