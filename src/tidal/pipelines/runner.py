"""Running a pipeline: cache lookups, step execution on an executor, and the record of it all.

The driver traces the graph (so bad definitions fail before anything runs), opens a tracked
run for the pipeline, and walks the graph: a node whose inputs are ready gets its cache key
(code, version, parameters and the content digests of its inputs); a key seen before with
stored outputs is a hit and reuses them; anything else goes to the executor as a task that
names the step by import path and its inputs by reference, so it runs the same in this
process, in a process pool or on another machine. A failed step stops its descendants while
independent branches finish; the pipeline run then ends failed and the call raises.
"""

from __future__ import annotations

import importlib
import json
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, insert, select, update

from tidal.errors import InvalidValueError, NotFoundError, TidalError
from tidal.ids import digest_bytes, new_id, now_ms
from tidal.pipelines.errors import PipelineDefinitionError, StepFailedError
from tidal.pipelines.executors import EXECUTORS, make_executor
from tidal.pipelines.graph import Graph, Node, Pipeline
from tidal.pipelines.materializers import OutputSlot, load_output, save_output
from tidal.pipelines.schema import pipeline_runs, step_runs
from tidal.pipelines.step import Step
from tidal.pipelines.targets import code_digest, load_recorded
from tidal.store.workspace import Workspace, current_workspace, open_workspace


@dataclass
class StepRecord:
    node: str
    step: str
    status: str
    cache_key: str
    run_id: str | None = None
    cached_from: str | None = None
    outputs: list[dict[str, Any]] | None = None
    attempts: int = 0
    error: str | None = None

    @property
    def cache_hit(self) -> bool:
        return self.status == "cached"


@dataclass
class PipelineRun:
    """What a pipeline run did: its id (also its tracked run's), status and each step's."""

    id: str
    pipeline: str
    status: str
    steps: dict[str, StepRecord] = field(default_factory=dict)
    workspace: Workspace = field(default=None, repr=False)  # type: ignore[assignment]
    #: nodes that have a step_runs row already (a resumed run's), updated rather than inserted
    recorded: set[str] = field(default_factory=set, repr=False)

    def output(self, node: str, index: int = 0) -> Any:
        """A step's output, read back from the artifact store."""
        record = self.steps.get(node)
        if record is None or not record.outputs:
            raise InvalidValueError(f"pipeline run {self.id} has no outputs for step {node!r}",
                                    field="node")
        return load_output(record.outputs[index], self.workspace)


# -- tasks: what an executor runs -------------------------------------------------------------

def import_step(target: str) -> Step:
    module_name, _, qualname = target.partition(":")
    value: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        value = getattr(value, part)
    if not isinstance(value, Step):
        raise PipelineDefinitionError(f"{target} is not a @tidal.step", field="step")
    return value


class _Timeout(Exception):
    pass


