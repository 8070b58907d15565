"""Fixtures for real backends: a SQLite file with local artifacts, and PostgreSQL with S3.

PostgreSQL and Redis come from TIDAL_TEST_POSTGRES_URL and TIDAL_TEST_REDIS_URL (scripts/test
starts the servers and sets them); each test gets a database, or a key prefix, of its own. S3
is moto's standalone server, started here on 127.0.0.1. Without a server its cases are skipped
locally and fail under CI, so that a green CI run always means every backend was exercised.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tidal.store.workspace import Workspace, close_all

S3_BUCKET = "tidal-test"


@dataclass(frozen=True)
class Backend:
    name: str
    db_url: str
    artifacts: str

    def env(self) -> dict[str, str]:
        """Variables that point a subprocess at this backend."""
        return {"TIDAL_DB_URL": self.db_url, "TIDAL_ARTIFACTS": self.artifacts}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test runs in its own folder with no TIDAL_* settings leaking in, and leaves no
    workspace open behind it."""
    for name in list(os.environ):
        if name.startswith("TIDAL_") and not name.startswith("TIDAL_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TIDAL_SYSTEM_METRICS_INTERVAL", "0")
    monkeypatch.chdir(tmp_path)
    yield
    import tidal

    tidal.end_run("killed")
    close_all()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's standalone S3 server on 127.0.0.1; its URL, with AWS_* pointing at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                            "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing",
                      AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    import boto3

    boto3.client("s3").create_bucket(Bucket=S3_BUCKET)
    yield url
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _service_url(variable: str) -> str:
    """The URL of a server scripts/test started; skipped locally without one, failed in CI."""
    url = os.environ.get(variable)
    if not url:
        message = f"{variable} is not set; run the tests with scripts/test"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(scope="session")
def postgres_server() -> str:
    return _service_url("TIDAL_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _service_url("TIDAL_TEST_REDIS_URL")


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    import psycopg

    name = f"tidal_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_server.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    close_all()
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite-local", "postgres-s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite-local":
        home = tmp_path / "ws"
        return Backend(request.param, f"sqlite:///{home / 'tidal.db'}", str(home / "artifacts"))
    request.getfixturevalue("s3_server")
    db_url = request.getfixturevalue("postgres_url")
    return Backend(request.param, db_url, f"s3://{S3_BUCKET}/{uuid.uuid4().hex}")


@pytest.fixture
def workspace(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A current workspace on each backend; TIDAL_* point subprocesses at the same one."""
    import tidal

    for key, value in backend.env().items():
        monkeypatch.setenv(key, value)
    return tidal.workspace(backend.db_url, backend.artifacts)
