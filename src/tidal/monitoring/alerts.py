"""Alert rules over monitoring figures, with their state in the metadata store.

A rule compares one figure (``error_rate``, ``drift_share``, ``accuracy``...) of each subject
it watches (an endpoint, a column, a route and version) with a threshold, as Prometheus
alerting rules do: the condition must hold for ``for_`` before the alert fires, a firing alert
notifies once (evaluations while it stays firing are de-duplicated), again only after
``cooldown`` (Alertmanager's repeat interval), and once more when it resolves. The state of
each (rule, subject) lives in ``alert_states``, so a restarted process picks up where the last
one stopped, and every notification is appended to ``alert_events`` with what each action did.

Actions run after the state is committed, outside the transaction (a slow webhook must not
hold the database's write lock, and a retried transaction must not notify twice). A failed
action is recorded in its event and logged; it never raises out of ``evaluate``. Webhooks go
only to URLs under an allow-list given when the action is made, so that no rule, wherever its
URL came from, can make Tidal call an address the operator did not allow (request forgery).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import Connection, insert, select, update

from tidal.durations import parse_duration
from tidal.errors import InvalidValueError, missing_dependency
from tidal.ids import check_name
from tidal.monitoring.performance import latest_window
from tidal.monitoring.schema import alert_events, alert_states
from tidal.store.db import upsert
from tidal.store.schema import KEY_LENGTH

if TYPE_CHECKING:
    import pandas as pd

    from tidal.monitoring.drift import DriftReport
    from tidal.store.workspace import Workspace

logger = logging.getLogger("tidal.alerts")

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}
KINDS = ("firing", "repeat", "resolved")
#: Alertmanager's default repeat interval.
DEFAULT_COOLDOWN = timedelta(hours=4)
#: Seconds a webhook may take, connecting included: evaluation waits for it.
WEBHOOK_TIMEOUT = 2.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class WebhookNotAllowedError(InvalidValueError):
    """A webhook URL is not under the allow-list, or is written so it could escape it."""


# -- figures ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Figure:
    """One value a rule can watch: ``name`` (what: error_rate...), ``subject`` (of what: an
    endpoint, "web column=age", "web route=... version=2") and ``value`` (NaN: no data)."""

    name: str
    subject: str
    value: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidValueError(f"a figure's name must be a non-empty string, got "
                                    f"{self.name!r}", field="figure")
        if not isinstance(self.subject, str) or len(self.subject) > KEY_LENGTH:
            raise InvalidValueError(f"a figure's subject must be a string of at most "
                                    f"{KEY_LENGTH} characters, got {self.subject!r:.80}",
                                    field="subject")
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise InvalidValueError(f"figure {self.name} of {self.subject!r} must be a number, "
                                    f"got {self.value!r}", field="value")


def figure_subject(endpoint: str, **labels: Any) -> str:
    """A subject as figures name it: the endpoint, then ``label=value`` pairs."""
    return " ".join([endpoint, *(f"{key}={value}" for key, value in labels.items())])


def drift_figures(endpoint: str, report: DriftReport) -> list[Figure]:
    """A drift report as figures: ``drift_share`` and ``drift_detected`` (0 or 1) of the
    endpoint; ``column_drifted``, ``drift_psi`` and ``drift_statistic`` (the test is part of
    its subject: p-values and distances are not compared with one threshold) per column;
    ``prediction_drifted``, ``prediction_psi`` and ``prediction_statistic`` when the report
    compared the model's answers too."""
    figures = [Figure("drift_share", endpoint, report.drifted_share),
               Figure("drift_detected", endpoint, float(report.drifted))]
    for column in report.columns:
        where = figure_subject(endpoint, column=column.column)
        tested = figure_subject(endpoint, column=column.column, test=column.test)
        figures += [Figure("column_drifted", where, float(column.drifted)),
                    Figure("drift_psi", where, column.psi),
                    Figure("drift_statistic", tested, column.statistic)]
    answers = report.prediction
    if answers is not None:
        figures += [Figure("prediction_drifted", endpoint, float(answers.drifted)),
                    Figure("prediction_psi", endpoint, answers.psi),
                    Figure("prediction_statistic", figure_subject(endpoint, test=answers.test),
                           answers.statistic)]
    return figures


