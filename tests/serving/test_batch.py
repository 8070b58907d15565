"""Batch inference: Parquet and CSV inputs streamed in chunks give the predictions the model
gives on the whole frame, with the rows' keys in input order; probabilities, CSV output and
row numbers; a Ray runtime gives the same rows as inline; memory is bounded by the chunk; bad
arguments are refused up front and a bad chunk leaves no output behind."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from sklearn.linear_model import LogisticRegression

import tidal
from tidal.errors import InvalidValueError, NotFoundError
from tidal.models.loaded import LoadedModel
from tidal.models.signature import SignatureMismatchError
from tidal.pipelines.executors.ray import RayExecutor
from tidal.serving.batch import plan_batch, predict_batch

FEATURES = ["tenure", "spend", "visits"]
URI = "models:/churn/1"


def customers(rows: int, seed: int = 0) -> pd.DataFrame:
    """Two key columns (an id and a passthrough city) and the model's three features."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "customer": np.arange(rows, dtype="int64") * 3 + 1,
        "city": rng.choice(["oslo", "lima", "pune"], rows),
        "tenure": rng.integers(1, 60, rows, dtype="int64"),
        "spend": rng.normal(50, 20, rows),
        "visits": rng.poisson(3, rows).astype("float64"),
    })


@pytest.fixture
def data() -> pd.DataFrame:
    return customers(300)


@pytest.fixture
def model(workspace, data) -> LogisticRegression:
    """The model registered as models:/churn/1, with the features as its signature."""
    fitted = LogisticRegression(max_iter=1000).fit(
        data[FEATURES], (data.spend + data.tenure > 75).astype(int))
    tidal.models.register("churn", fitted, input_example=data[FEATURES].head(20), run=False)
    return fitted


def write_parquet(frame: pd.DataFrame, folder: Path, files: int = 3,
                  row_group_size: int = 40) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, piece in enumerate(np.array_split(np.arange(len(frame)), files)):
        path = folder / f"part-{index}.parquet"
        pq.write_table(pa.Table.from_pandas(frame.iloc[piece], preserve_index=False), path,
                       row_group_size=row_group_size)
        paths.append(path)
    return paths


def write_csv(frame: pd.DataFrame, folder: Path, files: int = 2) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, piece in enumerate(np.array_split(np.arange(len(frame)), files)):
        path = folder / f"part-{index}.csv"
        frame.iloc[piece].to_csv(path, index=False)
        paths.append(path)
    return paths


def test_a_parquet_glob_in_chunks_gives_the_models_predictions_with_keys_in_order(
        model, data, tmp_path):
    write_parquet(data, tmp_path / "in")
    seen: list[int] = []
    result = predict_batch(URI, str(tmp_path / "in" / "part-*.parquet"),
                           tmp_path / "o" / "out.parquet", chunk_rows=30, progress=seen.append)
    assert result.rows == 300 and result.model == URI
    assert result.chunks == 12  # 100 rows a file, in chunks of 30: 30, 30, 30, 10
    assert result.inputs == [str(tmp_path / "in" / f"part-{i}.parquet") for i in range(3)]
    assert result.outputs == [str(tmp_path / "o" / "out.parquet")]
    assert os.listdir(tmp_path / "o") == ["out.parquet"]  # the temporary file was renamed
    assert seen == [30, 30, 30, 10] * 3
    out = pd.read_parquet(tmp_path / "o" / "out.parquet")
    assert list(out.columns) == ["customer", "city", "prediction"]
    assert out.customer.tolist() == data.customer.tolist()
    assert out.city.tolist() == data.city.tolist()
    np.testing.assert_array_equal(out.prediction, model.predict(data[FEATURES]))


def test_csv_input_to_csv_output_with_class_probabilities(model, data, tmp_path):
    write_csv(data, tmp_path / "in")
    result = predict_batch(URI, tmp_path / "in", tmp_path / "out.csv", chunk_rows=64,
                           proba=True)
    assert result.rows == 300 and result.chunks == 6  # 150 rows a file: 64, 64, 22
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["customer", "city", "proba_0", "proba_1"]
    assert out.customer.tolist() == data.customer.tolist()
    np.testing.assert_allclose(out[["proba_0", "proba_1"]].to_numpy(),
                               model.predict_proba(data[FEATURES]), rtol=1e-9)


