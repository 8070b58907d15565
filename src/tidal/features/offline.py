"""Point-in-time correct training data: the latest feature values at or before each entity row.

For every entity row (join keys plus an event timestamp) and every requested feature view,
DuckDB's ASOF LEFT JOIN finds the view's latest row for those keys whose event timestamp is at
or before the entity row's; a value older than the view's TTL comes back as null. Entity rows
are never dropped, and their order is kept. Rows of a view that share keys and an event
timestamp are resolved before the join: the latest ``created_timestamp`` wins, else the row
that comes last in the source. A value stamped after the entity row can never be returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tidal.errors import InvalidValueError
from tidal.features.definitions import TYPES, FeatureView

ROW = "__tidal_row"
_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
            "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _compatible(declared: str, actual: str) -> bool:
    actual = actual.upper()
    if declared in ("float64", "float32", "int64", "int32"):
        return actual.startswith(_NUMERIC)
    if declared == "bool":
        return actual == "BOOLEAN"
    if declared == "timestamp":
        return actual.startswith("TIMESTAMP") or actual == "DATE"
    return True  # anything can be read as a string


def _source_sql(view: FeatureView) -> str:
    from tidal.data.versions import DatasetVersion, get

    source = view.source
    if isinstance(source, str) and not any(c in source for c in "/*.:"):
        source = get(source)  # a dataset name: its latest version
    if isinstance(source, DatasetVersion):
        path = str(source.local_path())
    elif isinstance(source, str):
        path = source
    else:
        raise InvalidValueError(f"feature view {view.name!r} has a source of type "
                                f"{type(source).__name__}; give a dataset name, a DatasetVersion "
                                "or a Parquet path", field="source")
    escaped = path.replace("'", "''")
    return f"read_parquet('{escaped}', filename = true, file_row_number = true)"


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
                                full_feature_names: bool = False) -> Any:
        """``entity_df`` (pandas or Arrow) with the requested features joined as of each row.

        Columns are named after the features, or ``view__feature`` with ``full_feature_names``.
        """
        import duckdb
        import pyarrow as pa

        wanted = self._resolve(features)
        if type(entity_df).__module__.split(".")[0] == "pandas":
            entity = pa.Table.from_pandas(entity_df, preserve_index=False)
            as_pandas = True
        elif isinstance(entity_df, pa.Table):
            entity, as_pandas = entity_df, False
        else:
            raise InvalidValueError(f"entity_df must be a pandas DataFrame or an Arrow table, "
                                    f"got {type(entity_df).__name__}", field="entity_df")
        needed = {timestamp_column, *(k for v in wanted for k in self.views[v].join_keys)}
        missing = sorted(needed - set(entity.column_names))
        if missing:
            raise InvalidValueError(f"entity_df lacks column(s) {missing}; it needs the join keys "
                                    f"and the timestamp column {timestamp_column!r}",
                                    field="entity_df")
        ts_type = entity.schema.field(timestamp_column).type
        if not (pa.types.is_timestamp(ts_type) or pa.types.is_date(ts_type)):
            raise InvalidValueError(f"entity_df column {timestamp_column!r} must hold timestamps,"
                                    f" not {ts_type}", field="entity_df")
        out_names: dict[tuple[str, str], str] = {}
        for view_name, names in wanted.items():
            for name in names:
                out = f"{view_name}__{name}" if full_feature_names else name
                if out in out_names.values() or out in entity.column_names:
                    raise InvalidValueError(
                        f"column {out!r} would appear twice in the result; pass "
                        "full_feature_names=True to name columns view__feature", field="features")
                out_names[(view_name, name)] = out

        conn = duckdb.connect()
        try:
            conn.execute("SET TimeZone = 'UTC'")
            entity = entity.append_column(ROW, pa.array(range(entity.num_rows), pa.int64()))
            conn.register("entity_rows", entity)
            selects = [f"e.{_q(c)}" for c in entity.column_names if c != ROW]
            joins = []
            e_ts = f"CAST(e.{_q(timestamp_column)} AS TIMESTAMPTZ)"
            for index, (view_name, names) in enumerate(wanted.items()):
                view = self.views[view_name]
                alias = f"v{index}"
                source = self._view_relation(conn, view, names)
                conn.execute(f"CREATE TEMP VIEW {alias}_rows AS {source}")
                keys = " AND ".join(f"e.{_q(k)} = {alias}.{_q(k)}" for k in view.join_keys)
                joins.append(f"ASOF LEFT JOIN {alias}_rows {alias} ON {keys} AND "
                             f"{e_ts} >= {alias}.__ts")
                fresh = "TRUE" if view.ttl is None else (
                    f"{alias}.__ts >= {e_ts} - INTERVAL "
                    f"'{int(view.ttl.total_seconds() * 1_000_000)} microseconds'")
                for name in names:
                    selects.append(f"CASE WHEN {fresh} THEN {alias}.{_q(name)} END AS "
                                   f"{_q(out_names[(view_name, name)])}")
            query = (f"SELECT {', '.join(selects)} FROM entity_rows e {' '.join(joins)} "
                     f"ORDER BY e.{ROW}")
            try:
                result = conn.sql(query).to_arrow_table()
            except duckdb.Error as error:
                raise InvalidValueError(f"the feature join failed: {error}",
                                        field="features") from error
        finally:
            conn.close()
        return result.to_pandas() if as_pandas else result

    def _view_relation(self, conn: Any, view: FeatureView, names: list[str]) -> str:
        """SQL for the view's rows: keys, one row per (keys, event time), typed features."""
        import duckdb

        source = _source_sql(view)
        try:
            described = conn.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
        except duckdb.Error as error:
            raise InvalidValueError(f"cannot read the source of feature view {view.name!r}: "
                                    f"{error}", field="source") from error
        columns = {row[0]: row[1] for row in described}
        declared = [*view.join_keys, view.timestamp, *(f.name for f in view.features)]
        if view.created_timestamp:
            declared.append(view.created_timestamp)
        absent = [c for c in declared if c not in columns]
        if absent:
            raise InvalidValueError(f"the source of feature view {view.name!r} lacks declared "
                                    f"column(s) {absent}; it has {sorted(columns)}",
                                    field="source")
        for name in names:
            dtype = view.feature(name).dtype
            if not _compatible(dtype, columns[name]):
                raise InvalidValueError(
                    f"feature {view.name}:{name} is declared {dtype} but its source column "
                    f"holds {columns[name]}", field="dtype")
        keys = ", ".join(_q(k) for k in view.join_keys)
        order = (f"{_q(view.created_timestamp)} DESC, " if view.created_timestamp else "") \
            + "filename DESC, file_row_number DESC"
        feats = ", ".join(f"CAST({_q(n)} AS {TYPES[view.feature(n).dtype]}) AS {_q(n)}"
                          for n in names)
        ts = f"CAST({_q(view.timestamp)} AS TIMESTAMPTZ)"
        return (f"SELECT {keys}, {ts} AS __ts, {feats} FROM {source} "
                f"WHERE {_q(view.timestamp)} IS NOT NULL "
                f"QUALIFY row_number() OVER (PARTITION BY {keys}, {ts} ORDER BY {order}) = 1")
