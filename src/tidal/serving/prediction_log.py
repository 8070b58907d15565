"""The prediction log: every answer of the inference server, as Parquet files in the artifact store.

Requests must never wait for storage, so ``PredictionLog.log`` only appends to a bounded
in-memory queue. A writer thread appends what is queued, every ``spool_interval`` (50 ms), to
a local spool (see ``tidal.serving.spool``), and a second thread turns the spooled records, about
once a second, into Parquet files at
``prediction-log/<endpoint>/date=YYYY-MM-DD/hour=HH/<worker>-<first sequence>.parquet``
(UTC, by each record's own timestamp). When the queue is full, or the store fails, records are
dropped and counted rather than slowing the server down. Each file appears whole or not at all
(see ``ArtifactStore.write_file``), so a worker killed at any moment leaves nothing a reader
cannot read, and what its spool held is written by the next writer that starts
(``recover_spool``): a SIGKILL loses at most the records of the last spool interval.

Every record carries its writer's id (``worker``) and a ``sequence`` number that counts the
records of one endpoint that writer took, refused ones included; a writer that stops, or the
recovery of one that was killed, states how many numbers it gave out. ``log_gaps`` reports the
numbers missing, so no loss goes unseen.
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
from pathlib import Path
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tidal.errors import InvalidValueError, missing_dependency
from tidal.ids import check_name
from tidal.serving.spool import Spool, orphans, read_segment, spool_folder

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
    ("client_id", pa.string()),
    ("worker", pa.string()),
    ("sequence", pa.int64()),
])
#: Where writers state their count of sequence numbers, partitioned as the rows are (apart
#: from them, so that the rows' folders hold nothing but rows).
ENDS_FOLDER = "prediction-ends"
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
    #: The id the client gave the request, echoed back: a correlation field, never a key.
    client_id: str | None = None


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


def _is_rows(path: str) -> bool:
    """Whether a partition's file holds rows (temporary files and end statements do not)."""
    name = path.rsplit("/", 1)[-1]
    return name[:1] not in ("_", ".") and name.endswith(".parquet")


def _hour_of(path: str) -> int | None:
    """Hours since the epoch of a file's partition; None for a file outside partitions."""
    parts = path.split("/")
    if len(parts) < 3:
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


def partition_files(store: ArtifactStore, folder: str, endpoint: str, start_ms: int | None,
                    end_ms: int | None, pool: ThreadPoolExecutor) -> list[str]:
    """Every file, sorted, of the hour partitions of an endpoint that overlap
    [start_ms, end_ms)."""
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
    return sorted(paths)


def read_partitions(store: ArtifactStore, folder: str, endpoint: str, schema: pa.Schema,
                    start: datetime | None, end: datetime | None) -> pa.Table:
    """Rows of every file of an endpoint's partitions with start <= timestamp < end, sorted by
    timestamp (stably: rows of one file keep their order)."""
    check_name(endpoint, what="endpoint", field="endpoint")
    start_ms, end_ms = epoch_ms(start, "start"), epoch_ms(end, "end")
    with ThreadPoolExecutor(_READERS) as pool:
        paths = partition_files(store, folder, endpoint, start_ms, end_ms, pool)
        tables = list(pool.map(lambda path: pq.read_table(pa.BufferReader(
            store.read_file(path))), [p for p in paths if _is_rows(p)]))
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


@dataclass
class _Job:
    """Spooled records for the compactor: one segment's tables, whether the segment file holds
    them all, and the marker to set once they are in the store."""

    tables: list[pa.Table]
    segment: Path | None
    complete: bool
    marker: _Marker | None


def _default_worker() -> str:
    name = "".join(c if (c.isascii() and c.isalnum()) or c in "-." else "-"
                   for c in socket.gethostname())
    return f"{name.strip('.-')[:100] or 'worker'}-{os.getpid()}"


def _check_settings(worker: str, counts: dict[str, Any], intervals: dict[str, Any]) -> None:
    check_name(worker, what="worker", field="worker")
    if worker.startswith("_"):
        raise InvalidValueError(f"worker name {worker!r} starts with '_', which readers "
                                "take for a temporary file; start it with a letter or digit",
                                field="worker")
    for name, value in counts.items():
        if not isinstance(value, int) or value < 1:
            raise InvalidValueError(f"{name} must be a positive integer, got {value!r}",
                                    field=name)
    for name, value in intervals.items():
        if not isinstance(value, int | float) or value <= 0:
            raise InvalidValueError(f"{name} must be a positive number of seconds, "
                                    f"got {value!r}", field=name)


