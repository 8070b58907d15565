"""The prediction log: every answer of the inference server, as Parquet files in the artifact store.

Requests must never wait for storage, so ``PredictionLog.log`` only appends to a bounded
in-memory queue; one daemon thread turns batches into Parquet files at
``prediction-log/<endpoint>/date=YYYY-MM-DD/hour=HH/<worker>-<seq>-<random>.parquet``
(UTC, by each record's own timestamp). When the queue is full, or the store fails, records are
dropped and counted rather than slowing the server down. Each file appears whole or not at all
(see ``ArtifactStore.write_file``), so a worker killed at any moment leaves nothing a reader
cannot read; the random part of the name keeps restarted workers with the same host name and
pid (pid 1 in containers) from overwriting each other's files.
"""

from __future__ import annotations

import io
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tidal.errors import InvalidValueError, missing_dependency
from tidal.ids import check_name

if TYPE_CHECKING:
    from tidal.store.artifacts import ArtifactStore
    from tidal.store.workspace import Workspace

try:
    import orjson
except ImportError as error:  # the serve extra
    raise missing_dependency("orjson", "serve", "tidal.serving") from error

logger = logging.getLogger(__name__)

LOG_FOLDER = "prediction-log"
TIMESTAMP = pa.timestamp("ms", tz="UTC")
SCHEMA = pa.schema([
    ("request_id", pa.string()),
    ("timestamp", TIMESTAMP),
    ("endpoint", pa.string()),
    ("route", pa.string()),
    ("model_uri", pa.string()),
    ("model_version", pa.int64()),
    ("shadow", pa.bool_()),
    ("inputs", pa.string()),
    ("outputs", pa.string()),
    ("latency_ms", pa.float64()),
    ("error", pa.string()),
])
_HOUR_MS = 3_600_000
# Above this many hours in a time range, one listing per day beats one per hour.
_MAX_HOUR_LISTINGS = 31 * 24
_PARTITION = re.compile(r"date=(\d{4})-(\d{2})-(\d{2})/hour=(\d{2})")
_READERS = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class PredictionRecord:
    """One answer of one route to one request (a request sent to shadows has several)."""

    request_id: str
    timestamp_ms: int
    endpoint: str
    route: str
    model_uri: str
    model_version: int
    shadow: bool
    inputs: dict[str, list] | None
    outputs: list
    latency_ms: float
    #: Why the model failed on this (valid) input; None for an answer.
    error: str | None = None


# -- JSON ---------------------------------------------------------------------------------------

def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # NumPy arrays orjson refuses (strided, object dtype)
        return value.tolist()
    if hasattr(value, "isoformat"):  # pandas.Timestamp and other date-like objects
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def dumps(value: Any) -> str:
    """JSON text of a value that may hold NumPy scalars and arrays; TypeError when it cannot."""
    return orjson.dumps(value, default=_json_default,
                        option=orjson.OPT_SERIALIZE_NUMPY).decode()


loads = orjson.loads


# -- partitioned Parquet files ------------------------------------------------------------------

def partition(folder: str, endpoint: str, hour: int) -> str:
    """The folder of one hour (``hour`` counted in hours since the epoch) of an endpoint."""
    moment = datetime.fromtimestamp(hour * 3600, tz=UTC)
    return f"{folder}/{endpoint}/date={moment:%Y-%m-%d}/hour={moment:%H}"


def write_parquet(store: ArtifactStore, path: str, table: pa.Table) -> None:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    store.write_file(path, sink.getvalue())


