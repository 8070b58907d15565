"""Turn whatever a user registers into one stream of Arrow record batches.

Accepted: a pandas or Polars DataFrame, an Arrow Table or RecordBatchReader, or a path, glob or
list of them naming Parquet or CSV files on local disk or any fsspec URL. Files are read batch
by batch, so a dataset larger than memory streams through. Types are normalised (large strings
become strings, dictionaries their values) so that the same data registered from pandas, Arrow,
Parquet or CSV has the same schema and therefore the same content digest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from tidal.errors import InvalidValueError

BATCH_ROWS = 65_536
_FILE_KINDS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".csv.gz": "csv"}


class DataFormatError(InvalidValueError):
    """A file does not parse, or its columns do not match the other files of the dataset."""


@dataclass
class Source:
    """What to read: its Arrow schema, its batches (read lazily), and a description."""

    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    description: str


def _normal_type(data_type: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(data_type) or pa.types.is_string_view(data_type):
        return pa.string()
    if pa.types.is_large_binary(data_type) or pa.types.is_binary_view(data_type):
        return pa.binary()
    if pa.types.is_dictionary(data_type):
        return _normal_type(data_type.value_type)
    if pa.types.is_large_list(data_type) or pa.types.is_list_view(data_type):
        return pa.list_(_normal_type(data_type.value_type))
    if pa.types.is_list(data_type):
        return pa.list_(_normal_type(data_type.value_type))
    return data_type


def normal_schema(schema: pa.Schema) -> pa.Schema:
    """The schema with canonical types and no metadata (pandas index hints and the like)."""
    return pa.schema([pa.field(f.name, _normal_type(f.type), f.nullable) for f in schema])


def _from_table(table: pa.Table, description: str) -> Source:
    schema = normal_schema(table.schema)
    table = table.replace_schema_metadata(None)
    if table.schema != schema:
        table = table.cast(schema)
    return Source(schema, iter(table.to_batches(max_chunksize=BATCH_ROWS)), description)


def _file_kind(path: str) -> str:
    lowered = path.lower()
    for suffix, kind in _FILE_KINDS.items():
        if lowered.endswith(suffix):
            return kind
    raise InvalidValueError(
        f"cannot tell the format of {path!r}; name Parquet files *.parquet and CSV files *.csv",
        field="data")


def _expand(paths: list[str]) -> tuple[Any, list[str]]:
    """The fsspec filesystem and the sorted list of files the paths and globs name."""
    import fsspec

    files: list[str] = []
    fs = None
    for path in paths:
        fs_here, _, found = fsspec.get_fs_token_paths(path)
        if fs is None:
            fs = fs_here
        elif type(fs_here) is not type(fs):
            raise InvalidValueError("all files of one dataset must be on the same filesystem",
                                    field="data")
        if not found or (not any(c in path for c in "*?[") and not fs_here.exists(found[0])):
            raise InvalidValueError(f"no file matches {path!r}", field="data")
        files.extend(found)
    return fs, sorted(set(files))


def _read_files(fs: Any, files: list[str]) -> Iterator[pa.RecordBatch]:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    for path in files:
        try:
            if _file_kind(path) == "parquet":
                with fs.open(path, "rb") as handle:
                    yield from pq.ParquetFile(handle).iter_batches(batch_size=BATCH_ROWS)
            else:
                compression = "gzip" if path.lower().endswith(".gz") else None
                with fs.open(path, "rb", compression=compression) as handle:
                    reader = pacsv.open_csv(handle, read_options=pacsv.ReadOptions(
                        block_size=16 << 20))
                    yield from reader
        except (pa.ArrowInvalid, OSError) as error:
            raise DataFormatError(f"cannot read {path!r}: {error}", field="data") from error


def _from_files(paths: list[str]) -> Source:
    for path in paths:
        _file_kind(path.rstrip("*"))  # refuse unknown formats before touching any file
    fs, files = _expand(paths)
    batches = _read_files(fs, files)
    try:
        first = next(batches)
    except StopIteration:
        raise InvalidValueError(f"{paths!r} holds no rows; a dataset cannot be empty",
                                field="data") from None
    schema = normal_schema(first.schema)

    def conform(batch: pa.RecordBatch, path_hint: str) -> pa.RecordBatch:
        if batch.schema.names != schema.names:
            raise DataFormatError(
                f"the files of one dataset must have the same columns; found {batch.schema.names}"
                f" after {schema.names} ({path_hint})", field="data")
        batch = batch.replace_schema_metadata(None)
        try:
            return batch if batch.schema == schema else batch.cast(schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise DataFormatError(f"column types differ between files: {error}",
                                  field="data") from error

    def stream() -> Iterator[pa.RecordBatch]:
        yield conform(first, files[0])
        for batch in batches:
            yield conform(batch, ", ".join(files[:3]))

    shown = files[0] if len(files) == 1 else f"{len(files)} files under {os.path.commonpath(files)}"
    return Source(schema, stream(), shown)


def open_source(data: Any) -> Source:
    """A Source for any accepted input, or a clear error naming what was given."""
    if isinstance(data, (str, os.PathLike)):
        return _from_files([os.fspath(data)])
    if isinstance(data, (list, tuple)) and data and all(
            isinstance(p, (str, os.PathLike)) for p in data):
        return _from_files([os.fspath(p) for p in data])
    if isinstance(data, pa.Table):
        return _from_table(data, "an Arrow table")
    if isinstance(data, pa.RecordBatchReader):
        return _from_table(data.read_all(), "an Arrow record batch reader")
    module = type(data).__module__.split(".")[0]
    if module == "pandas" and type(data).__name__ == "DataFrame":
        # A named index is data (an id, a timestamp); an unnamed one is row numbering.
        keep_index = any(name is not None for name in data.index.names)
        return _from_table(pa.Table.from_pandas(data, preserve_index=keep_index),
                           "a pandas DataFrame")
    if module == "polars" and type(data).__name__ == "DataFrame":
        return _from_table(data.to_arrow(), "a Polars DataFrame")
    raise InvalidValueError(
        f"cannot register a {type(data).__name__}; give a pandas or Polars DataFrame, an Arrow "
        "table, or paths/globs of Parquet or CSV files", field="data")
