"""Run search: a small filter language compiled to SQL, never evaluated in Python.

Filter grammar (keywords are case-insensitive)::

    expr       := and_expr (OR and_expr)*
    and_expr   := unary (AND unary)*
    unary      := NOT unary | '(' expr ')' | comparison
    comparison := field op literal | field [NOT] IN '(' literal, ... ')'
                | field [NOT] LIKE|ILIKE 'pattern' | field IS [NOT] NULL
    field      := metrics.KEY | params.KEY | tags.KEY | [attributes.]ATTRIBUTE
    op         := = | == | != | <> | < | <= | > | >=

KEY may be quoted with backticks (metrics.`val loss`). Metrics compare as numbers against the
run's latest value; params and tags compare as text (=, !=, LIKE, ILIKE, IN). Order-by items
are ``field [ASC|DESC]``; runs without the value sort last.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    not_,
    null,
    nullslast,
    or_,
    select,
    true,
    union_all,
)

from tidal.errors import ExperimentNotFoundError, FilterSyntaxError, InvalidValueError
from tidal.store.workspace import Workspace
from tidal.tracking.schema import experiments, latest_metrics, params, runs, tags

if TYPE_CHECKING:
    import pandas as pd

MAX_LIMIT = 1_000_000
_CHUNK = 5000

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<backtick>`[^`]*`)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![A-Za-z_]))
  | (?P<op><=|>=|!=|<>|==|=|<|>)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.\-/:]*)
""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "in", "like", "ilike", "is", "null", "asc", "desc"}

_PREFIXES = {
    "metrics": "metric", "metric": "metric",
    "params": "param", "param": "param",
    "tags": "tag", "tag": "tag",
    "attributes": "attribute", "attribute": "attribute", "attr": "attribute", "run": "attribute",
}
_ATTRIBUTES: dict[str, Any] = {
    "id": runs.c.id, "run_id": runs.c.id, "name": runs.c.name, "run_name": runs.c.name,
    "status": runs.c.status, "parent_id": runs.c.parent_id, "user": runs.c.user,
    "host": runs.c.host, "git_commit": runs.c.git_commit, "experiment": experiments.c.name,
    "start_time": runs.c.start_time, "end_time": runs.c.end_time, "cost": runs.c.cost,
    "cpu_seconds": runs.c.cpu_seconds, "peak_rss_bytes": runs.c.peak_rss_bytes,
}
_NUMERIC_ATTRIBUTES = {"start_time", "end_time", "cost", "cpu_seconds", "peak_rss_bytes"}
_TIME_ATTRIBUTES = {"start_time", "end_time"}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int

    @property
    def keyword(self) -> str | None:
        lowered = self.text.lower()
        return lowered if self.kind == "ident" and lowered in _KEYWORDS else None


@dataclass(frozen=True)
class Field:
    kind: str  # metric | param | tag | attribute
    key: str
    pos: int


def tokenize(expression: str) -> list[Token]:
    tokens = []
    pos = 0
    while pos < len(expression):
        match = _TOKEN.match(expression, pos)
        if match is None:
            raise FilterSyntaxError(f"unexpected character {expression[pos]!r}",
                                    expression=expression, position=pos)
        if match.lastgroup != "ws":
            tokens.append(Token(match.lastgroup or "", match.group(), pos))
        pos = match.end()
    tokens.append(Token("end", "", len(expression)))
    return tokens


class _Parser:
    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = tokenize(expression)
        self.i = 0

    # -- helpers ---------------------------------------------------------------------------

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def error(self, message: str, token: Token | None = None) -> FilterSyntaxError:
        token = token or self.peek()
        return FilterSyntaxError(message, expression=self.expression, position=token.pos)

    def expect_keyword(self, *words: str) -> Token:
        token = self.take()
        if token.keyword not in words:
            found = "the end of the filter" if token.kind == "end" else repr(token.text)
            raise self.error(f"expected {' or '.join(w.upper() for w in words)}, found {found}",
                             token)
        return token

    # -- fields and literals ---------------------------------------------------------------

    def field(self) -> Field:
        token = self.take()
        if token.kind != "ident" or token.keyword:
            found = "the end of the filter" if token.kind == "end" else repr(token.text)
            raise self.error(
                f"expected a field such as metrics.auc, params.model or status, found {found}",
                token)
        prefix, dot, rest = token.text.partition(".")
        if not dot:
            if prefix.lower() in _ATTRIBUTES:
                return Field("attribute", prefix.lower(), token.pos)
            raise self.error(
                f"unknown field {token.text!r}; use metrics.KEY, params.KEY, tags.KEY or an "
                f"attribute: {', '.join(sorted(_ATTRIBUTES))}", token)
        kind = _PREFIXES.get(prefix.lower())
        if kind is None:
            raise self.error(f"unknown field prefix {prefix!r}; use metrics., params., tags. "
                             "or attributes.", token)
        if not rest:
            quoted = self.take()
            if quoted.kind != "backtick":
                raise self.error(f"expected a key after {token.text!r}", quoted)
            rest = quoted.text[1:-1]
            if not rest:
                raise self.error("the quoted key is empty", quoted)
        if kind == "attribute":
            if rest.lower() not in _ATTRIBUTES:
                raise self.error(f"unknown attribute {rest!r}; known attributes: "
                                 f"{', '.join(sorted(_ATTRIBUTES))}", token)
            rest = rest.lower()
        return Field(kind, rest, token.pos)

    def literal(self) -> Token:
        token = self.take()
        if token.kind not in ("string", "number"):
            found = "the end of the filter" if token.kind == "end" else repr(token.text)
            raise self.error(f"expected a value (a number or a quoted string), found {found}",
                             token)
        return token

    # -- grammar ---------------------------------------------------------------------------

    def parse(self) -> ColumnElement[bool]:
        clause = self.or_expr()
        if self.peek().kind != "end":
            raise self.error(f"expected AND, OR or the end of the filter, found "
                             f"{self.peek().text!r}")
        return clause

    def or_expr(self) -> ColumnElement[bool]:
        parts = [self.and_expr()]
        while self.peek().keyword == "or":
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else or_(*parts)

    def and_expr(self) -> ColumnElement[bool]:
        parts = [self.unary()]
        while self.peek().keyword == "and":
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else and_(*parts)

    def unary(self) -> ColumnElement[bool]:
        token = self.peek()
        if token.keyword == "not":
            self.take()
            return not_(self.unary())
        if token.kind == "lparen":
            self.take()
            inner = self.or_expr()
            if self.peek().kind != "rparen":
                raise self.error("expected ')' to close the '(' opened here", token)
            self.take()
            return inner
        return self.comparison()

    def comparison(self) -> ColumnElement[bool]:
        field = self.field()
        token = self.take()
        negate = False
        if token.keyword == "is":
            negate = self.peek().keyword == "not"
            if negate:
                self.take()
            self.expect_keyword("null")
            present = _present(field)
            return present if negate else not_(present)
        if token.keyword == "not":
            negate = True
            token = self.take()
            if token.keyword not in ("in", "like", "ilike"):
                raise self.error("expected IN, LIKE or ILIKE after NOT", token)
        if token.keyword == "in":
            if self.peek().kind != "lparen":
                raise self.error("expected '(' after IN")
            self.take()
            values = [self.literal()]
            while self.peek().kind == "comma":
                self.take()
                values.append(self.literal())
            if self.peek().kind != "rparen":
                raise self.error("expected ',' or ')' in the IN list")
            self.take()
            clause = _compare(self, field, "in", values, token)
        elif token.keyword in ("like", "ilike"):
            value = self.literal()
            if value.kind != "string":
                raise self.error(f"{token.text.upper()} needs a quoted pattern", value)
            clause = _compare(self, field, token.keyword, [value], token)
        elif token.kind == "op":
            clause = _compare(self, field, token.text, [self.literal()], token)
        else:
            found = "the end of the filter" if token.kind == "end" else repr(token.text)
            raise self.error(f"expected a comparison (=, !=, <, <=, >, >=, IN, LIKE, ILIKE, "
                             f"IS NULL) after the field, found {found}", token)
        return not_(clause) if negate else clause

    def order_item(self) -> tuple[Field, bool]:
        field = self.field()
        descending = False
        if self.peek().keyword in ("asc", "desc"):
            descending = self.take().keyword == "desc"
        if self.peek().kind != "end":
            raise self.error("expected ASC, DESC or the end of the order-by item")
        return field, descending


def _unquote(token: Token) -> str:
    quote = token.text[0]
    return token.text[1:-1].replace(quote * 2, quote)


def _number(parser: _Parser, field: Field, token: Token) -> float:
    if token.kind != "number":
        raise parser.error(f"{field.kind}s.{field.key} holds numbers; compare it with a number",
                           token)
    return float(token.text)


def _time_value(parser: _Parser, token: Token) -> int:
    if token.kind == "number":
        return int(float(token.text))
    try:
        moment = datetime.fromisoformat(_unquote(token))
    except ValueError:
        raise parser.error("expected milliseconds since the epoch or an ISO date such as "
                           "'2026-11-01' or '2026-11-01T12:00:00'", token) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


_OPS = {
    "=": lambda c, v: c == v, "==": lambda c, v: c == v, "!=": lambda c, v: c != v,
    "<>": lambda c, v: c != v, "<": lambda c, v: c < v, "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v, ">=": lambda c, v: c >= v,
}


def _runs_where(table: Any, key: str, *conditions: Any) -> ColumnElement[bool]:
    """Runs with a row for ``key`` in a key-value table that meets the conditions.

    An uncorrelated IN (semi-join) rather than a correlated EXISTS: the database can then
    start from the (key, value) indexes instead of probing every run in turn.
    """
    return runs.c.id.in_(select(table.c.run_id).where(table.c.key == key, *conditions))


def _present(field: Field) -> ColumnElement[bool]:
    if field.kind == "attribute":
        return _ATTRIBUTES[field.key].is_not(None)
    table = {"metric": latest_metrics, "param": params, "tag": tags}[field.kind]
    return _runs_where(table, field.key)


def _compare(parser: _Parser, field: Field, op: str, values: list[Token],
             op_token: Token) -> ColumnElement[bool]:
    if field.kind == "metric":
        if op in ("like", "ilike"):
            raise parser.error("metrics are numbers; LIKE and ILIKE apply to params, tags "
                               "and text attributes", op_token)
        column = latest_metrics.c.value
        numbers = [_number(parser, field, v) for v in values]
        test = column.in_(numbers) if op == "in" else _OPS[op](column, numbers[0])
        return _runs_where(latest_metrics, field.key, latest_metrics.c.is_nan.is_(False), test)
    if field.kind == "attribute" and field.key in _NUMERIC_ATTRIBUTES:
        if op in ("like", "ilike"):
            raise parser.error(f"{field.key} is a number; LIKE applies to text", op_token)
        column = _ATTRIBUTES[field.key]
        convert = (lambda t: _time_value(parser, t)) if field.key in _TIME_ATTRIBUTES \
            else (lambda t: _number(parser, field, t))
        numbers = [convert(v) for v in values]
        return column.in_(numbers) if op == "in" else _OPS[op](column, numbers[0])
    # text: params, tags and text attributes; a number literal is taken as written
    texts = [_unquote(v) if v.kind == "string" else v.text for v in values]
    if op in ("<", "<=", ">", ">="):
        raise parser.error(f"{field.kind}s are text; compare them with =, !=, IN, LIKE or "
                           "ILIKE (log a metric to compare numbers)", op_token)
    if field.kind == "attribute":
        column = _ATTRIBUTES[field.key]
    else:
        column = (params if field.kind == "param" else tags).c.value
    if op == "in":
        test = column.in_(texts)
    elif op == "like":
        test = column.like(texts[0])
    elif op == "ilike":
        test = column.ilike(texts[0])
    else:
        test = _OPS[op](column, texts[0])
    if field.kind == "attribute":
        return test
    return _runs_where(params if field.kind == "param" else tags, field.key, test)


def compile_filter(expression: str) -> ColumnElement[bool]:
    """Compile a filter expression to a SQL boolean over the runs table."""
    if not isinstance(expression, str):
        raise InvalidValueError(f"filter must be a string, got {type(expression).__name__}",
                                field="filter")
    if not expression.strip():
        return true()
    return _compile_filter(expression)


@functools.lru_cache(maxsize=256)
def _compile_filter(expression: str) -> ColumnElement[bool]:
    # SQL expressions are immutable, so a dashboard repeating one search reuses the parse.
    return _Parser(expression).parse()


def compile_order_by(items: Sequence[str] | str) -> list[Any]:
    if isinstance(items, str):
        items = [items]
    for item in items:
        if not isinstance(item, str):
            raise InvalidValueError(f"order_by items must be strings, got {item!r}",
                                    field="order_by")
    return list(_compile_order_by(tuple(items)))


@functools.lru_cache(maxsize=256)
def _compile_order_by(items: tuple[str, ...]) -> tuple[Any, ...]:
    clauses = []
    for item in items:
        field, descending = _Parser(item).order_item()
        if field.kind == "attribute":
            column: Any = _ATTRIBUTES[field.key]
        elif field.kind == "metric":
            column = (select(latest_metrics.c.value)
                      .where(latest_metrics.c.run_id == runs.c.id,
                             latest_metrics.c.key == field.key,
                             latest_metrics.c.is_nan.is_(False))
                      .scalar_subquery())
        else:
            table = params if field.kind == "param" else tags
            column = (select(table.c.value)
                      .where(table.c.run_id == runs.c.id, table.c.key == field.key)
                      .scalar_subquery())
        clauses.append(nullslast(column.desc() if descending else column.asc()))
    return tuple(clauses)


_BASE_COLUMNS = ["run_id", "experiment", "name", "status", "parent_id", "start_time",
                 "end_time", "user", "git_commit", "cost"]


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or not 1 <= limit <= MAX_LIMIT):
        raise InvalidValueError(f"limit must be an integer from 1 to {MAX_LIMIT}, or None for "
                                f"all runs; got {limit!r}", field="limit")


def _check_experiments(conn: Connection, names: list[str]) -> None:
    found = set(conn.execute(select(experiments.c.name)
                             .where(experiments.c.name.in_(names))).scalars())
    missing = [name for name in names if name not in found]
    if missing:
        known = conn.execute(select(experiments.c.name).order_by(experiments.c.name)
                             .limit(20)).scalars().all()
        raise ExperimentNotFoundError(
            f"no experiment named {missing[0]!r}; known experiments: {known or 'none yet'}",
            field="experiment")


_NAT = -(2**63)  # NumPy's NaT as int64


def _fetch_tuples(conn: Connection, query: Any) -> list[tuple[Any, ...]]:
    """All rows as the driver's plain tuples: SQLAlchemy's Row objects cost about a
    microsecond each, which a search returning thousands of detail rows cannot afford."""
    result = conn.execute(query)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


@functools.lru_cache(maxsize=4)
def _details_statement(dialect: str) -> Any:
    """One statement for the params, tags and latest metrics of a list of runs, built once per
    dialect with the run ids as a single parameter (a JSON array on SQLite, an array on
    PostgreSQL) rather than one bound parameter per id, which SQLAlchemy would expand anew
    on every call."""
    if dialect == "sqlite":
        ids = bindparam("ids", type_=Text)
        id_list = select(literal_column("value")).select_from(func.json_each(ids))

        def member(column: Any) -> Any:
            return column.in_(id_list)
    else:
        from sqlalchemy.dialects.postgresql import ARRAY

        ids = bindparam("ids", type_=ARRAY(Text))

        def member(column: Any) -> Any:
            return column == any_(ids)

    text_null, number_null = cast(null(), Text), cast(null(), Float)
    no = literal(False)
    return union_all(
        select(literal("params"), params.c.run_id, params.c.key, params.c.value,
               number_null, no).where(member(params.c.run_id)),
        select(literal("tags"), tags.c.run_id, tags.c.key, tags.c.value,
               number_null, no).where(member(tags.c.run_id)),
        select(literal("metrics"), latest_metrics.c.run_id, latest_metrics.c.key, text_null,
               latest_metrics.c.value, latest_metrics.c.is_nan)
        .where(member(latest_metrics.c.run_id)),
    )


def _fetch_details(conn: Connection, ids: list[str]) -> list[tuple[Any, ...]]:
    statement = _details_statement(conn.dialect.name)
    value: Any = json.dumps(ids) if conn.dialect.name == "sqlite" else ids
    result = conn.execute(statement, {"ids": value})
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def search_runs(ws: Workspace, experiment: str | Sequence[str] | None = None,
                filter: str | None = None, order_by: Sequence[str] | str | None = None,
                limit: int | None = 100) -> pd.DataFrame:
    """Matching runs as a DataFrame: one row per run, then params.*, metrics.*, tags.* columns.

    Filtering, ordering and the limit happen in SQL; then one more query fetches the details
    of just the runs returned, all in one read transaction.
    """
    import numpy as np
    import pandas as pd

    _check_limit(limit)
    query = (select(runs.c.id, experiments.c.name, runs.c.name, runs.c.status,
                    runs.c.parent_id, runs.c.start_time, runs.c.end_time, runs.c.user,
                    runs.c.git_commit, runs.c.cost)
             .join(experiments, experiments.c.id == runs.c.experiment_id))
    names = None
    if experiment is not None:
        names = [experiment] if isinstance(experiment, str) else list(experiment)
        query = query.where(experiments.c.name.in_(names))
    if filter:
        query = query.where(compile_filter(filter))
    query = query.order_by(*compile_order_by(order_by or []), runs.c.start_time.desc(),
                           runs.c.id)
    if limit is not None:
        query = query.limit(limit)
    details: list[Any] = []
    with ws.db.read() as conn:
        if names is not None:
            _check_experiments(conn, names)
        rows = _fetch_tuples(conn, query)
        ids = [row[0] for row in rows]
        for start in range(0, len(ids), _CHUNK):
            details += _fetch_details(conn, ids[start:start + _CHUNK])

    count = len(rows)
    position = {run_id: i for i, run_id in enumerate(ids)}
    data: dict[str, Any] = {}
    for index, name in enumerate(_BASE_COLUMNS):
        data[name] = np.array([row[index] for row in rows], dtype=object)
    for name in ("start_time", "end_time"):
        millis = np.array([_NAT if v is None else v for v in data[name]], dtype="int64")
        data[name] = pd.DatetimeIndex(millis.astype("datetime64[ms]")).tz_localize("UTC")
    data["cost"] = np.array(data["cost"], dtype="float64")
    columns: dict[str, dict[str, Any]] = {"params": {}, "metrics": {}, "tags": {}}
    for kind, run_id, key, text, number, is_nan in details:
        column = columns[kind].get(key)
        if column is None:
            column = columns[kind][key] = (np.full(count, np.nan) if kind == "metrics"
                                           else np.full(count, None, dtype=object))
        column[position[run_id]] = text if text is not None else (
            np.nan if is_nan else number)
    for kind in ("params", "metrics", "tags"):
        for key in sorted(columns[kind]):
            data[f"{kind}.{key}"] = columns[kind][key]
    return pd.DataFrame(data, copy=False)
