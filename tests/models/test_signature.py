"""Signatures: inference from examples, JSON round trip, safe coercion, refusals that name every
bad column, and compatibility between versions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tidal.errors import InvalidValueError
from tidal.models.signature import (
    ColumnSpec,
    Signature,
    SignatureMismatchError,
    TensorSpec,
    infer_signature,
)


def example() -> pd.DataFrame:
    return pd.DataFrame({
        "age": np.array([31, 45, 27], dtype="int64"),
        "income": [52.5, np.nan, 61.0],
        "country": ["fr", "de", "fr"],
        "member": [True, False, True],
        "seen": pd.to_datetime(["2026-01-01", "2026-02-01", "2026-03-01"]),
    })


def test_inference_records_names_types_and_nullability():
    signature = infer_signature(example(), np.array([0, 1, 0]))
    assert signature.inputs == (
        ColumnSpec("age", "int64", False), ColumnSpec("income", "float64", True),
        ColumnSpec("country", "string", False), ColumnSpec("member", "bool", False),
        ColumnSpec("seen", "datetime", False))
    assert signature.outputs == TensorSpec("int64", (-1,))
    assert Signature.from_dict(signature.to_dict()) == signature
    tensor = infer_signature(np.zeros((4, 3, 2), dtype=np.float32))
    assert tensor.inputs == TensorSpec("float32", (-1, 3, 2)) and tensor.columns is None
    assert infer_signature(pa.Table.from_pandas(example())).inputs == signature.inputs


def test_conforming_frames_pass_unchanged_and_safe_casts_are_made():
    signature = infer_signature(example())
    frame = example()
    assert signature.validate_input(frame) is frame
    shuffled = frame[["income", "age", "country", "member", "seen"]].assign(
        age=lambda f: f["age"].astype("int32"),
        seen=lambda f: f["seen"].dt.strftime("%Y-%m-%d"))
    fixed = signature.validate_input(shuffled)
    assert list(fixed.columns) == ["age", "income", "country", "member", "seen"]
    assert fixed["age"].dtype == "int64" and fixed["seen"].dtype.kind == "M"
    ints_as_floats = frame.assign(age=frame["age"].astype("float64"))
    assert signature.validate_input(ints_as_floats)["age"].dtype == "int64"
    records = signature.validate_input(frame.to_dict("records"))
    pd.testing.assert_frame_equal(records, frame)


def test_every_bad_column_is_named_in_one_error():
    signature = infer_signature(example())
    bad = example().drop(columns=["member"]).assign(
        age=[1.5, 2.0, 3.0], country=[1, 2, 3], extra="x")
    bad.loc[0, "seen"] = pd.NaT
    with pytest.raises(SignatureMismatchError) as caught:
        signature.validate_input(bad)
    problems = caught.value.problems
    assert "missing column 'member'" in problems
    assert any("unexpected column 'extra'" in p for p in problems)
    assert "column 'age': expected int64, got floats with a fractional part" in problems
    assert "column 'country': expected string, got int64" in problems
    assert any(p.startswith("column 'seen' has 1 missing values") for p in problems)
    assert signature.validate_input(example().assign(extra=1), extra="drop").shape[1] == 5


def test_overflowing_and_missing_integers_are_refused():
    signature = Signature((ColumnSpec("n", "int8"),))
    with pytest.raises(SignatureMismatchError, match="outside its range"):
        signature.validate_input(pd.DataFrame({"n": [1, 300]}))
    with pytest.raises(SignatureMismatchError, match="missing values"):
        signature.validate_input(pd.DataFrame({"n": [1.0, np.nan]}))


def test_tensors_are_checked_for_shape_and_cast_within_kind():
    signature = Signature(TensorSpec("float32", (-1, 3)))
    out = signature.validate_input(np.ones((2, 3), dtype=np.float64))
    assert out.dtype == np.float32 and out.shape == (2, 3)
    assert signature.validate_input(np.ones((2, 3), dtype=np.int64)).dtype == np.float32
    with pytest.raises(SignatureMismatchError, match=r"shape \[2, 4\] does not fit \[-1, 3\]"):
        signature.validate_input(np.ones((2, 4), dtype=np.float32))
    with pytest.raises(SignatureMismatchError, match="cannot be cast"):
        signature.validate_input(np.array([["a", "b", "c"]]))


def test_arrays_take_the_signature_column_names():
    signature = infer_signature(pd.DataFrame({"a": [1.0], "b": [2.0]}))
    frame = signature.validate_input(np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert list(frame.columns) == ["a", "b"]
    with pytest.raises(SignatureMismatchError, match="the model takes 2: a, b"):
        signature.validate_input(np.ones((2, 3)))
    with pytest.raises(InvalidValueError, match="must be a pandas DataFrame"):
        signature.validate_input("a,b\n1,2")


def test_compatibility_names_what_callers_would_break_on():
    champion = infer_signature(pd.DataFrame({"a": [1], "b": [1.0]}), np.array([0.5]))
    same = infer_signature(pd.DataFrame({"a": [1.0], "b": [1.0]}), np.array([0.5]))
    assert same.compatibility_problems(champion) == []  # an int column is accepted as float
    needs_more = infer_signature(pd.DataFrame({"a": [1], "b": [1.0], "c": ["x"]}))
    assert needs_more.compatibility_problems(champion) == [
        "column 'c' is required but was not before"]
    retyped = infer_signature(pd.DataFrame({"a": ["x"], "b": [1.0]}), np.array(["label"]))
    problems = retyped.compatibility_problems(champion)
    assert "column 'a' was int64 and is now string" in problems
    assert any(p.startswith("outputs changed") for p in problems)
    tensor = infer_signature(np.zeros((1, 2), dtype=np.float32))
    assert tensor.compatibility_problems(champion) == [
        "one signature takes a tensor and the other columns"]


@pytest.mark.parametrize("bad", [
    {"inputs": None}, {"inputs": {"columns": [{"name": "a", "type": "complex"}]}},
    {"inputs": {"columns": [{"name": "a", "type": "int64"}, {"name": "a", "type": "int64"}]}},
    {"inputs": {"tensor": {"dtype": "float32", "shape": [0, 3]}}}, {"outputs": {}}, "x",
])
def test_malformed_signatures_are_refused(bad):
    with pytest.raises(InvalidValueError, match="signature"):
        Signature.from_dict(bad)


def test_the_fast_dtype_and_null_reading_agrees_with_pandas():
    from tidal.models.signature import _dtypes_and_nulls

    frame = pd.DataFrame({
        "f": [1.0, np.nan, 3.0], "g": [1.0, 2.0, 3.0], "i": [1, 2, 3],
        "n": pd.array([1, None, 3], dtype="Int64"), "s": ["a", None, "c"],
        "o": pd.Series(["a", "b", None], dtype=object), "b": [True, False, True],
        "t": pd.to_datetime(["2026-01-01", None, "2026-01-03"]),
        "c": pd.Categorical(["x", "y", None]), "u": pd.Series(["a", "b", "c"], dtype="string"),
    })
    dtypes, nulls = _dtypes_and_nulls(frame)
    assert [str(d) for d in dtypes] == [str(d) for d in frame.dtypes]
    assert nulls.tolist() == frame.isna().any().tolist()
    signature = infer_signature(frame.dropna())
    with pytest.raises(SignatureMismatchError) as caught:
        signature.validate_input(frame)
    assert {p.split("'")[1] for p in caught.value.problems} == {"f", "n", "s", "o", "t", "c"}
