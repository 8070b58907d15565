"""Batch inference: a registered model's predictions for Parquet or CSV files of any size.

The input is read in chunks of at most ``chunk_rows`` rows (Parquet by row groups, CSV by
blocks, both re-cut to the chunk size), so memory is bounded by the chunk size and the input's
row groups, never by the data. Each chunk's model inputs are checked by the version's
signature and predicted; the output keeps each row's keys next to its predictions, in input
order. Every output file is written under a temporary name and renamed only once all of the
input has been predicted, so a failure leaves no partial output behind.

The input is cut into parts: one per file, and on Ray also ranges of a Parquet file's row
groups. Inline, the parts run one after another into one output file, or one part file each
when the output is a directory. On Ray each part is a task that opens the workspace and loads
the model in its worker and writes its own part file; the output must then be on storage every
worker reaches (any path, for a runtime on this machine).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from tidal.data.ingest import DataFormatError, _expand, _file_kind
from tidal.errors import InvalidValueError, TidalError
from tidal.models.signature import SignatureMismatchError

if TYPE_CHECKING:
    from tidal.models.loaded import LoadedModel
    from tidal.store.workspace import Workspace

FORMATS = ("parquet", "csv")
EXECUTORS = ("inline", "ray")
#: The key column written when no input column is a key: the row's number in the whole input.
ROW_COLUMN = "row"
_CSV_BLOCK = 1 << 20


@dataclass(frozen=True)
class BatchResult:
    """What a batch prediction wrote: ``rows`` predicted in ``chunks`` model calls from the
    ``inputs`` files, written to the ``outputs`` files, in ``seconds``."""

    model: str
    rows: int
    inputs: list[str]
    outputs: list[str]
    seconds: float
    chunks: int

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float(self.rows)


@dataclass(frozen=True)
class _Part:
    """A run of rows of one input file: all of it, or a range of a Parquet file's row groups
    starting at row ``offset`` of the file. ``rows`` is known for Parquet only."""

    path: str
    kind: str
    row_groups: tuple[int, ...] | None
    rows: int | None
    offset: int = 0


@dataclass(frozen=True)
class _Job:
    """What predicting any part takes, plain enough to travel to a Ray worker."""

    model_uri: str  # a version's URI, so that every part uses the same version
    db_url: str
    artifacts: str
    trust: bool
    fs: Any  # the input's fsspec filesystem
    schema: pa.Schema  # the input's columns (CSV types pinned to the first file's)
    keys: tuple[str, ...]  # empty: a ``row`` column instead
    inputs: tuple[str, ...]
    proba: bool
    chunk_rows: int


# -- reading ----------------------------------------------------------------------------------

def _list_inputs(paths: list[str], input_format: str | None) -> tuple[Any, list[str]]:
    """The filesystem and data files the paths, directories (their files, one level) and
    globs name: hidden and ``_``-prefixed files are skipped, and so are files whose names do
    not tell their format unless ``input_format`` does."""
    import fsspec

    patterns = []
    for path in paths:
        if not any(c in path for c in "*?["):
            fs, stripped = fsspec.core.url_to_fs(path)
            if fs.isdir(stripped):
                path = path.rstrip("/") + "/*"
        patterns.append(path)
    try:
        fs, found = _expand(patterns)
    except InvalidValueError as error:
        raise InvalidValueError(error.message, field="input") from None
    files = []
    for path in found:
        if path.rsplit("/", 1)[-1].startswith((".", "_")):
            continue
        if input_format is None:
            try:
                _file_kind(path)
            except InvalidValueError:
                continue
        elif fs.isdir(path):
            continue
        files.append(path)
    if not files:
        shown = ", ".join(repr(p) for p in paths)
        raise InvalidValueError(f"no Parquet or CSV file matches {shown} (files must be named "
                                "*.parquet or *.csv unless the format is given)", field="input")
    return fs, files


def _csv_options(schema: pa.Schema | None) -> dict[str, Any]:
    import pyarrow.csv as pacsv

    convert = pacsv.ConvertOptions(column_types=schema) if schema is not None else None
    return {"read_options": pacsv.ReadOptions(block_size=_CSV_BLOCK),
            "convert_options": convert}


def _read_error(path: str, error: Exception) -> DataFormatError:
    return DataFormatError(f"cannot read {path!r}: {error}", field="input")


def _parquet_parts(fs: Any, path: str, split_rows: int | None) -> tuple[pa.Schema, list[_Part]]:
    """A Parquet file's schema and parts, from its footer: the whole file, or (with
    ``split_rows``) runs of row groups of at least that many rows."""
    import pyarrow.parquet as pq

    try:
        with fs.open(path, "rb") as handle:
            metadata = pq.ParquetFile(handle).metadata
            schema = metadata.schema.to_arrow_schema()
    except (pa.ArrowInvalid, OSError) as error:
        raise _read_error(path, error) from error
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    if split_rows is None:
        return schema, [_Part(path, "parquet", None, metadata.num_rows)] if sizes else []
    parts, groups, rows, offset = [], [], 0, 0
    for index, size in enumerate(sizes):
        groups.append(index)
        rows += size
        if rows >= split_rows or index == len(sizes) - 1:
            parts.append(_Part(path, "parquet", tuple(groups), rows, offset))
            offset += rows
            groups, rows = [], 0
    return schema, parts


def _csv_schema(fs: Any, path: str) -> pa.Schema:
    """The columns and types of a CSV file, inferred from its first block."""
    import pyarrow.csv as pacsv

    try:
        with fs.open(path, "rb", compression=_compression(path)) as handle:
            return pacsv.open_csv(handle, **_csv_options(None)).schema
    except (pa.ArrowInvalid, OSError) as error:
        raise _read_error(path, error) from error


def _compression(path: str) -> str | None:
    return "gzip" if path.lower().endswith(".gz") else None


def _batches(job: _Job, part: _Part) -> Iterator[pa.RecordBatch]:
    """The part's rows as record batches, read lazily."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    compression = None if part.kind == "parquet" else _compression(part.path)
    try:
        with job.fs.open(part.path, "rb", compression=compression) as handle:
            if part.kind == "parquet":
                reader = pq.ParquetFile(handle)
                if reader.schema_arrow.names != job.schema.names:
                    raise _columns_differ(part.path, reader.schema_arrow.names, job)
                yield from reader.iter_batches(batch_size=job.chunk_rows,
                                               row_groups=part.row_groups)
            else:
                reader = pacsv.open_csv(handle, **_csv_options(job.schema))
                if reader.schema.names != job.schema.names:
                    raise _columns_differ(part.path, reader.schema.names, job)
                yield from reader
    except (pa.ArrowInvalid, OSError) as error:
        raise _read_error(part.path, error) from error


