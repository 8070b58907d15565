"""Each trigger kind on a prediction log written directly: quiet below its bar, fired above it,
with the figures it decided on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.loop.conftest import policy_dict
from tidal.ids import now_ms
from tidal.loop import LoopPolicy
from tidal.loop.triggers import TriggerEvaluator
from tidal.serving.feedback import record_feedback
from tidal.serving.prediction_log import PredictionLog, PredictionRecord


def _log(workspace, answers: list[tuple[int, int]], start: int = 0) -> None:
    """One logged request per (prediction, label) pair, with its label as feedback."""
    log = PredictionLog(workspace)
    stamp = now_ms()
    for i, (predicted, _) in enumerate(answers):
        log.log(PredictionRecord(f"r{start + i}", stamp, "clicks", "models:/clicks@champion",
                                 "models:/clicks/1", 1, False,
                                 {"x1": [0.1 * i], "x2": [0.0], "device": ["ios"]},
                                 [predicted], 1.0))
    log.close()
    record_feedback("clicks", [{"request_id": f"r{start + i}", "label": label}
                               for i, (_, label) in enumerate(answers)], workspace=workspace)


def _evaluate(workspace, trigger: dict, data: dict | None = None,
              last_retrain_at: int | None = None, now: datetime | None = None):
    policy = LoopPolicy.from_dict(policy_dict(triggers=[trigger]))
    (result,) = TriggerEvaluator(policy, workspace).evaluate(
        now or datetime.now(UTC) + timedelta(seconds=1), {} if data is None else data,
        last_retrain_at)
    return result


def test_performance_fires_when_live_accuracy_falls_below_the_bar(workspace):
    trigger = {"kind": "performance", "metric": "accuracy", "threshold": 0.8, "min_rows": 20}
    _log(workspace, [(1, 1)] * 10)
    quiet = _evaluate(workspace, trigger)
    assert not quiet.fired and "fewer than the 20" in quiet.summary
    _log(workspace, [(1, 1)] * 20 + [(1, 0)] * 10, start=10)  # 30 of 40 right: 0.75
    fired = _evaluate(workspace, trigger)
    assert fired.fired and fired.details["value"] == 0.75 and fired.details["rows"] == 40
    assert "below 0.8" in fired.summary
    loss = {"kind": "performance", "metric": "log_loss", "threshold": 5.0, "min_rows": 20}
    assert not _evaluate(workspace, {**loss, "metric": "mae", "threshold": 0.5}).fired


def test_labels_fire_after_enough_new_labelled_rows_since_the_last_retraining(workspace):
    _log(workspace, [(1, 1)] * 30)
    trigger = {"kind": "labels", "rows": 25}
    assert _evaluate(workspace, trigger).fired
    later = now_ms() + 1
    result = _evaluate(workspace, trigger, last_retrain_at=later)
    assert not result.fired and result.details["rows"] == 0


def test_schedule_fires_once_a_cron_time_has_passed(workspace):
    trigger = {"kind": "schedule", "cron": "0 * * * *"}  # every hour on the hour
    data: dict = {}
    noon = datetime(2026, 11, 23, 12, 10, tzinfo=UTC)
    assert not _evaluate(workspace, trigger, data, now=noon).fired  # starts counting now
    assert not _evaluate(workspace, trigger, data, now=noon + timedelta(minutes=30)).fired
    result = _evaluate(workspace, trigger, data, now=noon + timedelta(minutes=55))
    assert result.fired and result.details["due"].startswith("2026-11-23T13:00")


def test_drift_fires_against_a_shifted_reference_and_not_against_the_same_data(workspace):
    import pandas as pd

    import tidal

    same = pd.DataFrame({"x1": [0.1 * i for i in range(40)], "x2": [0.0] * 40,
                         "device": ["ios"] * 40})
    tidal.datasets.register("same", same)
    tidal.datasets.register("shifted", same.assign(x1=same["x1"] + 10, x2=1.0))
    trigger = {"kind": "drift", "window": 100, "min_rows": 20, "threshold": 0.5}
    _log(workspace, [(1, 1)] * 10)
    quiet = _evaluate(workspace, {**trigger, "reference": "datasets:/same/1"})
    assert not quiet.fired and "fewer than the 20" in quiet.summary
    _log(workspace, [(1, 1)] * 30, start=10)  # now 40 requests: the reference's own rows
    calm = _evaluate(workspace, {**trigger, "reference": "datasets:/same/1"})
    assert not calm.fired and calm.details["drifted_share"] == 0.0
    assert calm.details["rows"] == 40 and calm.details["reference"] == "datasets:/same/1"
    moved = _evaluate(workspace, {**trigger, "reference": "datasets:/shifted/1"})
    assert moved.fired and set(moved.details["drifted_columns"]) == {"x1", "x2"}
    assert "67% of 3 input columns drifted" in moved.summary
    corrected = _evaluate(workspace, {**trigger, "reference": "datasets:/shifted/1",
                                      "correction": "bonferroni"})
    assert corrected.fired and corrected.details["correction"] == "bonferroni"
    assert "p-values adjusted: bonferroni" in corrected.summary
    x1 = corrected.details["columns"]["x1"]
    assert x1["adjusted"] == min(1.0, 3 * x1["statistic"]) and x1["drifted"]


def test_a_controller_shows_what_it_measured_on_prometheus_gauges(workspace):
    import httpx
    import pandas as pd

    import tidal
    from tidal.loop import Controller, apply_policy
    from tidal.monitoring import MonitoringGauges

    same = pd.DataFrame({"x1": [0.1 * i for i in range(40)], "x2": [0.0] * 40,
                         "device": ["ios"] * 40})
    tidal.datasets.register("shifted", same.assign(x1=same["x1"] + 10, x2=1.0))
    apply_policy(policy_dict(triggers=[{"kind": "drift", "window": 100, "min_rows": 20,
                                        "reference": "datasets:/shifted/1"}]))
    _log(workspace, [(1, 1)] * 30 + [(0, 1)] * 10)
    gauges = MonitoringGauges()
    port = gauges.serve(0)
    controller = Controller("clicks-loop", gauges=gauges)
    try:
        controller.tick()
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        controller.close()
        gauges.close()
    assert 'tidal_drift_share{endpoint="clicks"} 0.6666' in text
    assert 'tidal_column_drifted{column="x1",endpoint="clicks"} 1.0' in text
    assert 'tidal_model_metric{endpoint="clicks",metric="accuracy",' \
           'route="models:/clicks@champion",version="1"} 0.75' in text