def _call_with_timeout(function: Any, kwargs: dict[str, Any], timeout: float | None) -> Any:
    """Call ``function``; with a timeout, an alarm interrupts it (steps run in the main thread
    of their process, where Unix delivers the signal)."""
    if timeout is None or threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "SIGALRM"):
        return function(**kwargs)

    def expire(signum: int, frame: Any) -> None:
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return function(**kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def execute_step(task: Mapping[str, Any]) -> dict[str, Any]:
    """Run one step from its task (any process that reaches the stores can): read inputs,
    call the function with retries and a timeout, store its outputs, all in a child run."""
    from tidal.tracking.fluent import start_run

    ws = open_workspace(task["db_url"], task["artifacts"])
    step = import_step(task["target"])
    inputs = {name: load_output(ref, ws) for name, ref in task["inputs"].items()}
    options = step.options
    attempts = 0
    with start_run(name=task["node"], parent=task["parent"], workspace=ws,
                   params={k: json.dumps(v) if not isinstance(v, str) else v
                           for k, v in task["params"].items()},
                   tags={"tidal.pipeline": task["pipeline"], "tidal.step": step.name},
                   system_metrics=False) as run:
        for ref in task["inputs"].values():
            if "dataset" in ref:
                from tidal.data.uri import parse_ref
                from tidal.data.versions import get

                run.log_input(get(*parse_ref(ref["dataset"]), workspace=ws))
        while True:
            attempts += 1
            try:
                value = _call_with_timeout(step.function, {**task["params"], **inputs},
                                           options.timeout)
                break
            except _Timeout:
                error = f"step {task['node']!r} ran past its timeout of {options.timeout} s"
            except TidalError:
                raise
            except Exception as failure:  # noqa: BLE001 - a step's own failure, retried
                error = traceback.format_exc()
                if type(failure).__name__ == "TrialPruned":  # a tuning pruner's stop: final
                    attempts = options.retries + 1
            if attempts > options.retries:
                raise StepFailedError(f"step {task['node']!r} failed after {attempts} "
                                      f"attempt(s):\n{error}", field=task["node"])
            time.sleep(options.retry_delay * 2 ** (attempts - 1))
        values = step.check_output(value)
        outputs = [save_output(v, OutputSlot(ws, task["pipeline"], task["node"], i,
                                             len(values))) for i, v in enumerate(values)]
    return {"outputs": outputs, "run_id": run.id, "attempts": attempts}


# -- the driver ---------------------------------------------------------------------------------

def cache_key(node: Node, input_digests: Mapping[str, str]) -> str:
    spec = {"step": node.step.name, "target": node.step.target, "code": node.step.code_digest,
            "version": node.step.options.version, "params": node.params,
            "inputs": dict(sorted(input_digests.items()))}
    return digest_bytes(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode())


def _cached(ws: Workspace, key: str) -> Any:
    with ws.db.read() as conn:
        return conn.execute(select(step_runs.c.id, step_runs.c.outputs).where(
            step_runs.c.cache_key == key, step_runs.c.status == "done")
            .order_by(step_runs.c.ended_at.desc()).limit(1)).first()


def _record_step(ws: Workspace, result: PipelineRun, record: StepRecord,
                 started: int | None) -> None:
    """Insert the step's row, or update it when it has one (a resumed or running step).
    Statements take bound parameters, so each compiles once per process."""
    values = {"status": record.status, "run_id": record.run_id,
              "cached_from": record.cached_from, "attempts": record.attempts,
              "outputs": None if record.outputs is None else json.dumps(record.outputs),
              "error": record.error, "ended_at": now_ms(), "started_at": started,
              "cache_key": record.cache_key}

    def work(conn: Any) -> None:
        if record.node in result.recorded:
            conn.execute(_UPDATE_STEP, [{"run_": result.id, "node_": record.node, **values}])
        else:
            conn.execute(insert(step_runs), [{"id": new_id(), "pipeline_run_id": result.id,
                                              "node": record.node, "step": record.step,
                                              **values}])

    ws.db.write(work)
    result.recorded.add(record.node)


_UPDATE_STEP = update(step_runs).where(step_runs.c.pipeline_run_id == bindparam("run_"),
                                       step_runs.c.node == bindparam("node_"))

def run_pipeline(pipeline: Pipeline, params: Mapping[str, Any] | None = None, *,
                 executor: str = "inline", cache: bool = True,
                 workspace: Workspace | None = None,
                 on_step: Callable[[StepRecord], None] | None = None,
                 parent: str | None = None) -> PipelineRun:
    """Run ``pipeline`` with ``params``: trace it, then run its steps on ``executor``
    ("inline", "process" or "ray"), reusing cached outputs unless ``cache=False``.
    ``on_step`` is called with each step's record whenever its state changes; ``parent`` makes
    the pipeline's tracked run a child of that run (as tuning trials are)."""
    from tidal.tracking.environment import user_name
    from tidal.tracking.fluent import start_run

    if not isinstance(pipeline, Pipeline):
        raise InvalidValueError(f"run_pipeline takes a @tidal.pipeline, got "
                                f"{type(pipeline).__name__}", field="pipeline")
    if executor not in EXECUTORS:
        raise InvalidValueError(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}",
                                field="executor")
    values = pipeline.parameters(dict(params or {}))
    graph = pipeline.build(**values)
    ws = workspace or current_workspace()
    run = start_run(pipeline.name, name=pipeline.name, workspace=ws, parent=parent,
                    params={k: json.dumps(v) if not isinstance(v, str) else v
                            for k, v in values.items()},
                    tags={"tidal.pipeline": pipeline.name, "tidal.executor": executor},
                    system_metrics=False)
    try:
        ws.db.write(lambda conn: conn.execute(insert(pipeline_runs).values(
            id=run.id, pipeline=pipeline.name, target=pipeline.target,
            params=json.dumps(values, sort_keys=True, default=str), executor=executor,
            status="running", created_at=now_ms(), created_by=user_name(),
            code_digest=code_digest(pipeline), graph=json.dumps(
                [[name, sorted(graph.nodes[name].upstream)] for name in graph.order]))))
        result = PipelineRun(run.id, pipeline.name, "running", workspace=ws)
        _execute(graph, ws, result, executor, cache, on_step)
    except BaseException as error:
        run.end("failed", error=f"{type(error).__name__}: {error}")
        raise
    run.end("finished")
    return result