def test_rows_are_numbered_when_no_column_is_a_key(model, data, tmp_path):
    features_only = data[FEATURES]
    write_parquet(features_only.iloc[:200], tmp_path / "in", files=2)
    write_csv(features_only.iloc[200:], tmp_path / "more", files=1)
    inputs = [tmp_path / "in" / "*.parquet", tmp_path / "more" / "part-0.csv"]
    predict_batch(URI, inputs, tmp_path / "out.parquet", chunk_rows=70)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out.columns) == ["row", "prediction"]
    assert out.row.tolist() == list(range(300))
    np.testing.assert_array_equal(out.prediction, model.predict(features_only))
    # keys named explicitly: only those, a model input among them
    predict_batch(URI, tmp_path / "in", tmp_path / "keyed.parquet", keys=["spend"])
    keyed = pd.read_parquet(tmp_path / "keyed.parquet")
    assert list(keyed.columns) == ["spend", "prediction"]
    assert keyed.spend.tolist() == features_only.spend.iloc[:200].tolist()


def test_an_output_directory_gets_one_part_file_per_input_file(model, data, tmp_path):
    write_parquet(data, tmp_path / "in")
    result = predict_batch(URI, tmp_path / "in", f"{tmp_path / 'out'}/", chunk_rows=45)
    assert result.outputs == [str(tmp_path / "out" / f"part-{i:05d}.parquet") for i in range(3)]
    assert sorted(os.listdir(tmp_path / "out")) == [f"part-{i:05d}.parquet" for i in range(3)]
    out = pd.concat([pd.read_parquet(p) for p in result.outputs], ignore_index=True)
    assert out.customer.tolist() == data.customer.tolist()
    np.testing.assert_array_equal(out.prediction, model.predict(data[FEATURES]))


def test_memory_is_bounded_by_the_chunk_not_the_input(model, tmp_path, monkeypatch):
    big = customers(200_000, seed=1)
    write_parquet(big, tmp_path / "in", files=2, row_group_size=5_000)
    in_memory = pa.Table.from_pandas(big, preserve_index=False).nbytes
    expected = model.predict(big[FEATURES])
    del big
    calls: list[tuple[int, int]] = []
    original = LoadedModel.predict

    def spy(self: LoadedModel, frame: pd.DataFrame):
        calls.append((len(frame), pa.total_allocated_bytes()))
        return original(self, frame)

    monkeypatch.setattr(LoadedModel, "predict", spy)
    before = pa.total_allocated_bytes()
    result = predict_batch(URI, tmp_path / "in", tmp_path / "out.parquet", chunk_rows=5_000)
    assert result.rows == 200_000 and result.chunks == 40 == len(calls)
    assert max(rows for rows, _ in calls) == 5_000
    # what Arrow holds while the model predicts: a chunk or two, never the whole input
    peak = max(allocated for _, allocated in calls) - before
    assert peak < in_memory / 10, (peak, in_memory)
    np.testing.assert_array_equal(pd.read_parquet(tmp_path / "out.parquet").prediction,
                                  expected)


@pytest.fixture(scope="module")
def ray_runtime(s3_server: str):
    """One local Ray runtime for the module (2 CPUs), started after the S3 server so that the
    workers inherit its settings."""
    assert not ray.is_initialized()
    runtime = RayExecutor(num_cpus=2)
    yield runtime
    runtime.close()


def test_the_ray_executor_writes_parts_whose_union_is_the_inline_output(
        model, data, tmp_path, ray_runtime):
    write_parquet(data, tmp_path / "in", row_group_size=40)
    inline = predict_batch(URI, tmp_path / "in", tmp_path / "inline.parquet", chunk_rows=60)
    on_ray = predict_batch(URI, str(tmp_path / "in" / "*.parquet"), tmp_path / "ray.parquet",
                           chunk_rows=60, executor="ray")
    # each file's 100 rows in row groups of 40, 40, 20: two parts a file (80 rows, 20 rows)
    assert on_ray.rows == inline.rows == 300
    assert on_ray.outputs == [str(tmp_path / "ray.parquet" / f"part-{i:05d}.parquet")
                              for i in range(6)]
    parts = [pd.read_parquet(path) for path in on_ray.outputs]
    assert [len(part) for part in parts] == [80, 20] * 3
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True),
                                  pd.read_parquet(tmp_path / "inline.parquet"))
    assert ray.is_initialized()  # the runtime it found running is left running


