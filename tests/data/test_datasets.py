"""Dataset versions: registration from every input kind, dedupe, reads, diff, lineage, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tidal
from tidal.errors import InvalidValueError, NotFoundError


def frame(n: int = 1000) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": range(n),
        "amount": [i * 0.5 for i in range(n)],
        "country": [["de", "fr", "us"][i % 3] for i in range(n)],
    })


def write_files(backend, tmp_path, table: pa.Table, parts: int, kind: str = "parquet") -> str:
    """Write ``table`` as ``parts`` files under the backend's storage; return their glob."""
    size = -(-table.num_rows // parts)
    if backend.name == "sqlite-local":
        base = str(tmp_path / "incoming")
        import os

        os.makedirs(base, exist_ok=True)
        fs = None
    else:
        import s3fs

        fs = s3fs.S3FileSystem()
        base = backend.artifacts.replace("s3://", "") + "-incoming"
    for i in range(parts):
        part = table.slice(i * size, size)
        path = f"{base}/part-{i}.{kind}"
        if kind == "parquet":
            if fs is None:
                pq.write_table(part, path)
            else:
                with fs.open(path, "wb") as f:
                    pq.write_table(part, f)
        else:
            text = part.to_pandas().to_csv(index=False)
            if fs is None:
                open(path, "w").write(text)
            else:
                fs.pipe_file(path, text.encode())
    prefix = "" if fs is None else "s3://"
    return f"{prefix}{base}/part-*.{kind}"


def test_same_content_from_every_input_kind_is_one_version(workspace, backend, tmp_path):
    polars = pytest.importorskip("polars")
    df = frame()
    table = pa.Table.from_pandas(df, preserve_index=False)
    first = tidal.datasets.register("events", df)
    assert (first.version, first.num_rows, first.num_columns) == (1, 1000, 3)
    assert tidal.datasets.register("events", df).version == 1
    assert tidal.datasets.register("events", table).version == 1
    assert tidal.datasets.register("events", polars.from_pandas(df)).version == 1
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=77))
    assert tidal.datasets.register("events", chunked).version == 1
    glob = write_files(backend, tmp_path, table, parts=3)
    assert tidal.datasets.register("events", glob).version == 1
    csv_glob = write_files(backend, tmp_path, table, parts=2, kind="csv")
    assert tidal.datasets.register("events", csv_glob).version == 1
    assert len(tidal.datasets.list_versions("events")) == 1


def test_one_changed_cell_makes_a_new_version_and_diff_names_it(workspace):
    df = frame()
    v1 = tidal.datasets.register("events", df)
    changed = df.copy()
    changed.loc[10, "amount"] = 1e6
    v2 = tidal.datasets.register("events", changed)
    assert v2.version == 2 and v2.digest != v1.digest
    delta = tidal.datasets.diff(v1, v2)
    assert set(delta.statistics) == {"amount"}
    assert delta.statistics["amount"]["max"] == (499.5, 1e6)
    assert not delta.added_columns and not delta.removed_columns and delta.rows == (1000, 1000)
    v3 = tidal.datasets.register("events", changed.assign(extra=1).drop(columns="country"))
    delta = tidal.datasets.diff(v2, v3)
    assert delta.added_columns == {"extra": "int64"}
    assert delta.removed_columns == {"country": "string"}
    assert tidal.datasets.diff(v1, v1).same_content


def test_reads_round_trip_and_versions_resolve(workspace):
    polars = pytest.importorskip("polars")
    df = frame()
    v1 = tidal.datasets.register("events", df, description="first")
    v2 = tidal.datasets.register("events", df.head(10))
    assert tidal.datasets.get("events").version == 2
    assert tidal.datasets.get("events", "latest").version == 2
    assert tidal.datasets.get("events", 1).description == "first"
    pd.testing.assert_frame_equal(tidal.datasets.get("events", 1).to_pandas(), df)
    assert tidal.datasets.get("events", 2).to_arrow().num_rows == 10
    assert isinstance(v2.to_polars(), polars.DataFrame)
    assert v1.duckdb().aggregate("sum(user_id)").fetchall()[0][0] == sum(range(1000))
    before_v2 = v2.created_at - timedelta(milliseconds=1)
    assert tidal.datasets.get("events", as_of=before_v2).version == 1
    assert [d.name for d in tidal.datasets.list_datasets()] == ["events"]
    assert v1.uri == "datasets:/events/1"


