"""Online feature stores: the latest value of every feature per entity, for serving.

Embedded, it is a SQLite file beside the workspace with one table per feature view and one row
per entity, keyed by the entity's join-key values: a read is one primary-key lookup. At scale
it is Redis, with one hash per (view, entity). In both, a write only replaces a row with a
newer event timestamp, so replaying or overlapping materializations never moves a value back
in time.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tidal.features.definitions import FeatureView

WATERMARKS = "tidal_materializations"
#: Keys per ``IN (...)`` lookup when reading many entities at once (SQLite's default limit on
#: host parameters is far above this).
_READ_CHUNK = 500


def _native(value: Any) -> Any:
    # NumPy scalars (from arrays or DataFrames) must key like the Python values they hold
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) \
        else value


def entity_key(values: Sequence[Any]) -> str:
    """The canonical text of a tuple of join-key values (JSON, so 1 and "1" stay apart)."""
    return json.dumps([_native(v) for v in values], separators=(",", ":"), default=str)


def key_function(join_keys: Sequence[str]) -> Callable[[Mapping[str, Any]], str]:
    """entity_key of a row's join keys, with a fast path for the common single integer key
    (the online read path runs this once per entity per request)."""
    if len(join_keys) == 1:
        (name,) = join_keys

        def single(row: Mapping[str, Any]) -> str:
            value = row[name]
            return f"[{value}]" if type(value) is int else entity_key((value,))

        return single
    return lambda row: entity_key([row[k] for k in join_keys])


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SqliteOnlineStore:
    """One SQLite file; a connection per thread; WAL so reads never wait for a writer."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._ensured: set[tuple[str, tuple[str, ...]]] = set()
        self._selects: dict[tuple[str, tuple[str, ...]], str] = {}
        with self._conn() as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {WATERMARKS} "
                         "(view TEXT PRIMARY KEY, end_ts INTEGER NOT NULL)")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
        return conn

    @staticmethod
    def _table(view: FeatureView) -> str:
        return _q(f"fv_{view.name}")

    def ensure_table(self, view: FeatureView) -> None:
        # once per view and process: the read path must stay one primary-key lookup
        signature = (view.name, tuple(f.name for f in view.features))
        if signature in self._ensured:
            return
        columns = ", ".join(f"{_q(f.name)}" for f in view.features)
        conn = self._conn()
        conn.execute(f"CREATE TABLE IF NOT EXISTS {self._table(view)} (entity_key TEXT PRIMARY "
                     f"KEY, event_ts INTEGER NOT NULL, {columns}) WITHOUT ROWID")
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({self._table(view)})")}
        for feature in view.features:  # a view that gained a feature
            if feature.name not in have:
                conn.execute(f"ALTER TABLE {self._table(view)} ADD COLUMN {_q(feature.name)}")
        self._ensured.add(signature)

    def write(self, view: FeatureView, rows: Iterable[tuple[str, int, Sequence[Any]]]) -> int:
        """Upsert (entity_key, event_ts in µs, values in feature order); newer rows win."""
        names = [f.name for f in view.features]
        placeholders = ", ".join("?" for _ in range(len(names) + 2))
        updates = ", ".join(f"{_q(n)} = excluded.{_q(n)}" for n in ["event_ts", *names])
        statement = (f"INSERT INTO {self._table(view)} (entity_key, event_ts, "
                     f"{', '.join(_q(n) for n in names)}) VALUES ({placeholders}) "
                     f"ON CONFLICT (entity_key) DO UPDATE SET {updates} "
                     f"WHERE excluded.event_ts >= {self._table(view)}.event_ts")
        conn = self._conn()
        params = [(key, ts, *values) for key, ts, values in rows]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(statement, params)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(params)

    def read(self, view: FeatureView, names: Sequence[str],
             keys: Sequence[str]) -> list[tuple[int, tuple[Any, ...]] | None]:
        """(event_ts, values) per key, or None for an entity with no row: one primary-key
        lookup for one key, ``IN`` lookups in chunks for many."""
        signature = (view.name, tuple(names))
        select = self._selects.get(signature)
        if select is None:
            select = (f"SELECT entity_key, event_ts, {', '.join(_q(n) for n in names)} FROM "
                      f"{self._table(view)} WHERE entity_key")
            self._selects[signature] = select
        conn = self._conn()
        if len(keys) == 1:
            row = conn.execute(select + " = ?", keys).fetchone()
            return [None if row is None else (row[1], row[2:])]
        found: dict[str, tuple[int, tuple[Any, ...]]] = {}
        for start in range(0, len(keys), _READ_CHUNK):
            chunk = list(dict.fromkeys(keys[start:start + _READ_CHUNK]))
            marks = ", ".join("?" * len(chunk))
            for row in conn.execute(f"{select} IN ({marks})", chunk):
                found[row[0]] = (row[1], row[2:])
        return [found.get(key) for key in keys]

    def watermark(self, view: FeatureView) -> datetime | None:
        row = self._conn().execute(f"SELECT end_ts FROM {WATERMARKS} WHERE view = ?",
                                   (view.name,)).fetchone()
        return None if row is None else datetime.fromtimestamp(row[0] / 1e6, tz=UTC)

    def set_watermark(self, view: FeatureView, end: datetime) -> None:
        self._conn().execute(
            f"INSERT INTO {WATERMARKS} (view, end_ts) VALUES (?, ?) ON CONFLICT (view) "
            "DO UPDATE SET end_ts = excluded.end_ts", (view.name, int(end.timestamp() * 1e6)))