def epoch_ms(moment: datetime | None, name: str) -> int | None:
    """Milliseconds since the epoch of a datetime argument called ``name`` (naive: UTC)."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        raise InvalidValueError(f"{name} must be a datetime (naive ones are taken as UTC), got "
                                f"{type(moment).__name__}", field=name)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _hour_of(path: str) -> int | None:
    """Hours since the epoch of a file's partition; None for a name readers must skip."""
    parts = path.split("/")
    name = parts[-1]
    if len(parts) < 3 or name[:1] in ("_", ".") or not name.endswith(".parquet"):
        return None
    match = _PARTITION.fullmatch(f"{parts[-3]}/{parts[-2]}")
    if match is None:
        return None
    try:
        moment = datetime(*map(int, match.groups()), tzinfo=UTC)
    except ValueError:  # no such day or hour
        return None
    return (moment - _EPOCH) // timedelta(hours=1)


def _list(store: ArtifactStore, folder: str, endpoint: str, start_ms: int | None,
          end_ms: int | None, pool: ThreadPoolExecutor) -> list[str]:
    """The files of the hours a time range touches: one listing per hour for short ranges
    (each is small even on S3, where a listing returns 1,000 names a request), else one per
    day the range touches, picked from one listing of the endpoint's day folders, so that a
    month's window costs the same after a year of logging as after a month. Without an end,
    hours up to one past now (clock skew)."""
    root = f"{folder}/{endpoint}"
    if start_ms is None and end_ms is None:
        return store.list_files(root)
    last = end_ms if end_ms is not None else time.time_ns() // 1_000_000 + _HOUR_MS
    if start_ms is not None:
        hours = range(start_ms // _HOUR_MS, (last - 1) // _HOUR_MS + 1)
        if len(hours) <= _MAX_HOUR_LISTINGS:
            listed = pool.map(store.list_files,
                              (partition(folder, endpoint, hour) for hour in hours))
            return [path for paths in listed for path in paths]
    first_day = "" if start_ms is None else _day_folder(start_ms)
    last_day = _day_folder(last - 1)
    days = [name for name in store.list_folders(root)
            if name.startswith("date=") and first_day <= name <= last_day]
    listed = pool.map(store.list_files, (f"{root}/{day}" for day in days))
    return [path for paths in listed for path in paths]


def _day_folder(moment_ms: int) -> str:
    """The name of the day folder holding ``moment_ms``: ISO dates sort as the days do."""
    return f"date={datetime.fromtimestamp(moment_ms / 1000, tz=UTC):%Y-%m-%d}"


def read_partitions(store: ArtifactStore, folder: str, endpoint: str, schema: pa.Schema,
                    start: datetime | None, end: datetime | None) -> pa.Table:
    """Rows of every file of an endpoint's partitions with start <= timestamp < end, sorted by
    timestamp (stably: rows of one file keep their order)."""
    check_name(endpoint, what="endpoint", field="endpoint")
    start_ms, end_ms = epoch_ms(start, "start"), epoch_ms(end, "end")
    with ThreadPoolExecutor(_READERS) as pool:
        paths = []
        for path in _list(store, folder, endpoint, start_ms, end_ms, pool):
            hour = _hour_of(path)
            if hour is None:
                continue
            if start_ms is not None and (hour + 1) * _HOUR_MS <= start_ms:
                continue
            if end_ms is not None and hour * _HOUR_MS >= end_ms:
                continue
            paths.append(path)
        tables = list(pool.map(lambda path: pq.read_table(pa.BufferReader(
            store.read_file(path))), sorted(paths)))
    if not tables:
        return schema.empty_table()
    table = pa.concat_tables(tables, promote_options="default")
    for name in schema.names:  # files written before a column was added have none
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(len(table), schema.field(name).type))
    table = table.select(schema.names)
    table = table.cast(schema)
    if start_ms is not None:
        table = table.filter(pc.greater_equal(table["timestamp"], pa.scalar(start_ms, TIMESTAMP)))
    if end_ms is not None:
        table = table.filter(pc.less(table["timestamp"], pa.scalar(end_ms, TIMESTAMP)))
    return table.take(pc.sort_indices(table, [("timestamp", "ascending")]))