class PredictionLog:
    """A non-blocking writer of prediction records; one per server process.

    ``log`` may be called from any thread (it is meant for the event loop); ``start``,
    ``flush`` and ``close`` from the thread that owns the log. ``spool_interval``: how often
    records are appended to the local spool, which bounds what a SIGKILL loses;
    ``flush_interval``: how often they become Parquet files; ``spool``: the spool's folder
    (default ``spool_folder(workspace)``).
    """

    def __init__(self, workspace: Workspace, *, worker: str | None = None,
                 max_queue: int = 10_000, flush_rows: int = 2_000,
                 flush_interval: float = 1.0, spool_interval: float = 0.05,
                 spool: str | os.PathLike[str] | None = None) -> None:
        worker = _default_worker() if worker is None else worker
        _check_settings(worker, {"max_queue": max_queue, "flush_rows": flush_rows},
                        {"flush_interval": flush_interval, "spool_interval": spool_interval})
        self._store = workspace.artifacts
        #: This writer's id in the records: the worker name and a random part, which keeps
        #: restarted workers with the same host name and pid (pid 1 in containers) apart.
        self.worker_id = f"{worker}-{secrets.token_hex(4)}"
        self._max_queue = max_queue
        self._flush_rows = flush_rows
        self._flush_interval = float(flush_interval)
        self._spool_interval = min(float(spool_interval), self._flush_interval)
        self._spool_folder = spool_folder(workspace) if spool is None else Path(spool)
        self._spool: Spool | None = None
        self._queue: deque[tuple[int, PredictionRecord] | _Marker] = deque()
        self._jobs: SimpleQueue[_Job] = SimpleQueue()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False
        # Under _lock, as several threads may log: the next sequence number and the newest
        # record's time per endpoint, records refused, and records accepted and not yet
        # written or lost (what max_queue bounds).
        self._next: dict[str, int] = {}
        self._newest: dict[str, int] = {}
        self._rejected = 0
        self._pending = 0
        self._lost = 0
        self._written = 0

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

        Never blocks and never raises: the record takes its endpoint's next sequence number
        (a refused one too, so that readers see it missing) and all other work on it happens
        in the writer thread.
        """
        with self._lock:
            try:
                endpoint = record.endpoint
                sequence = self._next.get(endpoint, 0)
                self._next[endpoint] = sequence + 1
                self._newest[endpoint] = record.timestamp_ms
                if self._spool is not None:
                    self._spool.marks.set(endpoint, sequence + 1, record.timestamp_ms)
            except Exception:  # no record: the writer counts it as malformed
                sequence = -1
            if self._closed or self._pending >= self._max_queue:
                self._rejected += 1
                return False
            self._pending += 1
        queue = self._queue
        queue.append((sequence, record))
        if len(queue) >= self._flush_rows:
            self._wake.set()
        return True

    def start(self) -> None:
        """Open the spool and start the writer threads (once; later calls do nothing)."""
        if self._closed:
            raise RuntimeError("this PredictionLog is closed; make a new one")
        if self._threads:
            return
        try:
            self._spool = Spool(self._spool_folder, self.worker_id)
        except OSError as error:
            logger.warning("prediction log: no spool at %s (%s); a killed server loses up to "
                           "%s s of records", self._spool_folder, error, self._flush_interval)
        with self._lock:  # records logged before the spool opened
            if self._spool is not None:
                for endpoint, sequence in self._next.items():
                    self._spool.marks.set(endpoint, sequence, self._newest[endpoint])
        self._threads = [threading.Thread(target=target, name=name, daemon=True)
                         for target, name in ((self._run, "tidal-prediction-log"),
                                              (self._compact_run, "tidal-prediction-log-files"))]
        for thread in self._threads:
            thread.start()

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
        """Write what is queued, state each endpoint's last sequence number, then stop the
        writer; later ``log`` calls return False.

        Idempotent. If the writer cannot finish within ``timeout`` seconds, a warning is
        logged and close returns anyway, leaving the daemon threads to finish or die with the
        process (the spool keeps their records for the next start).
        """
        if self._closed:
            return
        self.start()
        with self._lock:
            self._closed = True
        marker = self._mark(stop=True)
        deadline = time.monotonic() + timeout
        if marker.done.wait(timeout):
            for thread in self._threads:
                thread.join(max(deadline - time.monotonic(), 0))
            # Records appended by a log() call that raced with close: never to be written.
            left = sum(1 for item in self._queue if not isinstance(item, _Marker))
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

    # -- the spooling thread: queue -> spool, every spool interval

    def _run(self) -> None:
        tables: list[pa.Table] = []
        rows = 0
        due = time.monotonic() + self._flush_interval
        while True:
            marker, batch = None, []
            while len(batch) < self._flush_rows and self._queue:
                item = self._queue.popleft()
                if isinstance(item, _Marker):
                    marker = item
                    break
                batch.append(item)
            table = self._table(batch) if batch else None
            if table is not None:
                if self._spool is not None:
                    self._spool.append(table)
                tables.append(table)
                rows += table.num_rows
            now = time.monotonic()
            if marker is not None or rows >= self._flush_rows or (tables and now >= due):
                segment, complete = (self._spool.rotate() if self._spool is not None
                                     else (None, True))
                self._jobs.put(_Job(tables, segment, complete, marker))
                tables, rows, due = [], 0, now + self._flush_interval
                if marker is not None and marker.stop:
                    return
                continue
            if len(self._queue) >= self._flush_rows:
                continue
            if not tables:
                due = now + self._flush_interval
            self._wake.wait(min(self._spool_interval, max(due - now, 0.0)))
            self._wake.clear()

    def _table(self, batch: list[tuple[int, PredictionRecord]]) -> pa.Table | None:
        """The records as a table of SCHEMA, JSON-encoding their values; records that are
        malformed or that JSON cannot hold are counted as dropped."""
        columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
        good: set[str] = set()
        for sequence, record in batch:
            try:
                endpoint = record.endpoint
                if endpoint not in good:
                    good.add(check_name(endpoint, what="endpoint", field="endpoint"))
                timestamp = int(record.timestamp_ms)
                inputs = None if record.inputs is None else dumps(record.inputs)
                outputs = dumps(record.outputs)
            except Exception as error:  # orjson's TypeError, or a record that is no record
                self._lose(1, f"request {getattr(record, 'request_id', '?')!r} is malformed or "
                              f"has a value JSON cannot hold ({error})")
                continue
            columns["request_id"].append(record.request_id)
            columns["timestamp"].append(timestamp)
            columns["endpoint"].append(endpoint)
            columns["route"].append(record.route)
            columns["model_uri"].append(record.model_uri)
            columns["model_version"].append(record.model_version)
            columns["shadow"].append(record.shadow)
            columns["inputs"].append(inputs)
            columns["outputs"].append(outputs)
            columns["latency_ms"].append(record.latency_ms)
            columns["error"].append(record.error)
            columns["client_id"].append(record.client_id)
            columns["sequence"].append(sequence)
        if not columns["request_id"]:
            return None
        columns["worker"] = [self.worker_id] * len(columns["request_id"])
        try:
            return pa.table(columns, schema=SCHEMA)
        except Exception as error:  # a field of the wrong type
            self._lose(len(columns["request_id"]), f"records are malformed ({error})")
            return None

    # -- the compacting thread: spooled records -> Parquet files, every flush interval

    def _compact_run(self) -> None:
        try:
            recovered = recover_spool(self._store, self._spool_folder)
        except Exception as error:  # the store is down: the next start tries again
            logger.warning("prediction log: could not recover the spools in %s: %s",
                           self._spool_folder, error)
        else:
            if recovered:
                logger.warning("prediction log: recovered %d record(s) of stopped workers",
                               recovered)
        while True:
            job = self._jobs.get()
            if job.segment is not None and not job.complete:
                # A frame never reached it: a recovery of it would name files differently.
                job.segment.unlink(missing_ok=True)
            if job.tables:
                self._write(pa.concat_tables(job.tables))
            if job.segment is not None:
                job.segment.unlink(missing_ok=True)
            if job.marker is None:
                continue
            if job.marker.stop:
                self._finish()
            job.marker.done.set()
            if job.marker.stop:
                return

    def _write(self, table: pa.Table) -> None:
        """Write a table as one file per endpoint and hour; never raises."""
        for part in split_by_partition(table):
            try:
                write_part(self._store, part, self.worker_id)
            except Exception as error:
                self._lose(part.num_rows, f"writing to {self._store.url} failed ({error})")
            else:
                self._written += part.num_rows
                with self._lock:
                    self._pending -= part.num_rows

    def _finish(self) -> None:
        """State each endpoint's count of sequence numbers, then remove the spool."""
        with self._lock:
            counts = {e: (n, self._newest[e]) for e, n in self._next.items()}
        for endpoint, (count, newest) in counts.items():
            try:
                write_end(self._store, endpoint, self.worker_id, count, newest)
            except Exception as error:
                logger.warning("prediction log: could not write the end of %s's log: %s",
                               endpoint, error)
        with self._lock:  # a log() racing with close must not touch the closed marks
            spool, self._spool = self._spool, None
        if spool is not None:
            spool.close()

    def _lose(self, count: int, why: str) -> None:
        with self._lock:  # both threads lose records
            self._lost += count
            self._pending -= count
        logger.warning("prediction log: %d record(s) dropped: %s", count, why)