# Compare-and-set in one round trip: write the hash only if its stored event time is older.
_REDIS_UPSERT = """
local current = redis.call('HGET', KEYS[1], '__ts')
if current and tonumber(current) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], '__ts', ARGV[1], unpack(ARGV, 2))
return 1
"""


class RedisOnlineStore:
    """Hashes ``<prefix>fv:<view>:<entity key>`` holding ``__ts`` and one JSON value per
    feature; ``prefix`` lets several workspaces share one Redis."""

    def __init__(self, url: str, prefix: str = "tidal:") -> None:
        try:
            import redis
        except ImportError as error:
            from tidal.errors import missing_dependency

            raise missing_dependency("redis", "redis", "a Redis online store") from error
        self.client = redis.Redis.from_url(url)
        self.prefix = prefix
        self._upsert = self.client.register_script(_REDIS_UPSERT)

    def _key(self, view: FeatureView, key: str) -> str:
        return f"{self.prefix}fv:{view.name}:{key}"

    def ensure_table(self, view: FeatureView) -> None:
        """Nothing to create: hashes appear as they are written."""

    def write(self, view: FeatureView, rows: Iterable[tuple[str, int, Sequence[Any]]]) -> int:
        names = [f.name for f in view.features]
        count = 0
        with self.client.pipeline(transaction=False) as pipe:
            for key, ts, values in rows:
                fields = [item for name, value in zip(names, values)
                          for item in (name, json.dumps(value, default=str))]
                self._upsert(keys=[self._key(view, key)], args=[ts, *fields], client=pipe)
                count += 1
                if count % 1000 == 0:
                    pipe.execute()
            pipe.execute()
        return count

    def read(self, view: FeatureView, names: Sequence[str],
             keys: Sequence[str]) -> list[tuple[int, tuple[Any, ...]] | None]:
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(self._key(view, key), ["__ts", *names])
            replies = pipe.execute()
        out: list[tuple[int, tuple[Any, ...]] | None] = []
        for reply in replies:
            if reply[0] is None:
                out.append(None)
            else:
                out.append((int(reply[0]), tuple(None if v is None else json.loads(v)
                                                 for v in reply[1:])))
        return out

    def watermark(self, view: FeatureView) -> datetime | None:
        value = self.client.hget(f"{self.prefix}{WATERMARKS}", view.name)
        return None if value is None else datetime.fromtimestamp(int(value) / 1e6, tz=UTC)

    def set_watermark(self, view: FeatureView, end: datetime) -> None:
        self.client.hset(f"{self.prefix}{WATERMARKS}", view.name, int(end.timestamp() * 1e6))