def read_prediction_log(endpoint: str, *, start: datetime | None = None,
                        end: datetime | None = None,
                        workspace: Workspace | None = None) -> pd.DataFrame:
    """The logged answers of an endpoint with start <= timestamp < end, oldest first.

    ``inputs`` and ``outputs`` stay JSON text (decode the rows you need with ``json.loads``);
    an endpoint with nothing logged yet gives an empty frame with the same columns.
    """
    from tidal.store.workspace import current_workspace

    ws = workspace or current_workspace()
    return read_partitions(ws.artifacts, LOG_FOLDER, endpoint, SCHEMA, start, end).to_pandas()


# -- the writer ---------------------------------------------------------------------------------

class _Marker:
    """Put in the queue by flush() and close(): set once everything before it is handled."""

    __slots__ = ("done", "stop")

    def __init__(self, stop: bool) -> None:
        self.done = threading.Event()
        self.stop = stop


def _default_worker() -> str:
    name = "".join(c if (c.isascii() and c.isalnum()) or c in "-." else "-"
                   for c in socket.gethostname())
    return f"{name.strip('.-')[:100] or 'worker'}-{os.getpid()}"


class PredictionLog:
    """A non-blocking writer of prediction records; one per server process.

    ``log`` may be called from any thread (it is meant for the event loop); ``start``,
    ``flush`` and ``close`` from the thread that owns the log.
    """

    def __init__(self, workspace: Workspace, *, worker: str | None = None,
                 max_queue: int = 10_000, flush_rows: int = 2_000,
                 flush_interval: float = 1.0) -> None:
        worker = _default_worker() if worker is None else worker
        check_name(worker, what="worker", field="worker")
        if worker.startswith("_"):
            raise InvalidValueError(f"worker name {worker!r} starts with '_', which readers "
                                    "take for a temporary file; start it with a letter or digit",
                                    field="worker")
        for name, value in (("max_queue", max_queue), ("flush_rows", flush_rows)):
            if not isinstance(value, int) or value < 1:
                raise InvalidValueError(f"{name} must be a positive integer, got {value!r}",
                                        field=name)
        if not isinstance(flush_interval, int | float) or flush_interval <= 0:
            raise InvalidValueError(f"flush_interval must be a positive number of seconds, "
                                    f"got {flush_interval!r}", field="flush_interval")
        self._store = workspace.artifacts
        self._worker = worker
        self._max_queue = max_queue
        self._flush_rows = flush_rows
        self._flush_interval = float(flush_interval)
        self._queue: deque[PredictionRecord | _Marker] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._rejected = 0  # refused by log(), under _lock: several threads may log
        self._lost = 0  # failed to be written; writer thread only
        self._written = 0  # writer thread only
        self._seq = 0

    @property
    def dropped(self) -> int:
        """Records refused because the queue was full or the log closed, or lost to a failed
        write."""
        return self._rejected + self._lost

    @property
    def written(self) -> int:
        """Records that are in files."""
        return self._written

    def log(self, record: PredictionRecord) -> bool:
        """Queue a record for writing; False (and one more ``dropped``) when the queue is full.

        Never blocks and never raises: all the work on the record happens in the writer thread.
        """
        queue = self._queue
        if self._closed or len(queue) >= self._max_queue:
            with self._lock:
                self._rejected += 1
            return False
        queue.append(record)
        if len(queue) >= self._flush_rows:
            self._wake.set()
        return True

    def start(self) -> None:
        """Start the writer thread (once; later calls do nothing)."""
        if self._closed:
            raise RuntimeError("this PredictionLog is closed; make a new one")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tidal-prediction-log",
                                            daemon=True)
            self._thread.start()

    def flush(self, timeout: float = 10.0) -> None:
        """Return once every record queued before the call is in a file (or, if its write
        failed, counted in ``dropped``); TimeoutError if that takes more than ``timeout``
        seconds. Starts the writer if ``start`` was not called."""
        if self._closed:
            return
        self.start()
        if not self._mark(stop=False).done.wait(timeout):
            raise TimeoutError(f"the prediction log still had records to write after {timeout} s "
                               f"({len(self._queue)} queued)")

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer; later ``log`` calls return False.

        Idempotent. If the writer cannot finish within ``timeout`` seconds, a warning is
        logged and close returns anyway, leaving the daemon thread to finish or die with the
        process.
        """
        if self._closed:
            return
        self.start()
        self._closed = True
        marker = self._mark(stop=True)
        deadline = time.monotonic() + timeout
        if marker.done.wait(timeout):
            self._thread.join(max(deadline - time.monotonic(), 0))
            # Records appended by a log() call that raced with close: never to be written.
            left = sum(1 for item in self._queue if isinstance(item, PredictionRecord))
            self._queue.clear()
            self._lost += left
        else:
            logger.warning("prediction log: the writer did not finish within %s s; %d records "
                           "may be lost", timeout, len(self._queue))

    def _mark(self, *, stop: bool) -> _Marker:
        marker = _Marker(stop)
        self._queue.append(marker)
        self._wake.set()
        return marker

    def _run(self) -> None:
        batch: list[PredictionRecord] = []
        due = time.monotonic() + self._flush_interval
        while True:
            marker = None
            while len(batch) < self._flush_rows and self._queue:
                item = self._queue.popleft()
                if isinstance(item, _Marker):
                    marker = item
                    break
                batch.append(item)
            now = time.monotonic()
            if marker is not None or len(batch) >= self._flush_rows or (batch and now >= due):
                self._write(batch)
                batch = []
                due = now + self._flush_interval
                if marker is not None:
                    marker.done.set()
                    if marker.stop:
                        return
                continue
            if not batch:
                due = now + self._flush_interval
            self._wake.wait(due - now)
            self._wake.clear()

    def _write(self, batch: list[PredictionRecord]) -> None:
        """Write a batch as one file per endpoint and hour; never raises."""
        groups: dict[tuple[str, int], list[PredictionRecord]] = {}
        for record in batch:
            try:
                key = (record.endpoint, record.timestamp_ms // _HOUR_MS)
            except Exception as error:
                self._lose(1, f"a record is malformed ({error})")
                continue
            groups.setdefault(key, []).append(record)
        for (endpoint, hour), records in groups.items():
            columns, count = self._columns(records)
            if not count:
                continue
            try:
                check_name(endpoint, what="endpoint", field="endpoint")
                table = pa.table(columns, schema=SCHEMA)
                self._seq += 1
                name = f"{self._worker}-{self._seq:08d}-{secrets.token_hex(4)}.parquet"
                write_parquet(self._store, f"{partition(LOG_FOLDER, endpoint, hour)}/{name}",
                              table)
            except Exception as error:
                self._lose(count, f"writing to {self._store.url} failed ({error})")
            else:
                self._written += count

    def _columns(self, records: list[PredictionRecord]) -> tuple[dict[str, list[Any]], int]:
        """The records as columns, JSON-encoding their values, and how many there are;
        records that JSON cannot hold are counted as dropped."""
        columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
        count = 0
        for record in records:
            try:
                inputs = None if record.inputs is None else dumps(record.inputs)
                outputs = dumps(record.outputs)
            except Exception as error:  # orjson's TypeError, or a record that is no record
                self._lose(1, f"request {record.request_id!r} has a value JSON cannot hold "
                              f"({error})")
                continue
            count += 1
            columns["request_id"].append(record.request_id)
            columns["timestamp"].append(record.timestamp_ms)
            columns["endpoint"].append(record.endpoint)
            columns["route"].append(record.route)
            columns["model_uri"].append(record.model_uri)
            columns["model_version"].append(record.model_version)
            columns["shadow"].append(record.shadow)
            columns["inputs"].append(inputs)
            columns["outputs"].append(outputs)
            columns["latency_ms"].append(record.latency_ms)
            columns["error"].append(record.error)
        return columns, count

    def _lose(self, count: int, why: str) -> None:
        self._lost += count
        logger.warning("prediction log: %d record(s) dropped: %s", count, why)