# -- files of spooled records -------------------------------------------------------------------

def split_by_partition(table: pa.Table) -> list[pa.Table]:
    """A table's rows by (endpoint, hour), each part in its rows' order."""
    hours = pc.divide(table["timestamp"].cast(pa.int64()), _HOUR_MS)
    keyed = table.append_column("_hour", hours)
    keys = keyed.group_by(["endpoint", "_hour"]).aggregate([]).to_pylist()
    if len(keys) == 1:
        return [keyed]
    return [keyed.filter(pc.and_(pc.equal(keyed["endpoint"], key["endpoint"]),
                                 pc.equal(keyed["_hour"], key["_hour"]))) for key in keys]


def write_part(store: ArtifactStore, part: pa.Table, worker: str) -> None:
    """Write the rows of one endpoint and hour (with their ``_hour`` column) as one file named
    by the worker and the part's first sequence number: the same rows always get the same
    name, so a spool recovered twice, or recovered after its writer had written some of it,
    writes no row twice."""
    endpoint, hour = part["endpoint"][0].as_py(), part["_hour"][0].as_py()
    first = pc.min(part["sequence"]).as_py()
    name = f"{worker}-{first:012d}.parquet" if first is not None and first >= 0 else \
        f"{worker}-x{secrets.token_hex(4)}.parquet"
    write_parquet(store, f"{partition(LOG_FOLDER, endpoint, hour)}/{name}",
                  part.drop_columns(["_hour"]).cast(SCHEMA))


