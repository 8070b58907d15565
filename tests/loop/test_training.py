"""What a retrained challenger is registered with: the inputs its model reads, not every
column of the logged traffic it was trained on."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import update

from tests.loop import flows
from tests.loop.conftest import policy_dict
from tests.planted import on_import_path, plant
from tidal.data.versions import get as get_dataset
from tidal.errors import NotFoundError
from tidal.ids import digest_bytes
from tidal.loop import apply_policy, get_policy
from tidal.loop.schema import loop_policies
from tidal.loop.training import TrainingSets, _model_inputs, train_challenger
from tidal.pipelines import UntrustedCodeError

pytest.importorskip("sklearn")


def test_a_challenger_signature_leaves_out_the_columns_its_model_never_read():
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    # logged traffic of an endpoint with a feature service: the keys it looked up are logged
    traffic = pd.DataFrame({"user_id": [f"u{i}" for i in range(40)],
                            "x": rng.normal(size=40), "device": rng.choice(["a", "b"], 40)})
    model = make_pipeline(
        ColumnTransformer([("device", OneHotEncoder(), ["device"]), ("x", "passthrough", ["x"])]),
        LogisticRegression()).fit(traffic[["x", "device"]], rng.integers(0, 2, 40))
    assert list(_model_inputs(model, traffic).columns) == ["x", "device"]

    class Opaque:  # a model that does not name its inputs keeps every column
        pass

    assert list(_model_inputs(Opaque(), traffic).columns) == ["user_id", "x", "device"]


# -- the training pipeline a stored policy names ------------------------------------------------

#: A training pipeline for a planted module: a real @tidal.pipeline, not the applied one's code.
PLANTED_RETRAIN = """
import tidal


@tidal.step
def fit(dataset: str, label: str):
    from sklearn.dummy import DummyClassifier

    return DummyClassifier().fit([[0.0], [1.0]], [0, 1])


@tidal.pipeline
def retrain(dataset: str, label: str = "label"):
    fit(dataset, label)
"""


@pytest.fixture
def lib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with on_import_path(tmp_path / "lib", monkeypatch) as folder:
        yield folder


def rewrite_policy(workspace: Any, **training: Any) -> None:
    """Change the stored policy's training settings as someone with write access to the
    metadata store could."""
    stored = get_policy("clicks-loop", workspace=workspace).to_dict()
    stored["training"].update(training)
    workspace.db.write(lambda conn: conn.execute(update(loop_policies).where(
        loop_policies.c.name == "clicks-loop").values(config=json.dumps(stored))))


def train(workspace: Any) -> Any:
    frame = pd.DataFrame({"x": [0.0, 1.0], "label": [0, 1]})
    return train_challenger(get_policy("clicks-loop", workspace=workspace),
                            TrainingSets(frame, frame), "cycle-1", workspace=workspace)


def test_applying_a_policy_records_its_pipeline_code(workspace):
    policy = apply_policy(policy_dict(), workspace=workspace)
    expected = digest_bytes(Path(flows.__file__).read_bytes())
    assert policy.training.code_digest == expected
    assert get_policy("clicks-loop", workspace=workspace).training.code_digest == expected


@pytest.mark.parametrize("with_digest", [False, True])
def test_a_stored_policy_rewritten_to_other_code_never_imports_it(workspace, lib, tmp_path,
                                                                   with_digest):
    apply_policy(policy_dict(), workspace=workspace)
    marker = tmp_path / "pwned"
    # with its digest rewritten too, only a module that declares the pipeline could pass
    name = plant(lib, marker, "retrain = 'no pipeline'\n" if with_digest else PLANTED_RETRAIN)
    changes: dict[str, Any] = {"pipeline": f"{name}:retrain"}
    if with_digest:
        changes["code_digest"] = digest_bytes((lib / f"{name}.py").read_bytes())
    rewrite_policy(workspace, **changes)
    with pytest.raises(UntrustedCodeError) as refused:
        train(workspace)
    assert refused.value.field == "training.pipeline"
    assert "nothing was imported" in refused.value.message
    assert "apply policy 'clicks-loop' again" in refused.value.message
    assert not marker.exists() and name not in sys.modules
    with pytest.raises(NotFoundError):  # refused before the training sets were registered
        get_dataset("clicks-loop-train", workspace=workspace)


def test_a_changed_training_pipeline_runs_once_the_policy_is_applied_again(workspace, lib,
                                                                           tmp_path):
    name = plant(lib, tmp_path / "imported", PLANTED_RETRAIN)
    apply_policy(policy_dict(training={"pipeline": f"{name}:retrain"}), workspace=workspace)
    source = lib / f"{name}.py"
    source.write_text(source.read_text() + "\n# changed after the policy was applied\n")
    with pytest.raises(UntrustedCodeError, match="changed since"):
        train(workspace)
    again = apply_policy(policy_dict(training={"pipeline": f"{name}:retrain"}),
                         workspace=workspace)
    assert again.training.code_digest == digest_bytes(source.read_bytes())
    version, details = train(workspace)
    assert version.version == 1 and details["pipeline"] == f"{name}:retrain"