def _columns_differ(path: str, names: list[str], job: _Job) -> DataFormatError:
    return DataFormatError(f"the input files must have the same columns; {path!r} has "
                           f"{names}, the first file {job.schema.names}", field="input")


def _chunks(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """The batches re-cut into tables of ``rows`` rows (the last one shorter): CSV blocks
    hold any number of rows and Parquet batches end at row-group ends."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            batch = batch.slice(take)
            count += take
            if count == rows:
                yield pa.Table.from_batches(pending)
                pending, count = [], 0
    if count:
        yield pa.Table.from_batches(pending)


# -- predicting -------------------------------------------------------------------------------

def _named(values: Any, name: str, labels: Sequence[Any] | None, single: bool) -> dict[str, Any]:
    """Model output as columns: ``name`` for one value per row (when ``single``), else
    ``name_<label>`` per output column (the class for probabilities)."""
    import numpy as np

    if hasattr(values, "columns"):  # a DataFrame
        columns = {str(c): values[c].to_numpy() for c in values.columns}
    else:
        array = np.asarray(values)
        if array.ndim == 1:
            columns = {"": array}
        else:
            if labels is None or len(labels) != array.shape[1]:
                labels = range(array.shape[1])
            columns = {str(label): array[:, i] for i, label in enumerate(labels)}
    if single and len(columns) == 1:
        return {name: next(iter(columns.values()))}
    return {f"{name}_{label}": column for label, column in columns.items()}


def _predict_chunk(model: LoadedModel, job: _Job, chunk: pa.Table, first_row: int | None,
                   where: str) -> pa.Table:
    """The output rows of one chunk: its keys (or row numbers), then its predictions."""
    import numpy as np

    frame = chunk.select(list(job.inputs)).to_pandas()
    try:
        if job.proba:
            outputs = _named(model.predict_proba(frame), "proba",
                             getattr(model.raw, "classes_", None), single=False)
        else:
            outputs = _named(model.predict(frame), "prediction", None, single=True)
    except SignatureMismatchError as error:
        raise SignatureMismatchError(error.problems, what=where) from None
    if job.keys:
        clash = [name for name in outputs if name in job.keys]
        if clash:
            raise InvalidValueError(f"key column(s) {clash} have the names of the model's "
                                    "output columns; rename them in the input",
                                    field="keys")
        columns: dict[str, Any] = {key: chunk.column(key) for key in job.keys}
    else:
        assert first_row is not None
        columns = {ROW_COLUMN: pa.array(np.arange(first_row, first_row + chunk.num_rows))}
    columns.update((name, pa.array(values)) for name, values in outputs.items())
    return pa.table(columns)


def _write_parts(model: LoadedModel, job: _Job, parts: Sequence[_Part], writer: _Writer,
                 first_row: int | None, progress: Callable[[int], None] | None) -> tuple[int, int]:
    """Predict ``parts`` in chunks into ``writer``; the rows and chunks done. ``first_row``:
    the number of the parts' first row in the whole input (None when no row column is
    written)."""
    rows = chunks = 0
    for part in parts:
        done = 0
        for chunk in _chunks(_batches(job, part), job.chunk_rows):
            start = part.offset + done
            where = f"the chunk of rows {start}-{start + chunk.num_rows - 1} of {part.path}"
            writer.write(_predict_chunk(model, job, chunk, None if first_row is None
                                        else first_row + rows, where))
            done += chunk.num_rows
            rows += chunk.num_rows
            chunks += 1
            if progress is not None:
                progress(chunk.num_rows)
    return rows, chunks


# -- writing ----------------------------------------------------------------------------------

class _Writer:
    """Output tables into one file, written under a temporary name (``temp``) and opened on
    the first table, whose schema the file takes."""

    def __init__(self, fs: Any, temp: str, output_format: str, compression: str | None) -> None:
        self.fs, self.temp, self.format, self.compression = fs, temp, output_format, compression
        self._handle: Any = None
        self._writer: Any = None
        self._schema: pa.Schema | None = None

    def write(self, table: pa.Table) -> None:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        if self._writer is None:
            self._schema = table.schema
            self._handle = self.fs.open(self.temp, "wb", compression=self.compression)
            self._writer = pq.ParquetWriter(self._handle, table.schema) \
                if self.format == "parquet" else pacsv.CSVWriter(self._handle, table.schema)
        elif table.schema != self._schema:
            try:
                table = table.cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as error:
                raise DataFormatError(f"column types differ between chunks: {error}",
                                      field="input") from error
        self._writer.write_table(table)

    def close(self) -> bool:
        """Finish the file; whether one was written (a part with no rows writes none)."""
        if self._writer is None:
            return False
        self._writer.close()
        self._handle.close()
        return True

    def discard(self) -> None:
        try:
            self.close()
        finally:
            if self.fs.exists(self.temp):
                self.fs.rm(self.temp)


@dataclass
class _Output:
    """Where the predictions go: one file, or a directory of part files."""

    fs: Any
    path: str
    format: str
    directory: bool
    overwrite: bool
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created: bool = False

    def prepare(self) -> None:
        folder = self.path if self.directory else self.path.rsplit("/", 1)[0]
        if not self.fs.exists(folder):
            self.fs.makedirs(folder, exist_ok=True)
            self.created = self.directory

    def writer(self, index: int) -> _Writer:
        if self.directory:
            temp = f"{self.path}/.part-{index:05d}-{self.token}.tmp"
        else:
            folder, _, name = self.path.rpartition("/")
            temp = f"{folder}/.{name}-{self.token}.tmp"
        return _Writer(self.fs, temp, self.format,
                       None if self.directory else _compression(self.path))

    def existing_parts(self) -> list[str]:
        return sorted(self.fs.glob(f"{self.path}/part-*")) if self.fs.isdir(self.path) else []

    def commit(self, temps: list[str | None]) -> list[str]:
        """Give the written files their names (parts numbered in input order), replacing
        the old parts of a directory being overwritten."""
        if not self.directory:
            assert temps[0] is not None
            self.fs.mv(temps[0], self.path)
            return [_shown(self.fs, self.path)]
        for old in self.existing_parts():
            self.fs.rm(old)
        names = []
        for temp in (t for t in temps if t is not None):
            name = f"{self.path}/part-{len(names):05d}.{self.format}"
            self.fs.mv(temp, name)
            names.append(_shown(self.fs, name))
        return names

    def abandon(self, writers: Sequence[_Writer]) -> None:
        for writer in writers:
            writer.discard()
        if self.created and not self.fs.ls(self.path):
            self.fs.rmdir(self.path)


def _shown(fs: Any, path: str) -> str:
    """A path as users name it: plain for local files, a URL for the others."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return path if "file" in protocols else fs.unstrip_protocol(path)