def write_end(store: ArtifactStore, endpoint: str, worker: str, count: int,
              newest_ms: int) -> None:
    """State how many sequence numbers a worker gave ``endpoint``'s records, in the hour
    partition of its newest record, so that records lost at the very end of a worker's life
    count as missing too."""
    check_name(endpoint, what="endpoint", field="endpoint")
    path = f"{partition(ENDS_FOLDER, endpoint, newest_ms // _HOUR_MS)}/{worker}.json"
    store.write_file(path, orjson.dumps({"worker": worker, "endpoint": endpoint,
                                         "sequences": count}))


def recover_spool(store: ArtifactStore, folder: str | os.PathLike[str]) -> int:
    """Write into the log what writers that died (a SIGKILL, a crash) left in their spools in
    ``folder``, state their sequence counts, and remove the spools; returns how many spooled
    records it wrote (a segment its writer had already compacted, but not yet removed, is
    written again under the same file names, so no row is doubled). Spools of live writers are left alone; it is safe to run again and from
    several processes at once. Every ``PredictionLog`` runs it when it starts, so a restarted
    worker or the next ``tidal serve`` recovers its predecessors' records."""
    recovered = 0
    for orphan in orphans(Path(folder)):
        try:
            for segment in orphan.segments:
                tables = read_segment(segment)
                if not tables:
                    continue
                table = pa.concat_tables(tables, promote_options="default")
                for part in split_by_partition(table):
                    write_part(store, part, orphan.worker)
                recovered += table.num_rows
            for endpoint, (count, newest) in orphan.marks.items():
                if count:
                    write_end(store, endpoint, orphan.worker, count, newest)
        except BaseException:
            orphan.release()
            raise
        orphan.discard()
    return recovered


def recover_prediction_log(workspace: Workspace | None = None) -> int:
    """Recover the spools that killed servers of ``workspace`` left on this machine (see
    ``recover_spool``); returns how many records were recovered."""
    from tidal.store.workspace import current_workspace

    ws = workspace or current_workspace()
    return recover_spool(ws.artifacts, spool_folder(ws))