#: Columns of a performance frame that are not figures.
_NOT_FIGURES = ("window", "start", "end", "route", "model_version", "model_uri")


def performance_figures(endpoint: str, frame: pd.DataFrame) -> list[Figure]:
    """The newest window of a performance frame as figures, one subject per route and
    version (or the endpoint, for a frame not grouped by them)."""
    figures = []
    names = [c for c in frame.columns if c not in _NOT_FIGURES]
    for row in latest_window(frame).to_dict("records"):
        labels = {"route": row["route"]} if "route" in row else {}
        if "model_version" in row:
            labels["version"] = row["model_version"]
        where = figure_subject(endpoint, **labels)
        figures += [Figure(name, where, float(row[name])) for name in names]
    return figures


# -- actions ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Alert:
    """What an action is told: a notification about one (rule, subject)."""

    rule: str
    subject: str
    figure: str
    value: float
    op: str
    threshold: float
    state: str  # firing or resolved
    kind: str  # firing, repeat or resolved
    message: str
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of a webhook (a value JSON cannot hold, such as inf, is null)."""
        data = asdict(self)
        data["value"] = self.value if math.isfinite(self.value) else None
        data["at"] = self.at.isoformat()
        return data


class LogAction:
    """Write the alert to the ``tidal.alerts`` logger: warning when firing, info when
    resolved."""

    name = "log"

    def __call__(self, alert: Alert) -> dict[str, Any]:
        level = logging.INFO if alert.kind == "resolved" else logging.WARNING
        logger.log(level, "alert %s %s: %s", alert.rule, alert.kind, alert.message)
        return {"action": self.name, "ok": True}


def _url_parts(url: Any, what: str) -> tuple[str, str, int, str, str]:
    """(scheme, host, port, path, query) of a URL with nothing that could read differently
    to this check and to the HTTP client: no credentials, fragments, backslashes, spaces,
    non-ASCII, dot segments or encoded separators."""
    def refuse(why: str) -> WebhookNotAllowedError:
        return WebhookNotAllowedError(f"{what} {url!r} is refused: {why}", field="url")

    if not isinstance(url, str) or not url:
        raise refuse("it must be a non-empty string")
    if any(not 0x21 <= ord(c) <= 0x7E or c == "\\" for c in url):
        raise refuse("it holds a space, a backslash, a control or a non-ASCII character")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise refuse("only http and https URLs are allowed")
    if "@" in parts.netloc:
        raise refuse("credentials in the URL are not allowed (send them as headers)")
    if "#" in url:
        raise refuse("a fragment is not allowed")
    if not parts.hostname:
        raise refuse("it names no host")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise refuse("its port is not a number from 1 to 65535") from None
    path = parts.path or "/"
    lowered = path.lower()
    if ";" in path or "%2f" in lowered or "%5c" in lowered or "%00" in lowered:
        raise refuse("its path holds ';' or an encoded separator")
    if any(segment in (".", "..") for segment in unquote(path).split("/")):
        raise refuse("its path holds '.' or '..' segments")
    return scheme, parts.hostname, port, path, parts.query


def _allowed(entry: str) -> tuple[str, str, int, str]:
    scheme, host, port, path, query = _url_parts(entry, "webhook allow-list entry")
    if query:
        raise WebhookNotAllowedError(f"webhook allow-list entry {entry!r} is refused: an "
                                     "entry is a scheme, host, port and path prefix, without "
                                     "a query", field="allow")
    return scheme, host, port, path


def _under(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` or below it, segment-wise (/hooks does not allow
    /hooksevil)."""
    if path == prefix or prefix.endswith("/") and path.startswith(prefix):
        return True
    return path.startswith(prefix + "/")