def _open_output(output: str, output_format: str | None, executor: str,
                 overwrite: bool) -> _Output:
    import fsspec

    fs, path = fsspec.core.url_to_fs(output)
    path = path.rstrip("/")
    directory = executor == "ray" or output.endswith("/") or fs.isdir(path)
    if output_format is None:
        name = path.rsplit("/", 1)[-1]
        try:
            output_format = _file_kind(name)
        except InvalidValueError:
            if not directory:
                raise InvalidValueError(
                    f"cannot tell the output format of {output!r}; name it *.parquet or *.csv, "
                    "or give the output format ('parquet' or 'csv')", field="output_format") \
                    from None
            output_format = "parquet"
    target = _Output(fs, path, output_format, directory, overwrite)
    if directory and fs.isfile(path):
        raise InvalidValueError(f"output {output!r} is a file; the {executor} executor writes "
                                "a directory of part files there", field="output")
    existing = target.existing_parts() if directory else \
        ([path] if fs.exists(path) else [])
    if existing and not overwrite:
        what = f"holds {len(existing)} part file(s)" if directory else "exists"
        raise InvalidValueError(f"output {output!r} {what}; give overwrite=True (--overwrite) "
                                "to replace it", field="output")
    return target


# -- running ----------------------------------------------------------------------------------