def test_profile_is_complete(workspace):
    df = frame()
    df.loc[[1, 2, 3], "amount"] = None
    version = tidal.datasets.register("events", df)
    columns = version.profile["columns"]
    assert version.profile["rows"] == 1000
    amount = columns["amount"]
    assert (amount["count"], amount["nulls"]) == (997, 3)
    assert amount["min"] == 0.0 and amount["max"] == 499.5
    assert sum(amount["histogram"]["counts"]) == 997
    assert len(amount["histogram"]["edges"]) == 21
    assert amount["quantiles"]["0.5"] == pytest.approx(250, rel=0.05)
    assert 900 <= columns["user_id"]["distinct"] <= 1100  # an estimate
    assert sorted(columns["country"]["top"]) == [["de", 334], ["fr", 333], ["us", 333]]


def test_runs_record_their_inputs_both_ways(workspace):
    version = tidal.datasets.register("events", frame())
    with tidal.start_run(experiment="train") as run:
        run.log_input(version)
        run.log_input(version)  # once is enough
    with tidal.start_run(experiment="train") as other:
        other.log_input(version)
    assert version.runs() == [run.id, other.id]
    assert run.inputs() == ["datasets:/events/1"]


@pytest.mark.parametrize("data, error, message", [
    (pd.DataFrame({"a": []}), InvalidValueError, "holds no rows"),
    ({"a": [1]}, InvalidValueError, "cannot register a dict"),
    ("missing/*.parquet", InvalidValueError, "no file matches"),
    ("data.json", InvalidValueError, "cannot tell the format"),
])
def test_bad_data_is_refused(workspace, data, error, message):
    with pytest.raises(error, match=message):
        tidal.datasets.register("events", data)
    assert tidal.datasets.list_datasets() == []


def test_a_csv_that_does_not_parse_is_refused(workspace, tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(tidal.datasets.DataFormatError, match="broken.csv"):
        tidal.datasets.register("events", str(path))


def test_files_with_different_columns_are_refused(workspace, tmp_path):
    pq.write_table(pa.table({"a": [1]}), tmp_path / "x-1.parquet")
    pq.write_table(pa.table({"b": [1]}), tmp_path / "x-2.parquet")
    with pytest.raises(tidal.datasets.DataFormatError, match="same columns"):
        tidal.datasets.register("events", str(tmp_path / "x-*.parquet"))


@pytest.mark.parametrize("name", ["", "../up", "a/b", "-x", "x" * 251, 5])
def test_bad_names_are_refused(workspace, name):
    with pytest.raises(InvalidValueError, match="dataset name"):
        tidal.datasets.register(name, frame(3))


def test_unknown_datasets_and_versions_are_refused(workspace):
    tidal.datasets.register("events", frame(3))
    with pytest.raises(NotFoundError, match="no dataset named 'nope'.*events"):
        tidal.datasets.get("nope")
    with pytest.raises(NotFoundError, match="'events' version 7"):
        tidal.datasets.get("events", 7)
    with pytest.raises(InvalidValueError, match="positive integer"):
        tidal.datasets.get("events", 0)
    with pytest.raises(InvalidValueError, match="as_of must be a datetime"):
        tidal.datasets.get("events", as_of="yesterday")
    with pytest.raises(NotFoundError, match="registered at or before"):
        tidal.datasets.get("events", as_of=datetime(2000, 1, 1, tzinfo=UTC))
    with tidal.start_run(experiment="e") as run:
        with pytest.raises(InvalidValueError, match="log_input takes a dataset version"):
            run.log_input("events")
