"""Tables of serving endpoints and of every revision of their routes.

An endpoint row points at its current revision; revisions are never changed, so a rollback is
a new revision that copies an older one's configuration, and the whole history of what served
traffic when stays readable.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Integer, PrimaryKeyConstraint, String, Table, Text

from tidal.store.schema import KEY_LENGTH, Millis, new_metadata

metadata = new_metadata()

endpoints = Table(
    "endpoints",
    metadata,
    Column("name", String(KEY_LENGTH), primary_key=True),
    Column("revision", Integer, nullable=False),
    Column("created_at", Millis, nullable=False),
    Column("updated_at", Millis, nullable=False),
)

# ``config``: JSON of the routes, shadows and serving settings; ``previous``: the revision that
# was current before this one (what a rollback restores); ``action``: deploy or rollback.
endpoint_revisions = Table(
    "endpoint_revisions",
    metadata,
    Column("endpoint", String(KEY_LENGTH), ForeignKey("endpoints.name"), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("config", Text, nullable=False),
    Column("previous", Integer, nullable=True),
    Column("action", String(16), nullable=False),
    Column("created_at", Millis, nullable=False),
    Column("created_by", String(KEY_LENGTH), nullable=True),
    PrimaryKeyConstraint("endpoint", "revision"),
)

# Secrets every server of the workspace shares, generated once on first use: ``request-ids``
# keys the MAC that makes a request id checkable by any worker (see serving/request_ids.py).
# Whoever can read this table can mint ids; that is whoever can read the metadata store.
serving_secrets = Table(
    "serving_secrets",
    metadata,
    Column("name", String(KEY_LENGTH), primary_key=True),
    Column("value", String(128), nullable=False),
    Column("created_at", Millis, nullable=False),
)