def _load(job: _Job) -> LoadedModel:
    """The model in a Ray worker: the driver's workspace, opened by its URLs, and the
    version the driver resolved."""
    from tidal.models.loaded import load
    from tidal.store.workspace import open_workspace

    return load(job.model_uri, trust=job.trust,
                workspace=open_workspace(job.db_url, job.artifacts))


def _ray_part(job: _Job, part: _Part, first_row: int | None,
              writer: _Writer) -> tuple[int, int, bool]:
    """What a Ray task runs: one part into its own temporary file."""
    try:
        rows, chunks = _write_parts(_load(job), job, [part], writer, first_row, None)
        return rows, chunks, writer.close()
    except BaseException:
        writer.discard()
        raise


@dataclass
class BatchPlan:
    """A checked batch prediction, ready to run: the model is loaded, the input listed and its
    columns known. ``total_rows`` is the number of input rows when every file is Parquet (read
    from their footers), else None."""

    model: LoadedModel
    files: list[str]
    parts: list[_Part]
    job: _Job
    output: _Output
    executor: str
    total_rows: int | None = field(init=False)

    def __post_init__(self) -> None:
        sizes = [part.rows for part in self.parts]
        self.total_rows = None if None in sizes else sum(sizes)  # type: ignore[arg-type]

    def run(self, progress: Callable[[int], None] | None = None) -> BatchResult:
        """Predict every row and write the output; ``progress`` is called with the number of
        rows each chunk (inline) or each part (Ray) adds."""
        started = time.perf_counter()
        self.output.prepare()
        writers = [self.output.writer(i)
                   for i in range(len(self.parts) if self.output.directory else 1)]
        try:
            if self.executor == "ray":
                rows, chunks, written = self._run_ray(writers, progress)
            else:
                rows, chunks, written = self._run_inline(writers, progress)
            if rows == 0:
                raise InvalidValueError(f"{', '.join(self.files)} hold no rows", field="input")
            outputs = self.output.commit([w.temp if done else None
                                          for w, done in zip(writers, written, strict=True)])
        except BaseException:
            self.output.abandon(writers)
            raise
        return BatchResult(self.model.uri, rows, self.files, outputs,
                           time.perf_counter() - started, chunks)

    def _row_numbers(self) -> Iterator[int | None]:
        """Each part's first row number in the whole input (None when no row column is
        written), counting CSV files' rows when they are unknown."""
        total = 0
        for part in self.parts:
            yield None if self.job.keys else total
            if part.rows is not None:
                total += part.rows
            elif not self.job.keys:
                total += sum(batch.num_rows for batch in _batches(self.job, part))

    def _run_inline(self, writers: list[_Writer],
                    progress: Callable[[int], None] | None) -> tuple[int, int, list[bool]]:
        first = None if self.job.keys else 0
        if not self.output.directory:
            rows, chunks = _write_parts(self.model, self.job, self.parts, writers[0], first,
                                        progress)
            return rows, chunks, [writers[0].close()]
        rows = chunks = 0
        written = []
        for part, writer in zip(self.parts, writers, strict=True):
            done, calls = _write_parts(self.model, self.job, [part], writer,
                                       None if first is None else first + rows, progress)
            rows, chunks = rows + done, chunks + calls
            written.append(writer.close())
        return rows, chunks, written

    def _run_ray(self, writers: list[_Writer],
                 progress: Callable[[int], None] | None) -> tuple[int, int, list[bool]]:
        from tidal.pipelines.executors.ray import RayExecutor, _ray

        runtime = RayExecutor()  # connects to Ray, or starts a local runtime, as pipelines do
        try:
            return self._run_tasks(_ray(), writers, progress)
        finally:
            runtime.close()

    def _run_tasks(self, ray: Any, writers: list[_Writer],
                   progress: Callable[[int], None] | None) -> tuple[int, int, list[bool]]:
        task = ray.remote(max_retries=0, retry_exceptions=False)(_ray_part)
        refs = {task.remote(self.job, part, first, writer): index
                for index, (part, first, writer)
                in enumerate(zip(self.parts, self._row_numbers(), writers, strict=True))}
        written = [False] * len(writers)
        rows = chunks = 0
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                try:
                    part_rows, calls, wrote = ray.get(done[0])
                except ray.exceptions.RayTaskError as error:
                    # a part's own failure reaches the caller as itself, as in pipelines
                    cause = getattr(error, "cause", None)
                    raise (cause if isinstance(cause, TidalError) else error) from None
                rows, chunks = rows + part_rows, chunks + calls
                written[refs[done[0]]] = wrote
                if progress is not None:
                    progress(part_rows)
        except BaseException:
            for ref in pending:
                ray.cancel(ref)
            if pending:  # let cancelled tasks remove their files before the driver looks
                ray.wait(pending, num_returns=len(pending), timeout=30)
            raise
        return rows, chunks, written


