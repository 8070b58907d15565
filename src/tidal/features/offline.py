"""Point-in-time correct training data: the latest feature values at or before each entity row.

For every entity row (join keys plus an event timestamp) and every requested feature view,
DuckDB's ASOF LEFT JOIN finds the view's latest row for those keys whose event timestamp is at
or before the entity row's; a value older than the view's TTL comes back as null. Entity rows
are never dropped, and their order is kept. A value stamped after the entity row can never be
returned.

Entity rows: a pandas DataFrame, an Arrow table, or a Parquet path or glob that DuckDB reads
itself, under a memory limit and spilling to disk, so that they need not fit in memory. Either
way they reach DuckDB as one relation, with their position (for files: file name order, then
row number) to restore their order. With ``to=`` the result is streamed to a Parquet file.

Transforms: a view's ``transform`` is a DuckDB SELECT over its source, which it calls
``source``; the declared columns and types are checked on its output, and retrieval and
materialization both read the transformed rows. It is checked to be that one read-only
SELECT before it runs (``transform.py``), and every query here runs on a connection that can
read only the views' sources and the entity rows, and write only the result (``sandbox.py``).

Ties (rows of a view that share keys and an event timestamp): the latest ``created_timestamp``
wins (a null one counts as oldest), then the row that comes last in the source (files in name
order, then row number). ``source`` carries each row's position as the columns
``__source_file`` and ``__source_row``; a transform that keeps them (``SELECT *, ...``, or by
name) keeps this rule. When a transform drops them, position is unknown and ties are broken by
the feature values themselves, greatest first in declaration order (nulls lowest): still one
answer for the same data whatever the row order, but not "the last row".

Ties cost little. A source of local files is checked for them once per version of its files
(names, sizes, modification times); without any, the ASOF join runs on the event time alone,
as a hand-written one would. With ties, with remote files, or with a transform (which may
read more than its source, so its output is never taken to be free of them), each row carries
an ordering key (event time, then the tie breakers) and the ASOF join matches on that key,
landing on the winner directly; only the value-based rule needs a window to deduplicate first.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from tidal.errors import InvalidValueError
from tidal.features.definitions import TYPES, FeatureView
from tidal.features.sandbox import connect, normalise
from tidal.features.transform import checked_transform

ROW = "__tidal_row"
FILE = "__tidal_file"
SOURCE_FILE = "__source_file"
SOURCE_ROW = "__source_row"
_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
            "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL")
#: A row's position as one number: file index times this, plus its row number in the file.
_ROWS_PER_FILE = 1 << 40
_LAST = "9223372036854775807"  # the largest BIGINT
_TS = "<entity time>"  # stands for the entity row's time in a _Rows probe


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _is_time(duck_type: str) -> bool:
    return duck_type.upper().startswith("TIMESTAMP") or duck_type.upper() == "DATE"


def _micros(timestamp: str) -> str:
    """Microseconds since the epoch, infinities clamped to the ends (epoch_us gives null)."""
    return (f"coalesce(epoch_us({timestamp}), CASE WHEN {timestamp} > 'epoch'::TIMESTAMPTZ "
            f"THEN {_LAST} WHEN {timestamp} < 'epoch'::TIMESTAMPTZ THEN -{_LAST} - 1 END)")


def _compatible(declared: str, actual: str) -> bool:
    actual = actual.upper()
    if declared in ("float64", "float32", "int64", "int32"):
        return actual.startswith(_NUMERIC)
    if declared == "bool":
        return actual == "BOOLEAN"
    if declared == "timestamp":
        return _is_time(actual)
    return True  # anything can be read as a string


def _source_path(view: FeatureView) -> str:
    """The Parquet path or glob the view reads, normalised (see sandbox.normalise): resolved
    once per query, so that the connection is opened for exactly what the query reads."""
    from tidal.data.versions import DatasetVersion, get

    source = view.source
    if isinstance(source, str) and not any(c in source for c in "/*.:"):
        source = get(source)  # a dataset name: its latest version
    if isinstance(source, DatasetVersion):
        return normalise(str(source.local_path()))
    if isinstance(source, str):
        return normalise(source)
    raise InvalidValueError(f"feature view {view.name!r} has a source of type "
                            f"{type(source).__name__}; give a dataset name, a DatasetVersion "
                            "or a Parquet path", field="source")


def _files(conn: Any, path: str) -> tuple[tuple[str, int, int], ...] | None:
    """The local files a path or glob names, with their sizes and modification times; None
    for remote ones."""
    if "://" in path:
        return None
    found = []
    for (name,) in conn.execute("SELECT file FROM glob(?) ORDER BY file", [path]).fetchall():
        try:
            stat = os.stat(name)
        except OSError:
            return None
        found.append((name, stat.st_size, stat.st_mtime_ns))
    return tuple(found)


#: Whether a source holds two rows with the same keys and event time, by its files (name, size,
#: modification time), join keys and time column: such ties are rare, and a source without
#: them is joined on the event time alone, a narrower sort than the tie-breaking key.
_TIES: dict[tuple[Any, ...], bool] = {}
_TIES_KEPT = 1024


def _has_ties(conn: Any, view: FeatureView, path: str, source: str, check: bool) -> bool:
    """Whether the view's untransformed source may hold ties; checked (with ``check``) once per
    version of its files. A transform may read more than its source, so transformed rows always
    count as tied; so do remote files, whose check would cost more than the wider sort saved."""
    files = None if view.transform else _files(conn, path)
    if not files:
        return True
    cached = (files, view.join_keys, view.timestamp)
    tied = _TIES.get(cached)
    if tied is None and not check:
        return True
    if tied is None:
        keys = ", ".join(_q(k) for k in view.join_keys)
        ts = f"CAST({_q(view.timestamp)} AS TIMESTAMPTZ)"
        tied = conn.execute(f"SELECT count(*) > 0 FROM (SELECT 1 FROM ({source}) WHERE {ts} IS "
                            f"NOT NULL GROUP BY {keys}, {ts} HAVING count(*) > 1)").fetchall()[0][0]
        if len(_TIES) >= _TIES_KEPT:
            _TIES.clear()
        _TIES[cached] = tied
    return tied


def _columns(conn: Any, sql: str, failure: str, field: str) -> dict[str, str]:
    """A query's columns and their DuckDB types; its failure raised as ``failure: <error>``."""
    import duckdb

    try:
        return {row[0]: row[1] for row in conn.execute(f"DESCRIBE {sql}").fetchall()}
    except duckdb.Error as error:
        raise InvalidValueError(f"{failure}: {error}", field=field) from error