def resume_pipeline(run_id: str, *, executor: str | None = None, cache: bool = True,
                    workspace: Workspace | None = None,
                    on_step: Callable[[StepRecord], None] | None = None,
                    trust_code: bool = False) -> PipelineRun:
    """Finish a pipeline run that was killed or failed: steps that finished keep their
    outputs and do not run again; the others run, on ``executor`` (default: the run's).

    The run's stored target is imported only when the source it names is, byte for byte, the
    code the run recorded and defines that pipeline (UntrustedCodeError otherwise, before any
    import); ``trust_code=True`` imports the stored target as it is."""
    from tidal.tracking import store
    from tidal.tracking.schema import runs

    ws = workspace or current_workspace()
    with ws.db.read() as conn:
        row = conn.execute(select(pipeline_runs).where(pipeline_runs.c.id == run_id)).first()
        if row is None:
            raise NotFoundError(f"no pipeline run {run_id!r} in this workspace", field="run_id")
        records = conn.execute(select(step_runs).where(
            step_runs.c.pipeline_run_id == run_id)).all()
    if row.status == "finished":
        raise InvalidValueError(f"pipeline run {run_id} already finished; run the pipeline "
                                "again instead", field="run_id")
    pipeline = load_recorded(
        row.target, row.code_digest, trust_code=trust_code, field="target",
        remedy=f"If you trust the code this target names now, resume with trust_code=True "
               f"(Python) / tidal pipeline resume {run_id} --trust-code (CLI)")
    graph = pipeline.build(**json.loads(row.params))
    result = PipelineRun(run_id, row.pipeline, "running", workspace=ws,
                         recorded={record.node for record in records})
    for record in records:
        if record.status in ("done", "cached") and record.node in graph.nodes:
            result.steps[record.node] = StepRecord(
                record.node, record.step, record.status, record.cache_key, record.run_id,
                record.cached_from, json.loads(record.outputs), record.attempts)
    # the killed process left its step runs and itself "running": they end as killed, and the
    # pipeline's tracked run is reopened for the steps that run now
    ws.db.write(lambda conn: conn.execute(update(runs).where(
        runs.c.parent_id == run_id, runs.c.status == "running").values(
        status="killed", end_time=now_ms())))
    ws.db.write(lambda conn: conn.execute(update(runs).where(runs.c.id == run_id).values(
        status="running", end_time=None, error=None)))
    ws.db.write(lambda conn: conn.execute(update(pipeline_runs).where(
        pipeline_runs.c.id == run_id).values(status="running", ended_at=None)))
    try:
        _execute(graph, ws, result, executor or row.executor, cache, on_step)
    except BaseException as error:
        store.end_run(ws, run_id, "failed", {"end_time": now_ms(),
                                             "error": f"{type(error).__name__}: {error}"})
        raise
    store.end_run(ws, run_id, "finished", {"end_time": now_ms()})
    return result


