"""``tidal predict``: predictions for a Parquet glob written with a summary or JSON, and bad
input answered with one error line and exit code 2 (1 for a model that does not exist)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tests.cli.conftest import Invoke, assert_clean_error
from tidal.store.workspace import close_all

FEATURES = ["tenure", "spend"]


@pytest.fixture
def setup(ws_dir: Path, tmp_path: Path) -> tuple[list[str], pd.DataFrame, LogisticRegression]:
    """models:/churn/1 in a closed workspace, and its input in two Parquet files under in/."""
    import tidal

    rng = np.random.default_rng(0)
    data = pd.DataFrame({"customer": np.arange(200), "tenure": rng.integers(1, 60, 200),
                         "spend": rng.normal(50, 20, 200)})
    model = LogisticRegression(max_iter=1000).fit(data[FEATURES],
                                                  (data.spend + data.tenure > 75).astype(int))
    tidal.workspace(ws_dir)
    tidal.models.register("churn", model, input_example=data[FEATURES].head(10), run=False)
    close_all()
    (tmp_path / "in").mkdir()
    data.iloc[:120].to_parquet(tmp_path / "in" / "a.parquet", index=False)
    data.iloc[120:].to_parquet(tmp_path / "in" / "b.parquet", index=False)
    return ["-w", str(ws_dir)], data, model


def test_predict_writes_the_output_and_summarises(cli: Invoke, setup, tmp_path: Path):
    w, data, model = setup
    result = cli(*w, "predict", "models:/churn/1", "--input", "in/*.parquet",
                 "--output", "preds.csv", "--chunk-rows", "50")
    assert result.exit_code == 0, result.output
    assert "Predicted 200 rows from 2 file(s) with models:/churn/1" in result.stdout
    assert "5 chunks" in result.stdout and "Wrote " in result.stdout
    out = pd.read_csv(tmp_path / "preds.csv")
    assert out.customer.tolist() == data.customer.tolist()
    np.testing.assert_array_equal(out.prediction, model.predict(data[FEATURES]))


def test_predict_json_with_keys_probabilities_and_overwrite(cli: Invoke, setup,
                                                            tmp_path: Path):
    w, data, model = setup
    (tmp_path / "preds.parquet").write_bytes(b"old")
    result = cli(*w, "predict", "models:/churn/1", "-i", "in", "-o", "preds.parquet",
                 "--key", "tenure", "--proba", "--overwrite", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 200 and summary["chunks"] == 2
    assert summary["outputs"] == [str(tmp_path / "preds.parquet")]
    assert summary["inputs"] == [str(tmp_path / "in" / n) for n in ("a.parquet", "b.parquet")]
    out = pd.read_parquet(tmp_path / "preds.parquet")
    assert list(out.columns) == ["tenure", "proba_0", "proba_1"]
    np.testing.assert_allclose(out[["proba_0", "proba_1"]].to_numpy(),
                               model.predict_proba(data[FEATURES]))


@pytest.mark.parametrize(("args", "fragments"), [
    (("-i", "missing/*.parquet"), ["no file matches", "missing/*.parquet"]),
    (("-i", "in", "--chunk-rows", "0"), ["chunk_rows must be a whole number >= 1"]),
    (("-i", "in", "--key", "region"), ["'region'", "customer, tenure, spend"]),
    (("-i", "in", "-x", "spark"), ["executor 'spark' is not one of inline, ray"]),
    (("-i", "in", "--format", "json"), ["format 'json' is not one of parquet, csv"]),
])
def test_bad_input_exits_2_with_the_problem(cli: Invoke, setup, args, fragments):
    w, _, _ = setup
    result = cli(*w, "predict", "models:/churn/1", "-o", "preds.parquet", *args)
    assert_clean_error(result, 2, *fragments)


def test_a_bad_chunk_exits_2_naming_the_rows_and_writes_nothing(cli: Invoke, setup,
                                                                tmp_path: Path):
    w, data, _ = setup
    broken = data.copy()
    broken.loc[130, "spend"] = np.nan
    broken.to_parquet(tmp_path / "broken.parquet", index=False)
    result = cli(*w, "predict", "models:/churn/1", "-i", "broken.parquet", "-o", "out.parquet",
                 "--chunk-rows", "60")
    assert_clean_error(result, 2, "the chunk of rows 120-179 of", "'spend' has 1 missing")
    assert not (tmp_path / "out.parquet").exists()


def test_an_unknown_model_exits_1(cli: Invoke, setup):
    w, _, _ = setup
    result = cli(*w, "predict", "models:/nope/1", "-i", "in", "-o", "preds.parquet")
    assert_clean_error(result, 1, "nope")