def test_a_bad_third_chunk_fails_naming_file_and_rows_and_leaves_no_output(
        model, data, tmp_path):
    broken = data.copy()
    broken.loc[110, "spend"] = np.nan  # the signature has no missing spend
    write_parquet(broken, tmp_path / "in", files=1, row_group_size=300)
    for output in (tmp_path / "o" / "out.parquet", f"{tmp_path / 'o' / 'parts'}/"):
        with pytest.raises(SignatureMismatchError) as caught:
            predict_batch(URI, tmp_path / "in", output, chunk_rows=50)
        assert f"the chunk of rows 100-149 of {tmp_path / 'in' / 'part-0.parquet'}" \
            in caught.value.message
        assert "'spend' has 1 missing values" in caught.value.message
    assert os.listdir(tmp_path / "o") == []  # no output, no temporary file


def test_missing_model_inputs_are_refused_before_any_row_is_read(model, data, tmp_path):
    write_parquet(data.drop(columns=["visits", "spend"]), tmp_path / "in", files=1)
    with pytest.raises(SignatureMismatchError, match="missing columns 'spend', 'visits'"):
        plan_batch(URI, tmp_path / "in", tmp_path / "out.parquet")


def test_an_unknown_model_is_not_found(workspace, data, tmp_path):
    write_parquet(data, tmp_path / "in", files=1)
    with pytest.raises(NotFoundError, match="churn"):
        predict_batch(URI, tmp_path / "in", tmp_path / "out.parquet")


@pytest.mark.parametrize(("change", "field", "fragments"), [
    ({"input": "in/nothing-*.parquet"}, "input", ["nothing-*.parquet"]),
    ({"input_format": "json"}, "format", ["'json'", "parquet, csv"]),
    ({"output": "out.txt"}, "output_format", ["'out.txt'", "*.parquet or *.csv"]),
    ({"chunk_rows": 0}, "chunk_rows", [">= 1, got 0"]),
    ({"keys": ["customer", "region", "shop"]}, "keys",
     ["'region', 'shop'", "customer, city, tenure, spend, visits"]),
    ({"output": "taken.parquet"}, "output", ["'taken.parquet' exists", "overwrite"]),
    ({"executor": "spark"}, "executor", ["'spark'", "inline, ray"]),
    ({"proba": True, "model_uri": "models:/plain/1"}, "proba", ["has no predict_proba"]),
])
def test_bad_arguments_are_refused_up_front(model, data, tmp_path, change, field, fragments):
    from sklearn.linear_model import LinearRegression

    write_parquet(data, tmp_path / "in", files=1)
    (tmp_path / "taken.parquet").write_bytes(b"")
    if change.get("model_uri") == "models:/plain/1":
        tidal.models.register("plain", LinearRegression().fit(data[FEATURES], data.spend),
                              input_example=data[FEATURES].head(5), run=False)
    arguments = {"model_uri": URI, "input": "in", "output": "out.parquet", **change}
    with pytest.raises(InvalidValueError) as caught:
        predict_batch(arguments.pop("model_uri"), arguments.pop("input"),
                      arguments.pop("output"), **arguments)
    assert caught.value.field == field
    for fragment in fragments:
        assert fragment in caught.value.message
    assert not (tmp_path / "out.parquet").exists()


def test_overwrite_replaces_an_existing_output(model, data, tmp_path):
    write_parquet(data, tmp_path / "in", files=1)
    (tmp_path / "out.parquet").write_bytes(b"stale")
    predict_batch(URI, tmp_path / "in", tmp_path / "out.parquet", overwrite=True)
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == 300
