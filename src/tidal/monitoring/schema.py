"""Tables of alerting: the state of each rule for each thing it watches, and every alert sent.

The state row is what turns a condition that holds on many evaluations into one alert: it
remembers since when the condition has held (for rules with a duration), whether the alert is
firing, and when it last notified (for the cooldown).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from tidal.store.schema import KEY_LENGTH, Millis, RowId, new_metadata

metadata = new_metadata()

# ``subject``: what the rule watched (an endpoint, a model version); ``pending_since``: when the
# condition started holding, not yet for long enough to fire.
alert_states = Table(
    "alert_states",
    metadata,
    Column("rule", String(KEY_LENGTH), nullable=False),
    Column("subject", String(KEY_LENGTH), nullable=False),
    Column("firing", Boolean, nullable=False),
    Column("pending_since", Millis, nullable=True),
    Column("fired_at", Millis, nullable=True),
    Column("resolved_at", Millis, nullable=True),
    Column("last_notified_at", Millis, nullable=True),
    Column("notifications", Integer, nullable=False),
    Column("last_value", Float, nullable=True),
    Column("updated_at", Millis, nullable=False),
    PrimaryKeyConstraint("rule", "subject"),
)

# ``kind``: firing, resolved or repeat; ``actions``: JSON of each action's outcome.
alert_events = Table(
    "alert_events",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("rule", String(KEY_LENGTH), nullable=False),
    Column("subject", String(KEY_LENGTH), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("value", Float, nullable=True),
    Column("message", Text, nullable=False),
    Column("actions", Text, nullable=False),
    Column("at", Millis, nullable=False),
    Index(None, "rule", "id"),
)
