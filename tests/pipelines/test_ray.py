"""The Ray executor against a real local Ray runtime: the same outputs and cache keys as the
inline executor, step resources that reach Ray (and requests no node can meet refused at
once rather than left waiting), bad resource specs refused, failures that stop only
descendants."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import ray

import tidal
from tidal.errors import InvalidValueError, MissingDependencyError
from tidal.pipelines import StepFailedError, run_pipeline
from tidal.pipelines.executors.ray import RayExecutor, _ray, ray_options
from tidal.pipelines.schema import step_runs

from . import flows


@pytest.fixture(scope="module")
def ray_runtime(s3_server: str):
    """One local Ray runtime for the module, started by the executor itself (2 CPUs). The
    workers inherit this process's environment when it starts, so the S3 server's settings
    come first."""
    assert not ray.is_initialized()
    executor = RayExecutor(num_cpus=2)
    yield executor
    executor.close()
    assert not ray.is_initialized()  # the executor that started Ray shut it down


@pytest.fixture
def sqlite_ws(tmp_path):
    return tidal.workspace(f"sqlite:///{tmp_path / 'ws' / 'tidal.db'}",
                           str(tmp_path / "ws" / "artifacts"))


def statuses(result) -> dict[str, str]:
    return {name: record.status for name, record in result.steps.items()}


# steps and pipelines of these tests: Ray workers import them by path, as the driver does

@tidal.step(resources={"cpus": 2, "memory": "100MB"})
def assigned() -> dict:
    return dict(ray.get_runtime_context().get_assigned_resources())


@tidal.step
def plain() -> dict:
    return dict(ray.get_runtime_context().get_assigned_resources())


@tidal.pipeline
def resourceful():
    assigned()
    plain()


@tidal.step(resources={"cpus": 64})
def greedy() -> int:
    return 1


@tidal.step
def downstream(value: int) -> int:
    return value + 1


@tidal.pipeline
def too_greedy():
    downstream(greedy())
    flows.first(5)


@tidal.step(resources={"gpu": 1})
def misspelled() -> int:
    return 1


@tidal.pipeline
def misspelled_resources():
    downstream(misspelled())


# -- tests --------------------------------------------------------------------------------------

def test_outputs_and_cache_keys_match_the_inline_executor(workspace, ray_runtime):
    inline = run_pipeline(flows.training, {"rows": 150}, cache=False)
    on_ray = run_pipeline(flows.training, {"rows": 150}, executor="ray", cache=False)
    assert set(statuses(on_ray).values()) == {"done"}
    for node in ("load", "split", "describe", "evaluate"):
        assert [o["digest"] for o in inline.steps[node].outputs] \
            == [o["digest"] for o in on_ray.steps[node].outputs], node
    # evaluate's key holds the digest of train's model file, which differs from one save to
    # the next whatever saves it; every other key is the same
    for node in ("load", "split", "train", "describe"):
        assert inline.steps[node].cache_key == on_ray.steps[node].cache_key, node
    np.testing.assert_array_equal(inline.output("describe"), on_ray.output("describe"))
    assert on_ray.output("evaluate") == inline.output("evaluate")
    # each step ran in a Ray worker as a child run of the pipeline's, its metrics recorded
    parent = tidal.get_run(on_ray.id)
    assert parent.tags["tidal.executor"] == "ray"
    assert sorted(parent.children) == sorted(r.run_id for r in on_ray.steps.values())
    assert 0.5 < tidal.get_run(on_ray.steps["evaluate"].run_id).metrics["accuracy"] <= 1.0
    # the run's executor found Ray running and left it so
    assert ray.is_initialized()
    again = run_pipeline(flows.training, {"rows": 150}, executor="ray")
    assert set(statuses(again).values()) == {"cached"}


def test_step_resources_reach_ray(sqlite_ws, ray_runtime):
    result = run_pipeline(resourceful, executor="ray", workspace=sqlite_ws)
    assert result.output("assigned") == {"CPU": 2.0, "memory": 100_000_000.0}
    assert result.output("plain") == {"CPU": 1.0}  # Ray's default for a task


def test_a_request_no_node_can_meet_fails_at_once(sqlite_ws, ray_runtime):
    started = time.monotonic()
    with pytest.raises(StepFailedError, match=r"asks for cpus=64, which no node of the Ray "
                                              r"cluster has \(the most any node has: 2\)"):
        run_pipeline(too_greedy, executor="ray", workspace=sqlite_ws)
    assert time.monotonic() - started < 30
    with sqlite_ws.db.read() as conn:
        rows = dict(conn.execute(step_runs.select().with_only_columns(
            step_runs.c.node, step_runs.c.status)).all())
    assert rows == {"greedy": "failed", "downstream": "skipped", "first": "done"}


def test_bad_resource_specs_are_refused(sqlite_ws, ray_runtime):
    assert ray_options({"cpus": 2, "gpus": 0.5, "memory": "4GB"}) \
        == {"num_cpus": 2, "num_gpus": 0.5, "memory": 4_000_000_000}
    assert ray_options({"memory": "512MiB"}) == {"memory": 512 * 2**20}
    assert ray_options({"memory": 2**30, "cpus": 0}) == {"memory": 2**30, "num_cpus": 0}
    bad = [({"gpu": 1}, "resources.gpu", "no entry 'gpu'; the entries a step may ask for: cpus"),
           ({"cpus": -1}, "resources.cpus", "a number >= 0"),
           ({"cpus": "2"}, "resources.cpus", "a number >= 0"),
           ({"cpus": True}, "resources.cpus", "a number >= 0"),
           ({"gpus": 1.5}, "resources.gpus", "above 1 must be a whole number"),
           ({"memory": "lots"}, "resources.memory", "a size such as '4GB'"),
           ({"memory": "4 parsecs"}, "resources.memory", "a size such as '4GB'"),
           ({"memory": 0}, "resources.memory", "at least one byte")]
    for resources, field, message in bad:
        with pytest.raises(InvalidValueError, match=message) as caught:
            ray_options(resources)
        assert caught.value.field == field
    # in a pipeline, the step with the bad spec fails and its descendants do not run
    with pytest.raises(StepFailedError, match="resources has no entry 'gpu'") as caught:
        run_pipeline(misspelled_resources, executor="ray", workspace=sqlite_ws)
    assert "1 step(s) downstream did not run" in str(caught.value)


def test_a_failed_step_on_ray_stops_its_descendants(workspace, ray_runtime):
    with pytest.raises(StepFailedError, match="fail_always") as caught:
        run_pipeline(flows.partly_failing, executor="ray")
    assert "RuntimeError: boom" in str(caught.value)
    with workspace.db.read() as conn:
        rows = dict(conn.execute(step_runs.select().with_only_columns(
            step_runs.c.node, step_runs.c.status)).all())
    assert rows == {"load": "done", "fail_always": "failed", "after_failure": "skipped",
                    "describe": "done"}


def test_without_ray_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'tidal-mlops\[ray\]'"):
        _ray()
    with pytest.raises(InvalidValueError, match="a Ray address") as caught:
        RayExecutor(address=" ")
    assert caught.value.field == "address"
