"""The feature store: offline retrieval, materialization, and online reads, over one set of
feature views."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tidal.errors import InvalidValueError
from tidal.features.definitions import FeatureView
from tidal.features.offline import OfflineStore, _q
from tidal.features.online import RedisOnlineStore, SqliteOnlineStore, entity_key
from tidal.store.workspace import Workspace, current_workspace

_BATCH = 10_000


def _utc(moment: Any, what: str) -> datetime:
    if not isinstance(moment, datetime):
        raise InvalidValueError(f"{what} must be a datetime, got {type(moment).__name__}",
                                field=what)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class FeatureStore:
    """Feature views with an offline store (their sources, joined by DuckDB) and an online
    store: ``online`` is a SQLite file path (default ``<workspace home>/online.db``) or a
    ``redis://`` URL (``pip install 'tidal-mlops[redis]'``)."""

    def __init__(self, views: Sequence[FeatureView], *, workspace: Workspace | None = None,
                 online: str | Path | None = None, online_prefix: str = "tidal:") -> None:
        self.offline = OfflineStore(views)
        self.views = self.offline.views
        if isinstance(online, str) and online.startswith(("redis://", "rediss://", "unix://")):
            self.online: SqliteOnlineStore | RedisOnlineStore = RedisOnlineStore(
                online, prefix=online_prefix)
        else:
            home = Path((workspace or current_workspace()).settings.home)
            self.online = SqliteOnlineStore(online or home / "online.db")

    def get_historical_features(self, entity_df: Any, features: Sequence[str],
                                **options: Any) -> Any:
        """See OfflineStore.get_historical_features."""
        return self.offline.get_historical_features(entity_df, features, **options)

    def materialize(self, end: datetime, start: datetime | None = None,
                    views: Sequence[str] | None = None) -> dict[str, int]:
        """Write each view's latest values with event times in (start, end] to the online
        store. ``start`` defaults to where the previous materialization of the view ended, so
        repeated calls only move what changed. Returns the rows written per view."""
        import duckdb

        end = _utc(end, "end")
        chosen = list(self.views) if views is None else list(views)
        unknown = [name for name in chosen if name not in self.views]
        if unknown:
            raise InvalidValueError(f"unknown feature view(s) {unknown}; known: "
                                    f"{sorted(self.views)}", field="views")
        written: dict[str, int] = {}
        for name in chosen:
            view = self.views[name]
            begin = _utc(start, "start") if start is not None else self.online.watermark(view)
            if begin is not None and begin >= end:
                written[name] = 0
                continue
            self.online.ensure_table(view)
            conn = duckdb.connect()
            try:
                conn.execute("SET TimeZone = 'UTC'")
                rows_sql = self.offline._view_relation(conn, view, [f.name for f in view.features])
                values = ", ".join(
                    f"epoch_us({_q(f.name)})" if f.dtype == "timestamp" else _q(f.name)
                    for f in view.features)
                keys = ", ".join(_q(k) for k in view.join_keys)
                window = f"__ts <= make_timestamptz({int(end.timestamp() * 1e6)})"
                if begin is not None:
                    window += f" AND __ts > make_timestamptz({int(begin.timestamp() * 1e6)})"
                reader = conn.sql(
                    f"SELECT {keys}, epoch_us(__ts), {values} FROM ({rows_sql}) WHERE {window} "
                    f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY __ts DESC) = 1"
                ).to_arrow_reader(_BATCH)
                width = len(view.join_keys)
                count = 0
                for batch in reader:
                    columns = [column.to_pylist() for column in batch.columns]
                    rows = [(entity_key([c[i] for c in columns[:width]]), columns[width][i],
                             [c[i] for c in columns[width + 1:]]) for i in range(batch.num_rows)]
                    count += self.online.write(view, rows)
            finally:
                conn.close()
            self.online.set_watermark(view, end)
            written[name] = count
        return written

    def get_online_features(self, entity_rows: Any, features: Sequence[str],
                            *, full_feature_names: bool = False) -> dict[str, list[Any]]:
        """Latest values for each entity row (dicts of join keys, or a DataFrame), as columns:
        the join keys given, then one list per feature. Missing entities, and values older
        than their view's TTL, come back as None."""
        wanted = self.offline._resolve(features)
        if type(entity_rows).__module__.split(".")[0] == "pandas":
            entity_rows = entity_rows.to_dict("records")
        if not isinstance(entity_rows, (list, tuple)) or not all(
                isinstance(row, dict) for row in entity_rows):
            raise InvalidValueError("entity_rows must be a list of dicts of join keys, or a "
                                    "DataFrame", field="entity_rows")
        now_us = datetime.now(UTC).timestamp() * 1e6
        result: dict[str, list[Any]] = {}
        for view_name, names in wanted.items():
            view = self.views[view_name]
            for position, row in enumerate(entity_rows):
                absent = [k for k in view.join_keys if k not in row]
                if absent:
                    raise InvalidValueError(f"entity row {position} lacks join key(s) {absent} "
                                            f"of feature view {view_name!r}", field="entity_rows")
            for key in view.join_keys:
                result.setdefault(key, [row[key] for row in entity_rows])
            self.online.ensure_table(view)
            found = self.online.read(view, names,
                                     [entity_key([row[k] for k in view.join_keys])
                                      for row in entity_rows])
            ttl_us = None if view.ttl is None else view.ttl.total_seconds() * 1e6
            for index, name in enumerate(names):
                dtype = view.feature(name).dtype
                column = []
                for hit in found:
                    if hit is None or (ttl_us is not None and now_us - hit[0] > ttl_us):
                        column.append(None)
                        continue
                    value = hit[1][index]
                    if value is not None and dtype == "timestamp":
                        value = datetime.fromtimestamp(value / 1e6, tz=UTC)
                    elif value is not None and dtype == "bool":
                        value = bool(value)
                    column.append(value)
                result[f"{view_name}__{name}" if full_feature_names else name] = column
        return result