def _execute(graph: Graph, ws: Workspace, result: PipelineRun, executor: str, cache: bool,
             on_step: Callable[[StepRecord], None] | None) -> None:
    """Drive the graph to its end, record the pipeline run's status, raise on failure."""
    runner = make_executor(executor)
    try:
        _drive(graph, ws, result, runner, cache, on_step or (lambda record: None))
    except BaseException:
        # an interrupt or a store failure outside any step: the run and whatever was running
        # end failed, so that resume picks them up
        def work(conn: Any) -> None:
            conn.execute(update(step_runs).where(step_runs.c.pipeline_run_id == result.id,
                                                 step_runs.c.status == "running")
                         .values(status="failed", ended_at=now_ms(),
                                 error="the pipeline's driver stopped while it ran"))
            conn.execute(update(pipeline_runs).where(pipeline_runs.c.id == result.id)
                         .values(status="failed", ended_at=now_ms()))

        ws.db.write(work)
        result.status = "failed"
        raise
    finally:
        runner.close()
    failed = [r for r in result.steps.values() if r.status == "failed"]
    result.status = "failed" if failed else "finished"
    ws.db.write(lambda conn: conn.execute(update(pipeline_runs).where(
        pipeline_runs.c.id == result.id).values(status=result.status, ended_at=now_ms())))
    if failed:
        error = StepFailedError(
            f"pipeline {graph.pipeline!r} run {result.id}: step(s) "
            f"{', '.join(r.node for r in failed)} failed; "
            f"{sum(r.status == 'skipped' for r in result.steps.values())} step(s) "
            f"downstream did not run.\n{failed[0].error}", field="step")
        error.run = result
        raise error


def _drive(graph: Graph, ws: Workspace, result: PipelineRun, runner: Any, cache: bool,
           on_step: Callable[[StepRecord], None]) -> None:
    pending = [name for name in graph.order if name not in result.steps]
    running: dict[Future[dict[str, Any]], tuple[StepRecord, int]] = {}
    blocked: set[str] = set()
    while pending or running:
        for name in list(pending):
            node = graph.nodes[name]
            if name in blocked:
                pending.remove(name)
                record = StepRecord(name, node.step.name, "skipped", "")
                result.steps[name] = record
                _record_step(ws, result, record, None)
                on_step(record)
                continue
            upstream = [result.steps.get(n) for n in node.upstream]
            if not all(r is not None and r.status in ("done", "cached") for r in upstream):
                continue
            pending.remove(name)
            inputs = {arg: result.steps[ref.node].outputs[ref.index]  # type: ignore[index]
                      for arg, ref in node.inputs.items()}
            key = cache_key(node, {arg: ref["digest"] for arg, ref in inputs.items()})
            hit = _cached(ws, key) if cache and node.step.options.cache else None
            if hit is not None:
                record = StepRecord(name, node.step.name, "cached", key, cached_from=hit.id,
                                    outputs=json.loads(hit.outputs))
                result.steps[name] = record
                _record_step(ws, result, record, now_ms())
                on_step(record)
                continue
            record = StepRecord(name, node.step.name, "running", key)
            result.steps[name] = record
            started = now_ms()
            _record_step(ws, result, record, started)
            on_step(record)
            task = {"db_url": ws.settings.db_url, "artifacts": ws.settings.artifacts,
                    "target": node.step.target, "node": name, "pipeline": graph.pipeline,
                    "params": node.params, "inputs": inputs, "parent": result.id}
            running[runner.submit(task)] = (record, started)
        if not running:
            continue
        done, _ = wait(list(running), return_when=FIRST_COMPLETED)
        for future in done:
            record, started = running.pop(future)
            try:
                answer = future.result()
            except TidalError as error:
                record.status, record.error = "failed", error.message
                blocked |= graph.descendants(record.node)
            except Exception as error:  # noqa: BLE001 - a worker that died, reported as such
                record.status = "failed"
                record.error = f"{type(error).__name__}: {error}"
                blocked |= graph.descendants(record.node)
            else:
                record.status, record.outputs = "done", answer["outputs"]
                record.run_id, record.attempts = answer["run_id"], answer["attempts"]
            _record_step(ws, result, record, started)
            on_step(record)