class WebhookAction:
    """POST the alert as JSON to ``url``, which must be under one of ``allow``: entries like
    ``https://hooks.example.com/services/`` whose scheme, host and port must equal the URL's
    and whose path must be a prefix of its path. Redirects are not followed and proxies from
    the environment are not used, so the request goes where the check said it would."""

    name = "webhook"

    def __init__(self, url: str, *, allow: Sequence[str],
                 headers: Mapping[str, str] | None = None,
                 timeout: float = WEBHOOK_TIMEOUT) -> None:
        if importlib.util.find_spec("httpx") is None:
            raise missing_dependency("httpx", "monitoring", "webhook alerts")
        if isinstance(allow, str) or not isinstance(allow, Sequence) or not allow:
            raise WebhookNotAllowedError(
                "a webhook needs an allow-list: a list of URL prefixes such as "
                "'https://hooks.example.com/services/' that alerts may be sent under",
                field="allow")
        entries = [_allowed(entry) for entry in allow]
        scheme, host, port, path, _ = _url_parts(url, "webhook URL")
        matched = next((e for e in entries if e[:3] == (scheme, host, port)
                        and _under(path, e[3])), None)
        if matched is None:
            raise WebhookNotAllowedError(
                f"webhook URL {url!r} is not under the allow-list ({', '.join(allow)}); "
                "add its scheme, host, port and path prefix there", field="url")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or \
                not 0 < timeout <= 30:
            raise InvalidValueError(f"timeout must be a number of seconds in (0, 30], got "
                                    f"{timeout!r}", field="timeout")
        self.url = url
        self.headers = dict(headers or {})
        self.timeout = float(timeout)
        # Recorded instead of the URL, whose tail is often a secret (Slack, Teams hooks).
        self.target = f"{matched[0]}://{matched[1]}:{matched[2]}{matched[3]}"

    def __call__(self, alert: Alert) -> dict[str, Any]:
        import httpx

        outcome: dict[str, Any] = {"action": self.name, "target": self.target}
        try:
            response = httpx.post(self.url, json=alert.to_dict(), headers=self.headers,
                                  timeout=self.timeout, follow_redirects=False, trust_env=False)
        except httpx.HTTPError as error:
            return {**outcome, "ok": False, "error": f"{type(error).__name__}: {error}"}
        ok = 200 <= response.status_code < 300
        outcome.update(ok=ok, status=response.status_code)
        if not ok:
            outcome["error"] = f"HTTP {response.status_code}"
        return outcome


def webhook(url: str, *, allow: Sequence[str], headers: Mapping[str, str] | None = None,
            timeout: float = WEBHOOK_TIMEOUT) -> WebhookAction:
    """A webhook action; see ``WebhookAction`` for the allow-list."""
    return WebhookAction(url, allow=allow, headers=headers, timeout=timeout)


Action = LogAction | WebhookAction | Callable[[Alert], Any]


def _action_name(action: Any) -> str:
    return getattr(action, "name", None) or getattr(action, "__name__", None) or \
        type(action).__name__


def _run_action(action: Any, alert: Alert) -> dict[str, Any]:
    """An action's outcome; an exception is recorded, never raised."""
    try:
        result = action(alert)
    except Exception as error:
        logger.warning("alert %s: action %s failed: %s", alert.rule, _action_name(action),
                       error)
        return {"action": _action_name(action), "ok": False,
                "error": f"{type(error).__name__}: {error}"}
    if isinstance(action, LogAction | WebhookAction):
        if not result["ok"]:
            logger.warning("alert %s: %s to %s failed: %s", alert.rule, action.name,
                           result.get("target"), result["error"])
        return result
    return {"action": _action_name(action), "ok": True}


# -- rules ------------------------------------------------------------------------------------

def _span(value: Any, name: str, *, zero: bool) -> timedelta | None:
    if value is None or (zero and value in (0, timedelta(0))):
        return None if value is None else timedelta(0)
    return parse_duration(value, name)