class _Rows(NamedTuple):
    """A view's rows as SQL: join keys, ``__ts``, the features, and ``__k``, an ordering key
    whose greatest value at or below ``probe`` (with the entity row's time for ``_TS``) is
    the row to return. ``deduplicated``: at most one row per (keys, ``__ts``) already."""

    sql: str
    probe: str
    deduplicated: bool


def _target(to: Any) -> Path:
    if not isinstance(to, (str, Path)) or not str(to) or "://" in str(to):
        raise InvalidValueError(f"to must be a local file path for the Parquet result, got "
                                f"{to!r}", field="to")
    path = Path(to).expanduser()
    if path.is_dir():
        raise InvalidValueError(f"to {str(path)!r} is a directory; give a file path",
                                field="to")
    if not path.parent.is_dir():
        raise InvalidValueError(f"the folder of to {str(path)!r} does not exist; create it "
                                "first", field="to")
    return path


class OfflineStore:
    """Historical retrieval over a set of feature views."""

    def __init__(self, views: Sequence[FeatureView]) -> None:
        self.views: dict[str, FeatureView] = {}
        for view in views:
            if not isinstance(view, FeatureView):
                raise InvalidValueError(f"expected FeatureView objects, got "
                                        f"{type(view).__name__}", field="views")
            if view.name in self.views:
                raise InvalidValueError(f"two feature views are named {view.name!r}",
                                        field="views")
            self.views[view.name] = view

    def _resolve(self, features: Sequence[str]) -> dict[str, list[str]]:
        if isinstance(features, str) or not features:
            raise InvalidValueError("features must be a non-empty list of 'view:feature' names",
                                    field="features")
        wanted: dict[str, list[str]] = {}
        for ref in features:
            view_name, sep, feature = ref.partition(":") if isinstance(ref, str) else ("", "", "")
            if not sep or not feature:
                raise InvalidValueError(f"feature {ref!r} is not of the form 'view:feature'",
                                        field="features")
            view = self.views.get(view_name)
            if view is None:
                raise InvalidValueError(f"unknown feature view {view_name!r} in {ref!r}; known "
                                        f"views: {sorted(self.views)}", field="features")
            view.feature(feature)  # raises for an unknown feature
            if feature not in wanted.setdefault(view_name, []):
                wanted[view_name].append(feature)
        return wanted

    def get_historical_features(self, entity_df: Any, features: Sequence[str], *,
                                timestamp_column: str = "event_timestamp",
                                full_feature_names: bool = False,
                                to: str | Path | None = None) -> Any:
        """The entity rows with the requested features joined as of each row's time.

        ``entity_df``: a pandas DataFrame (pandas comes back), an Arrow table (Arrow comes
        back), or a Parquet path or glob, read by DuckDB without loading it into Python (an
        Arrow table comes back). ``to``: a local file path; the result is streamed there as
        Parquet (zstd) instead, and the path is returned. Columns are named after the
        features, or ``view__feature`` with ``full_feature_names``.
        """
        import duckdb

        wanted = self._resolve(features)
        # The connection may read the views' sources and an entity file, and write the result
        # file (beside its target, renamed into place once complete), and nothing else.
        paths = {name: _source_path(self.views[name]) for name in wanted}
        entity_file = normalise(str(entity_df)) if isinstance(entity_df, (str, Path)) else None
        target = None if to is None else _target(to)
        partial = None if target is None else Path(normalise(str(
            target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial"))))
        conn = connect([*paths.values(), *([entity_file] if entity_file else [])],
                       [str(partial)] if partial else [],
                       bounded=entity_file is not None or target is not None)
        try:
            kind, order = self._register_entities(conn, entity_df)
            query = self._join_sql(conn, wanted, paths, order, timestamp_column,
                                   full_feature_names)
            try:
                if target is None or partial is None:
                    result = conn.sql(query).to_arrow_table()
                else:
                    try:
                        conn.execute(f"COPY ({query}) TO {_literal(str(partial))} "
                                     "(FORMAT parquet, COMPRESSION zstd)")
                        os.replace(partial, target)
                    finally:
                        partial.unlink(missing_ok=True)
                    return target
            except duckdb.Error as error:
                raise InvalidValueError(f"the feature join failed: {error}",
                                        field="features") from error
        finally:
            conn.close()
        return result.to_pandas() if kind == "pandas" else result

    @staticmethod
    def _register_entities(conn: Any, entity_df: Any) -> tuple[str, list[str]]:
        """Make the entity rows the relation ``entity_rows``, with columns that give their
        order; returns their kind ("pandas", "arrow" or "path") and those columns."""
        import duckdb
        import numpy as np
        import pyarrow as pa

        if isinstance(entity_df, (str, Path)):
            path = str(entity_df)
            source = f"read_parquet({_literal(normalise(path))})"
            try:
                # Reads every file's footer, and no data: a file that is not Parquet fails here.
                conn.execute(f"SELECT count(*) FROM {source}").fetchall()
                conn.execute(f"CREATE TEMP VIEW entity_rows AS SELECT *, file_index AS {FILE}, "
                             f"file_row_number AS {ROW} FROM {source}")
            except duckdb.Error as error:
                raise InvalidValueError(f"cannot read entity_df {path!r} as Parquet: {error}",
                                        field="entity_df") from error
            return "path", [FILE, ROW]
        if type(entity_df).__module__.split(".")[0] == "pandas":
            table, kind = pa.Table.from_pandas(entity_df, preserve_index=False), "pandas"
        elif isinstance(entity_df, pa.Table):
            table, kind = entity_df, "arrow"
        else:
            raise InvalidValueError(f"entity_df must be a pandas DataFrame, an Arrow table or "
                                    f"a Parquet path, got {type(entity_df).__name__}",
                                    field="entity_df")
        conn.register("entity_rows", table.append_column(
            ROW, pa.array(np.arange(table.num_rows, dtype=np.int64))))
        return kind, [ROW]

    def _join_sql(self, conn: Any, wanted: dict[str, list[str]], paths: dict[str, str],
                  order: list[str], timestamp_column: str, full_feature_names: bool) -> str:
        described = _columns(conn, "entity_rows", "cannot read entity_df", "entity_df")
        columns = {name: dtype for name, dtype in described.items() if name not in order}
        needed = {timestamp_column, *(k for v in wanted for k in self.views[v].join_keys)}
        missing = sorted(needed - set(columns))
        if missing:
            raise InvalidValueError(f"entity_df lacks column(s) {missing}; it needs the join keys "
                                    f"and the timestamp column {timestamp_column!r}",
                                    field="entity_df")
        if not _is_time(columns[timestamp_column]):
            raise InvalidValueError(f"entity_df column {timestamp_column!r} must hold timestamps,"
                                    f" not {columns[timestamp_column]}", field="entity_df")
        out_names: dict[tuple[str, str], str] = {}
        for view_name, names in wanted.items():
            for name in names:
                out = f"{view_name}__{name}" if full_feature_names else name
                if out in out_names.values() or out in columns:
                    raise InvalidValueError(
                        f"column {out!r} would appear twice in the result; pass "
                        "full_feature_names=True to name columns view__feature", field="features")
                out_names[(view_name, name)] = out

        selects = [f"e.{_q(c)}" for c in columns]
        joins = []
        e_ts = f"CAST(e.{_q(timestamp_column)} AS TIMESTAMPTZ)"
        for index, (view_name, names) in enumerate(wanted.items()):
            view = self.views[view_name]
            alias = f"v{index}"
            rows = self._rows(conn, view, names, paths[view_name], check_ties=True)
            conn.execute(f"CREATE TEMP VIEW {alias}_rows AS {rows.sql}")
            keys = " AND ".join(f"e.{_q(k)} = {alias}.{_q(k)}" for k in view.join_keys)
            joins.append(f"ASOF LEFT JOIN {alias}_rows {alias} ON {keys} AND "
                         f"{rows.probe.replace(_TS, e_ts)} >= {alias}.__k")
            fresh = "TRUE" if view.ttl is None else (
                f"{alias}.__ts >= {e_ts} - INTERVAL "
                f"'{int(view.ttl.total_seconds() * 1_000_000)} microseconds'")
            for name in names:
                selects.append(f"CASE WHEN {fresh} THEN {alias}.{_q(name)} END AS "
                               f"{_q(out_names[(view_name, name)])}")
        return (f"SELECT {', '.join(selects)} FROM entity_rows e {' '.join(joins)} "
                f"ORDER BY {', '.join(f'e.{c}' for c in order)}")

    def _rows(self, conn: Any, view: FeatureView, names: list[str], path: str,
              check_ties: bool = False) -> _Rows:
        """The view's transformed, checked rows with their ordering key (see _Rows), read from
        ``path`` (its _source_path). ``check_ties``: scan a source not yet known to be free of
        ties (see _has_ties) rather than take it to have some; worth it before a join, not to
        build SQL that may not run."""
        source = (f"SELECT *, file_index AS {SOURCE_FILE}, file_row_number AS {SOURCE_ROW} "
                  f"FROM read_parquet({_literal(path)})")
        columns = _columns(conn, source, f"cannot read the source of feature view {view.name!r}",
                           "source")
        transformed = source
        if view.transform:
            # Checked again here, where it runs: the view may come from a stored definition,
            # and what is embedded is the checked statement as DuckDB writes it, not the text.
            checked = checked_transform(view.transform, view.name)
            transformed = f"WITH source AS ({source}) SELECT * FROM ({checked}) AS __transformed"
            columns = _columns(conn, transformed,
                               f"the transform of feature view {view.name!r} failed", "transform")
        declared = [*view.join_keys, view.timestamp, *(f.name for f in view.features)]
        if view.created_timestamp:
            declared.append(view.created_timestamp)
        absent = [c for c in declared if c not in columns]
        if absent:
            what = "the output of the transform" if view.transform else "the source"
            raise InvalidValueError(
                f"{what} of feature view {view.name!r} lacks declared column(s) {absent}; it "
                f"has {sorted(c for c in columns if c not in (SOURCE_FILE, SOURCE_ROW))}",
                field="source")
        for column in filter(None, (view.timestamp, view.created_timestamp)):
            if not _is_time(columns[column]):
                raise InvalidValueError(f"column {column!r} of feature view {view.name!r} must "
                                        f"hold timestamps, not {columns[column]}",
                                        field="source")
        for name in names:
            dtype = view.feature(name).dtype
            if not _compatible(dtype, columns[name]):
                raise InvalidValueError(
                    f"feature {view.name}:{name} is declared {dtype} but its source column "
                    f"holds {columns[name]}", field="dtype")

        keys = ", ".join(_q(k) for k in view.join_keys)
        feats = ", ".join(f"CAST({_q(n)} AS {TYPES[view.feature(n).dtype]}) AS {_q(n)}"
                          for n in names)
        ts = f"CAST(__rows.{_q(view.timestamp)} AS TIMESTAMPTZ)"
        created = (f"CAST(__rows.{_q(view.created_timestamp)} AS TIMESTAMPTZ)"
                   if view.created_timestamp else None)

        def rows(key: str) -> str:
            return (f"SELECT {keys}, {ts} AS __ts, {feats}, {key} AS __k FROM ({transformed}) "
                    f"AS __rows WHERE {ts} IS NOT NULL")

        if not _has_ties(conn, view, path, source, check_ties):
            return _Rows(rows(ts), _TS, True)
        if SOURCE_FILE in columns and SOURCE_ROW in columns:
            # (event time, created, position): the ASOF join's inequality picks the winner.
            position = f"__rows.{SOURCE_FILE}::BIGINT * {_ROWS_PER_FILE} + __rows.{SOURCE_ROW}"
            if created is None:  # one HUGEINT, the narrowest key to sort: time, then position
                key = f"{_micros(ts)}::HUGEINT * {1 << 64} + {position}"
                probe = f"{_micros(_TS)}::HUGEINT * {1 << 64} + {(1 << 64) - 1}"
                return _Rows(rows(key), probe, False)
            key = (f"{{'t': {ts}, 'c': coalesce({created}, '-infinity'::TIMESTAMPTZ), "
                   f"'p': {position}}}")
            probe = f"{{'t': {_TS}, 'c': 'infinity'::TIMESTAMPTZ, 'p': {_LAST}}}"
            # A null entity time must match nothing, as it does in a plain comparison.
            return _Rows(rows(key), f"CASE WHEN {_TS} IS NOT NULL THEN {probe} END", False)
        ranking = [f"{created} DESC NULLS LAST"] if created else []
        ranking += [f"__rows.{_q(f.name)} DESC NULLS LAST" for f in view.features]
        return _Rows(rows(ts) + f" QUALIFY row_number() OVER (PARTITION BY {keys}, {ts} "
                     f"ORDER BY {', '.join(ranking)}) = 1", _TS, True)

    @contextlib.contextmanager
    def view_rows(self, name: str, names: list[str]) -> Iterator[tuple[Any, str]]:
        """A connection that can read view ``name``'s source and nothing else, and SQL on it
        for the view's rows (see _view_relation), with the features ``names``: what
        materialization reads. The connection is closed on leaving."""
        view = self.views[name]
        path = _source_path(view)
        conn = connect([path])
        try:
            yield conn, self._view_relation(conn, view, names, path)
        finally:
            conn.close()

    def _view_relation(self, conn: Any, view: FeatureView, names: list[str], path: str) -> str:
        """SQL for the view's rows: keys, one row per (keys, event time), typed features."""
        rows = self._rows(conn, view, names, path)
        keys = ", ".join(_q(k) for k in view.join_keys)
        select = f"SELECT {keys}, __ts, {', '.join(_q(n) for n in names)} FROM ({rows.sql})"
        if rows.deduplicated:
            return select
        return select + (f" QUALIFY row_number() OVER (PARTITION BY {keys}, __ts "
                         "ORDER BY __k DESC) = 1")
