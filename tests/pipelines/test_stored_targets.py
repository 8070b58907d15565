"""Resume imports a run's stored target only when it names the code the run recorded.

Someone who can write to the metadata store can rewrite a run's target and the digest stored
with it. Each test does so, pointing the run at a module that writes a marker file when
imported, and checks that resume refuses it, naming the field and the trust switch, before
importing anything; and that a run whose code changed resumes only with ``trust_code=True``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from tests.planted import on_import_path, plant
from tidal.ids import digest_bytes
from tidal.pipelines import StepFailedError, UntrustedCodeError
from tidal.pipelines.graph import load_pipeline
from tidal.pipelines.history import get_pipeline_run
from tidal.pipelines.runner import resume_pipeline, run_pipeline
from tidal.pipelines.schema import pipeline_runs
from tidal.store.workspace import Workspace

#: A pipeline whose one step fails until its flag file exists.
FLOW = '''
import tidal


@tidal.step
def check(flag: str) -> int:
    if not Path(flag).exists():
        raise RuntimeError("not yet")
    return 1


@tidal.pipeline
def flow(flag: str):
    check(flag)
'''


@pytest.fixture
def lib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on the import path (by absolute path, as an installed package would be)."""
    with on_import_path(tmp_path / "lib", monkeypatch) as folder:
        yield folder


def failed_run(lib: Path, tmp_path: Path) -> tuple[str, str, Path]:
    """A run of FLOW that failed: its id, the module's name and the flag that lets it pass."""
    name = plant(lib, tmp_path / "flow-imported", FLOW)
    flag = tmp_path / "flag"
    with pytest.raises(StepFailedError) as failed:
        run_pipeline(load_pipeline(f"{name}:flow"), {"flag": str(flag)})
    return failed.value.run.id, name, flag


def rewrite(ws: Workspace, run_id: str, **values: Any) -> None:
    """Change the run's row as someone with write access to the metadata store could."""
    ws.db.write(lambda conn: conn.execute(update(pipeline_runs).where(
        pipeline_runs.c.id == run_id).values(**values)))


def refused(run_id: str, *words: str) -> UntrustedCodeError:
    with pytest.raises(UntrustedCodeError) as caught:
        resume_pipeline(run_id)
    error = caught.value
    assert error.field == "target" and error.status_code == 403
    assert "nothing was imported" in error.message
    assert "trust_code=True" in error.message and "--trust-code" in error.message
    for word in words:
        assert word in error.message
    return error


def test_a_run_records_its_code_and_graph(workspace, lib, tmp_path):
    run_id, name, _ = failed_run(lib, tmp_path)
    info, _ = get_pipeline_run(run_id)
    assert info.target == f"{name}:flow"
    assert info.code_digest == digest_bytes((lib / f"{name}.py").read_bytes())
    assert info.graph == [["check", []]]


def test_a_target_rewritten_to_another_module_is_refused_unimported(workspace, lib, tmp_path):
    run_id, _, _ = failed_run(lib, tmp_path)
    marker = tmp_path / "pwned"
    other = plant(lib, marker, FLOW)  # a real pipeline, but not the code the run recorded
    rewrite(workspace, run_id, target=f"{other}:flow")
    refused(run_id, "is not the code recorded")
    assert not marker.exists() and other not in sys.modules


def test_a_rewritten_digest_cannot_name_code_that_declares_no_pipeline(workspace, lib,
                                                                       tmp_path):
    run_id, _, _ = failed_run(lib, tmp_path)
    marker = tmp_path / "pwned"
    other = plant(lib, marker, "flow = 'anything at all'\n")
    rewrite(workspace, run_id, target=f"{other}:flow",
            code_digest=digest_bytes((lib / f"{other}.py").read_bytes()))
    refused(run_id, "does not define 'flow' with @pipeline")
    assert not marker.exists() and other not in sys.modules


@pytest.mark.parametrize("relative", [False, True])
def test_a_stored_file_path_is_never_run(workspace, lib, tmp_path, monkeypatch, relative):
    run_id, _, _ = failed_run(lib, tmp_path)
    marker = tmp_path / "pwned"
    loose = tmp_path / "loose"
    other = plant(loose, marker, FLOW)
    path = loose / f"{other}.py"
    monkeypatch.chdir(loose)
    rewrite(workspace, run_id, target=f"{path.name if relative else path}:flow",
            code_digest=digest_bytes(path.read_bytes()))
    refused(run_id, "never a file")
    assert not marker.exists()


def test_a_copy_in_the_current_directory_is_never_imported(workspace, lib, tmp_path,
                                                           monkeypatch):
    run_id, name, _ = failed_run(lib, tmp_path)
    del sys.modules[name]  # a new process: the run's module is not imported yet
    here = tmp_path / "here"
    marker = tmp_path / "pwned"
    plant(here, marker, FLOW, name=name)
    monkeypatch.chdir(here)
    monkeypatch.setattr(sys, "path", ["", *sys.path])  # as `python -c` / a REPL have it
    refused(run_id, "current directory")
    assert not marker.exists()

    rewrite(workspace, run_id, target="planted_nowhere_xyz:flow")
    refused(run_id, "no module 'planted_nowhere_xyz' on the import path")


def test_code_changed_since_the_run_resumes_only_when_trusted(workspace, lib, tmp_path):
    run_id, name, flag = failed_run(lib, tmp_path)
    source = lib / f"{name}.py"
    source.write_text(source.read_text() + "\n# changed after the run\n")
    flag.write_text("")
    refused(run_id, "changed since", str(source))
    assert get_pipeline_run(run_id)[0].status == "failed"  # refused before touching the run

    result = resume_pipeline(run_id, trust_code=True)
    assert result.status == "finished" and result.output("check") == 1


def test_a_run_recorded_without_a_digest_resumes_only_when_trusted(workspace, lib, tmp_path):
    run_id, _, flag = failed_run(lib, tmp_path)
    rewrite(workspace, run_id, code_digest=None)
    refused(run_id, "no digest of its code was recorded")
    flag.write_text("")
    assert resume_pipeline(run_id, trust_code=True).status == "finished"


def test_the_recorded_code_resumes(workspace, lib, tmp_path):
    run_id, _, flag = failed_run(lib, tmp_path)
    flag.write_text("")
    assert resume_pipeline(run_id).status == "finished"