@dataclass(frozen=True)
class AlertRule:
    """Fire when ``figure`` ``op`` ``threshold`` holds for ``for_`` (a timedelta, seconds or
    "5m"; 0: at once) on a subject matching ``subject`` (a glob, None: all); notify again
    every ``cooldown`` while it fires (None: never) and when it resolves (unless
    ``notify_resolved`` is False). ``actions``: "log", webhooks (``webhook(...)``) and
    callables taking an ``Alert``."""

    name: str
    figure: str
    op: str
    threshold: float
    for_: timedelta | float | str = timedelta(0)
    cooldown: timedelta | float | str | None = DEFAULT_COOLDOWN
    actions: Sequence[Action | str] = ("log",)
    subject: str | None = None
    notify_resolved: bool = True

    def __post_init__(self) -> None:
        check_name(self.name, what="alert rule", field="name")
        if not isinstance(self.figure, str) or not self.figure:
            raise InvalidValueError(f"figure must name a figure such as error_rate or "
                                    f"drift_share, got {self.figure!r}", field="figure")
        if self.op not in OPS:
            raise InvalidValueError(f"op {self.op!r} is not a comparison; use one of "
                                    f"{' '.join(OPS)}", field="op")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int | float) \
                or not math.isfinite(self.threshold):
            raise InvalidValueError(f"threshold must be a finite number, got "
                                    f"{self.threshold!r}", field="threshold")
        if self.subject is not None and not isinstance(self.subject, str):
            raise InvalidValueError(f"subject must be a glob pattern such as 'web*', got "
                                    f"{self.subject!r}", field="subject")
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "for_", _span(self.for_, "for_", zero=True))
        object.__setattr__(self, "cooldown", _span(self.cooldown, "cooldown", zero=False))
        if isinstance(self.actions, str) or not isinstance(self.actions, Iterable):
            raise InvalidValueError("actions must be a list of 'log', webhooks and callables",
                                    field="actions")
        actions = []
        for action in self.actions:
            if action == "log":
                action = LogAction()
            elif isinstance(action, str) or not callable(action):
                raise InvalidValueError(f"action {action!r} is not 'log', a webhook or a "
                                        "callable; make webhooks with webhook(url, allow=...)",
                                        field="actions")
            actions.append(action)
        object.__setattr__(self, "actions", tuple(actions))

    def watches(self, figure: Figure) -> bool:
        return figure.name == self.figure and (
            self.subject is None or fnmatchcase(figure.subject, self.subject))


# -- evaluation -------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlertEvent:
    """One notification: firing, repeat or resolved, with each action's outcome."""

    id: int
    rule: str
    subject: str
    kind: str
    value: float | None
    message: str
    actions: list[dict[str, Any]] = field(default_factory=list)
    at: datetime | None = None


@dataclass(frozen=True)
class AlertState:
    """Where one (rule, subject) stands: firing or not, since when, how often notified."""

    rule: str
    subject: str
    firing: bool
    pending_since: datetime | None
    fired_at: datetime | None
    resolved_at: datetime | None
    last_notified_at: datetime | None
    notifications: int
    last_value: float | None
    updated_at: datetime


def _ms(moment: datetime | None) -> int:
    if moment is None:
        moment = datetime.now(UTC)
    if not isinstance(moment, datetime):
        raise InvalidValueError(f"now must be a datetime, got {type(moment).__name__}",
                                field="now")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _message(rule: AlertRule, figure: Figure, kind: str, notifications: int) -> str:
    where = f"{figure.name} of {figure.subject}" if figure.subject else figure.name
    if kind == "resolved":
        return f"{where} is {figure.value:.6g}, no longer {rule.op} {rule.threshold:g}"
    held = f" for {rule.for_}" if rule.for_ else ""
    text = f"{where} is {figure.value:.6g} {rule.op} {rule.threshold:g}{held}"
    return text if kind == "firing" else f"{text} (still firing, notice {notifications})"


def _step(rule: AlertRule, state: dict[str, Any], holds: bool, at: int) -> str | None:
    """Move one state row (a dict, changed in place) to ``at``; the event it causes."""
    if holds and not state["firing"]:
        since = state["pending_since"] if state["pending_since"] is not None else at
        if at - since < rule.for_ // timedelta(milliseconds=1):
            state["pending_since"] = since
            return None
        state.update(firing=True, pending_since=None, fired_at=at, last_notified_at=at,
                     notifications=1)
        return "firing"
    if holds:
        cooldown = rule.cooldown
        if cooldown is None or at - state["last_notified_at"] < cooldown // timedelta(
                milliseconds=1):
            return None
        state.update(last_notified_at=at, notifications=state["notifications"] + 1)
        return "repeat"
    state["pending_since"] = None
    if state["firing"]:
        state.update(firing=False, resolved_at=at)
        return "resolved"
    return None