def _as_paths(input: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    if isinstance(input, (str, os.PathLike)):
        return [os.fspath(input)]
    if isinstance(input, Sequence) and input and all(
            isinstance(p, (str, os.PathLike)) for p in input):
        return [os.fspath(p) for p in input]
    raise InvalidValueError(f"input must be a path, a directory, a glob or a list of them, got "
                            f"{input!r}", field="input")


def _choice(value: str | None, accepted: Sequence[str], field_name: str) -> None:
    if value is not None and value not in accepted:
        raise InvalidValueError(f"{field_name} {value!r} is not one of {', '.join(accepted)}",
                                field=field_name)


def plan_batch(model_uri: str,
               input: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
               output: str | os.PathLike[str], *, keys: Sequence[str] | None = None,
               chunk_rows: int = 100_000, executor: str = "inline",
               input_format: str | None = None, output_format: str | None = None,
               proba: bool = False, trust: bool = False, overwrite: bool = False,
               workspace: Workspace | None = None) -> BatchPlan:
    """Check a batch prediction before any row is read: the arguments, the output (refused
    when it exists, unless ``overwrite``), the input files and their columns, the keys, the
    model and whether the input's columns fit its signature. See :func:`predict_batch`."""
    from tidal.models.loaded import load
    from tidal.store.workspace import current_workspace

    _choice(executor, EXECUTORS, "executor")
    _choice(input_format, FORMATS, "format")
    _choice(output_format, FORMATS, "output_format")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InvalidValueError(f"chunk_rows must be a whole number >= 1, got {chunk_rows!r}",
                                field="chunk_rows")
    paths = _as_paths(input)
    target = _open_output(os.fspath(output), output_format, executor, overwrite)
    fs, files = _list_inputs(paths, input_format)
    schema: pa.Schema | None = None
    parts: list[_Part] = []
    for path in files:
        if (input_format or _file_kind(path)) == "parquet":
            found, file_parts = _parquet_parts(fs, path, chunk_rows if executor == "ray"
                                               else None)
        else:
            found = schema or _csv_schema(fs, path)
            file_parts = [_Part(path, "csv", None, None)]
        if schema is not None and found.names != schema.names:
            raise DataFormatError(f"the input files must have the same columns; {path!r} has "
                                  f"{found.names}, {files[0]!r} {schema.names}", field="input")
        schema = schema or found
        parts.extend(file_parts)
    assert schema is not None
    ws = workspace or current_workspace()
    model = load(model_uri, trust=trust, workspace=ws)
    columns = model.signature.columns if model.signature is not None else None
    if keys is None:
        keys = [name for name in schema.names if columns is not None and name not in columns]
    keys = list(dict.fromkeys(keys))
    unknown = [key for key in keys if key not in schema.names]
    if unknown:
        raise InvalidValueError(f"key column(s) {', '.join(map(repr, unknown))} are not in the "
                                f"input; its columns: {', '.join(schema.names)}", field="keys")
    inputs = columns if columns is not None else [n for n in schema.names if n not in keys]
    try:
        model.prepare(schema.empty_table().select(
            [name for name in inputs if name in schema.names]).to_pandas(), extra="drop")
    except SignatureMismatchError as error:
        raise SignatureMismatchError(error.problems, what=f"the input {files[0]}") from None
    if proba and not model.has_predict_proba:
        raise InvalidValueError(f"{model.uri} ({model.flavor.name}) has no predict_proba",
                                field="proba")
    job = _Job(model.uri, ws.settings.db_url, ws.settings.artifacts, trust, fs, schema,
               tuple(keys), tuple(inputs), proba, chunk_rows)
    return BatchPlan(model, [_shown(fs, f) for f in files], parts, job, target, executor)


def predict_batch(model_uri: str,
                  input: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                  output: str | os.PathLike[str], *, keys: Sequence[str] | None = None,
                  chunk_rows: int = 100_000, executor: str = "inline",
                  input_format: str | None = None, output_format: str | None = None,
                  proba: bool = False, trust: bool = False, overwrite: bool = False,
                  progress: Callable[[int], None] | None = None,
                  workspace: Workspace | None = None) -> BatchResult:
    """Predict every row of Parquet or CSV files with a registered model, in bounded memory.

    ``input``: a file, a directory (its data files), a glob, or a list of them, local or any
    fsspec URL; the format comes from the names (``*.parquet``, ``*.csv``, ``*.csv.gz``) or
    ``input_format``. Rows are read and predicted ``chunk_rows`` at a time.

    ``output``: a ``.parquet`` or ``.csv`` file (or ``output_format``), or a directory (a
    path ending in ``/``, an existing directory, and always with ``executor="ray"``) of part
    files ``part-00000.parquet``... in input order. Each row keeps its ``keys`` (default: every
    input column the model does not take; when there is none, ``row``, the row's number in
    the whole input from 0), then ``prediction``, or ``proba_<class>`` per class with
    ``proba=True``.

    ``executor``: "inline" (this process) or "ray" (one task per part; see
    :mod:`tidal.pipelines.executors.ray` for where Ray runs). A chunk that does not fit the
    signature fails with the signature's error naming the file and rows, and no output is
    left behind.
    """
    return plan_batch(model_uri, input, output, keys=keys, chunk_rows=chunk_rows,
                      executor=executor, input_format=input_format,
                      output_format=output_format, proba=proba, trust=trust,
                      overwrite=overwrite, workspace=workspace).run(progress)
