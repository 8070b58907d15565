"""Request ids that only the inference server issues, and that any of its workers can check.

An id is ``<random>.<rows>-<mac>``: 96 random bits (so no two answers share an id), the number
of rows the request had (so feedback for it can be checked for shape), and a 128-bit keyed
BLAKE2b MAC over the endpoint, the random part and the rows. The key is a secret of the
workspace, generated once and kept in the metadata store (table ``serving_secrets``), so every
worker of every server of one workspace issues ids the others accept, and tells at once,
without a lookup and before the answering worker's prediction log is written, whether an id
came from a server of the workspace or was made up. An id given for one endpoint is refused
for another.

Who can read the metadata store can mint ids: the same people who can write the prediction log
and the feedback directly. A client's own id never becomes a request id; servers echo it back
beside the id they issue.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select

from tidal.ids import now_ms
from tidal.serving.schema import serving_secrets
from tidal.store.db import upsert

if TYPE_CHECKING:
    from tidal.store.workspace import Workspace

SECRET_NAME = "request-ids"
MAX_ROWS = 10**7
_RANDOM_BYTES = 12
_MAC_BYTES = 16
_SHAPE = re.compile(r"([0-9a-f]{24})\.([1-9][0-9]{0,6})-([0-9a-f]{32})")


def workspace_secret(workspace: Workspace, name: str) -> bytes:
    """The workspace's secret called ``name``, made (32 random bytes) if it has none yet.
    Servers starting at once agree: the first insert wins and everyone reads it back."""
    db = workspace.db

    def get_or_make(conn: Connection) -> str:
        conn.execute(upsert(conn, serving_secrets).values(
            name=name, value=secrets.token_hex(32), created_at=now_ms())
            .on_conflict_do_nothing(index_elements=["name"]))
        return conn.execute(select(serving_secrets.c.value).where(
            serving_secrets.c.name == name)).scalar_one()

    with db.read() as conn:
        found = conn.execute(select(serving_secrets.c.value).where(
            serving_secrets.c.name == name)).scalar_one_or_none()
    return bytes.fromhex(found if found is not None else db.write(get_or_make))


def claimed_rows(request_id: str) -> int | None:
    """The rows an id of the issued shape says its request had, unchecked; None for an id of
    another shape (one written by a replay straight into the log)."""
    match = _SHAPE.fullmatch(request_id)
    return None if match is None else int(match.group(2))


class RequestIds:
    """Issues request ids under one key and checks them; one per server worker."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a request-id key needs at least 16 bytes")
        self._key = key

    @classmethod
    def for_workspace(cls, workspace: Workspace) -> RequestIds:
        """The issuer every server of ``workspace`` shares."""
        return cls(workspace_secret(workspace, SECRET_NAME))

    def _mac(self, endpoint: str, body: str) -> str:
        message = f"{endpoint}\x00{body}".encode()
        return hashlib.blake2b(message, key=self._key, digest_size=_MAC_BYTES).hexdigest()

    def issue(self, endpoint: str, rows: int) -> str:
        """A fresh id for an answer of ``endpoint`` to a request of ``rows`` rows."""
        body = f"{secrets.token_hex(_RANDOM_BYTES)}.{min(max(rows, 1), MAX_ROWS)}"
        return f"{body}-{self._mac(endpoint, body)}"

    def rows(self, endpoint: str, request_id: str) -> int | None:
        """The rows of the request that ``request_id`` answered, when this key issued it for
        ``endpoint``; None for any other id."""
        match = _SHAPE.fullmatch(request_id)
        if match is None:
            return None
        body = f"{match.group(1)}.{match.group(2)}"
        if not hmac.compare_digest(self._mac(endpoint, body), match.group(3)):
            return None
        return int(match.group(2))