@dataclass
class _Notice:
    rule: AlertRule
    alert: Alert
    event_id: int
    send: bool


def _checks(rules: Iterable[AlertRule], figures: Iterable[Figure]
            ) -> list[tuple[AlertRule, Figure]]:
    rules, figures = list(rules), list(figures)
    for rule in rules:
        if not isinstance(rule, AlertRule):
            raise InvalidValueError(f"rules must be AlertRule objects, got "
                                    f"{type(rule).__name__}", field="rules")
    names = [rule.name for rule in rules]
    if len(set(names)) != len(names):
        raise InvalidValueError(f"two rules share a name ({sorted(names)}); names key their "
                                "state, so each must be unique", field="rules")
    seen = set()
    for figure in figures:
        if not isinstance(figure, Figure):
            raise InvalidValueError(f"figures must be Figure objects, got "
                                    f"{type(figure).__name__}", field="figures")
        if (figure.name, figure.subject) in seen:
            raise InvalidValueError(f"figure {figure.name} of {figure.subject!r} is given "
                                    "twice", field="figures")
        seen.add((figure.name, figure.subject))
    return sorted(((rule, figure) for rule in rules for figure in figures
                   if rule.watches(figure) and not math.isnan(figure.value)),
                  key=lambda pair: (pair[0].name, pair[1].subject))


def _decide(conn: Connection, checks: list[tuple[AlertRule, Figure]], at: int
            ) -> list[_Notice]:
    """Move every checked state and append its events, in one transaction; rows are locked
    (PostgreSQL) or the database is (SQLite), so concurrent evaluators notify once."""
    holding = [(rule, figure) for rule, figure in checks
               if OPS[rule.op](figure.value, rule.threshold)]
    if holding:
        conn.execute(upsert(conn, alert_states).on_conflict_do_nothing(), [
            {"rule": rule.name, "subject": figure.subject, "firing": False,
             "notifications": 0, "updated_at": at} for rule, figure in holding])
    rule_names = sorted({rule.name for rule, _ in checks})
    rows = conn.execute(select(alert_states).where(alert_states.c.rule.in_(rule_names))
                        .order_by(alert_states.c.rule, alert_states.c.subject)
                        .with_for_update()).mappings().all()
    states = {(row["rule"], row["subject"]): dict(row) for row in rows}
    notices = []
    for rule, figure in checks:
        state = states.get((rule.name, figure.subject))
        if state is None:  # never held: nothing to remember
            continue
        holds = OPS[rule.op](figure.value, rule.threshold)
        kind = _step(rule, state, holds, at)
        state.update(last_value=figure.value, updated_at=at)
        conn.execute(update(alert_states).where(
            (alert_states.c.rule == rule.name) & (alert_states.c.subject == figure.subject))
            .values({k: v for k, v in state.items() if k not in ("rule", "subject")}))
        if kind is None:
            continue
        send = kind != "resolved" or rule.notify_resolved
        alert = Alert(rule.name, figure.subject, figure.name, figure.value, rule.op,
                      rule.threshold, "resolved" if kind == "resolved" else "firing", kind,
                      _message(rule, figure, kind, state["notifications"]), _time(at))
        pending = [{"action": _action_name(a), "outcome": "pending"} for a in rule.actions]
        event_id = conn.execute(insert(alert_events).values(
            rule=rule.name, subject=figure.subject, kind=kind, value=figure.value,
            message=alert.message, actions=json.dumps(pending if send else []), at=at)
        ).inserted_primary_key[0]
        notices.append(_Notice(rule, alert, int(event_id), send))
    return notices


