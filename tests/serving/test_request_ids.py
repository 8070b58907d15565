"""Request ids: issued under the workspace's secret, checkable by any process of it, bound to
their endpoint, refused when forged or tampered with."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tidal.serving.request_ids import RequestIds, claimed_rows, workspace_secret
from tidal.store.workspace import open_workspace


def test_an_issued_id_is_told_apart_from_made_up_and_tampered_ones(workspace):
    ids = RequestIds.for_workspace(workspace)
    issued = ids.issue("ctr", 3)
    assert ids.rows("ctr", issued) == 3 and claimed_rows(issued) == 3
    body, mac = issued.rsplit("-", 1)
    random_part = body.split(".")[0]
    assert ids.rows("other", issued) is None  # bound to its endpoint
    assert ids.rows("ctr", f"{random_part}.4-{mac}") is None  # rows changed
    assert ids.rows("ctr", f"{body}-{'0' * 32}") is None
    assert ids.rows("ctr", f"{'f' * 24}.3-{mac}") is None
    assert ids.rows("ctr", "req-42") is None and claimed_rows("req-42") is None
    assert len({ids.issue("ctr", 1) for _ in range(1000)}) == 1000
    assert len(issued) <= 128


def test_every_process_of_a_workspace_shares_one_secret_and_others_do_not(backend, workspace,
                                                                           tmp_path):
    issued = RequestIds.for_workspace(workspace).issue("ctr", 1)
    code = ("import sys; from tidal.store.workspace import current_workspace; "
            "from tidal.serving.request_ids import RequestIds; "
            "print(RequestIds.for_workspace(current_workspace()).rows('ctr', sys.argv[1]))")
    env = {**os.environ, **backend.env()}
    out = subprocess.run([sys.executable, "-c", code, issued], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "1"
    elsewhere = open_workspace(f"sqlite:///{tmp_path / 'elsewhere.db'}",
                               str(tmp_path / "elsewhere"))
    assert RequestIds.for_workspace(elsewhere).rows("ctr", issued) is None
    assert workspace_secret(workspace, "request-ids") == workspace_secret(workspace,
                                                                          "request-ids")


def test_a_short_key_is_refused():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        RequestIds(b"short")