def _notify(notices: list[_Notice]) -> dict[int, list[dict[str, Any]]]:
    """Run every action of every notice: webhooks concurrently, the rest in order."""
    outcomes: dict[int, list[Any]] = {n.event_id: [None] * len(n.rule.actions) if n.send
                                      else [] for n in notices}
    with ThreadPoolExecutor(8) as pool:
        calls = []
        for notice in (n for n in notices if n.send):
            for position, action in enumerate(notice.rule.actions):
                if isinstance(action, WebhookAction):
                    calls.append((notice.event_id, position,
                                  pool.submit(_run_action, action, notice.alert)))
                else:
                    outcomes[notice.event_id][position] = _run_action(action, notice.alert)
        for event_id, position, future in calls:
            outcomes[event_id][position] = future.result()
    return outcomes


def evaluate(rules: Iterable[AlertRule], figures: Iterable[Figure], *,
             now: datetime | None = None,
             workspace: Workspace | None = None) -> list[AlertEvent]:
    """Check ``figures`` against ``rules`` at ``now`` (default: the clock) and notify; the
    events this evaluation caused, with their actions' outcomes.

    A figure that is NaN, or a subject absent from ``figures``, leaves its state as it was:
    no data is not a recovery.
    """
    from tidal.store.workspace import current_workspace

    checks = _checks(rules, figures)
    at = _ms(now)
    if not checks:
        return []
    ws = workspace or current_workspace()
    notices = ws.db.write(lambda conn: _decide(conn, checks, at))
    if not notices:
        return []
    outcomes = _notify(notices)

    def record(conn: Connection) -> None:
        for event_id, done in outcomes.items():
            conn.execute(update(alert_events).where(alert_events.c.id == event_id)
                         .values(actions=json.dumps(done)))

    ws.db.write(record)
    return [AlertEvent(n.event_id, n.alert.rule, n.alert.subject, n.alert.kind,
                       n.alert.value, n.alert.message, outcomes[n.event_id], n.alert.at)
            for n in notices]


# -- reading ----------------------------------------------------------------------------------

def list_alert_events(*, rule: str | None = None, subject: str | None = None,
                      kind: str | None = None, since: datetime | None = None,
                      limit: int = 100, workspace: Workspace | None = None
                      ) -> list[AlertEvent]:
    """Alert events, newest first, optionally of one rule, subject and kind, at or after
    ``since``; at most ``limit``."""
    from tidal.store.workspace import current_workspace

    if kind is not None and kind not in KINDS:
        raise InvalidValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}",
                                field="kind")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100_000:
        raise InvalidValueError(f"limit must be an integer from 1 to 100000, got {limit!r}",
                                field="limit")
    query = select(alert_events).order_by(alert_events.c.id.desc()).limit(limit)
    if rule is not None:
        query = query.where(alert_events.c.rule == rule)
    if subject is not None:
        query = query.where(alert_events.c.subject == subject)
    if kind is not None:
        query = query.where(alert_events.c.kind == kind)
    if since is not None:
        query = query.where(alert_events.c.at >= _ms(since))
    with (workspace or current_workspace()).db.read() as conn:
        rows = conn.execute(query).mappings().all()
    return [AlertEvent(row["id"], row["rule"], row["subject"], row["kind"], row["value"],
                       row["message"], json.loads(row["actions"]), _time(row["at"]))
            for row in rows]


def list_alert_states(*, rule: str | None = None, firing: bool | None = None,
                      workspace: Workspace | None = None) -> list[AlertState]:
    """The state of every (rule, subject) that has ever held, by rule and subject."""
    from tidal.store.workspace import current_workspace

    query = select(alert_states).order_by(alert_states.c.rule, alert_states.c.subject)
    if rule is not None:
        query = query.where(alert_states.c.rule == rule)
    if firing is not None:
        query = query.where(alert_states.c.firing == bool(firing))
    with (workspace or current_workspace()).db.read() as conn:
        rows = conn.execute(query).mappings().all()
    times = ("pending_since", "fired_at", "resolved_at", "last_notified_at", "updated_at")
    return [AlertState(**{k: (_time(v) if k in times else v) for k, v in row.items()})
            for row in rows]
