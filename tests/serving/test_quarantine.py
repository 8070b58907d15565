"""The supervisor's crash ledger: when crashes quarantine an endpoint, what the quarantine
says, and what a lift leaves behind; and the serve options that size it."""

from __future__ import annotations

import json

import pytest

from tidal.errors import InvalidValueError
from tidal.serving.quarantine import CrashLedger, board_path, write_board
from tidal.serving.server import serve


def test_uncertain_crashes_quarantine_after_n_within_the_window_and_certain_ones_at_once():
    ledger = CrashLedger(after=3, window_s=60)
    assert ledger.crash("web", 4, "models:/m/1", "SIGKILL by the OOM killer", now=0) is None
    assert ledger.crash("web", 4, "models:/m/1", "SIGKILL by the OOM killer", now=30) is None
    # The first crash has left the window: two in it, not three.
    assert ledger.crash("web", 4, "models:/m/1", "SIGKILL by the OOM killer", now=61) is None
    quarantine = ledger.crash("web", 4, "models:/m/2", "exit code 3 during predict", now=62)
    assert quarantine is not None and quarantine.crashes == 3
    assert (quarantine.endpoint, quarantine.revision, quarantine.model_uri) == \
        ("web", 4, "models:/m/2")
    assert ledger.crash("web", 4, "models:/m/2", "SIGSEGV", certain=True, now=63) is None
    assert ledger.totals == {("web", "models:/m/1"): 3, ("web", "models:/m/2"): 2}
    certain = ledger.crash("api", 1, "models:/x/9", "SIGSEGV during load", certain=True, now=0)
    assert certain is not None and certain.crashes == 1
    assert set(ledger.quarantined) == {"web", "api"}


def test_a_lift_starts_the_count_again_and_the_board_keeps_the_crash_totals(tmp_path):
    ledger = CrashLedger(after=2, window_s=600)
    ledger.crash("web", 1, "models:/m/1", "SIGSEGV during predict", now=0)
    assert ledger.crash("web", 1, "models:/m/1", "SIGSEGV during predict", now=1) is not None
    assert ledger.lift("web") is not None and ledger.lift("web") is None
    assert ledger.crash("web", 2, "models:/m/1", "SIGSEGV during predict", now=2) is None
    write_board(tmp_path, ledger)
    board = json.loads(board_path(tmp_path).read_text())
    assert board == {"quarantined": {},
                     "crashes": [{"endpoint": "web", "model": "models:/m/1", "count": 3}]}


def test_the_message_says_which_model_how_often_since_when_and_how_to_lift_it():
    ledger = CrashLedger(after=1)
    quarantine = ledger.crash("web", 7, "models:/m/3", "SIGSEGV during predict")
    message = quarantine.message()
    for part in ("endpoint 'web' (revision 7) is quarantined", "models:/m/3",
                 "1 time since 20", "SIGSEGV during predict", "deploy a new revision",
                 "tidal deploy web --rollback", "restart the server"):
        assert part in message, message


@pytest.mark.parametrize(("option", "value", "field"), [
    ("quarantine_after", 0, "quarantine_after"), ("quarantine_after", 2.5, "quarantine_after"),
    ("quarantine_window", 0, "quarantine_window"), ("quarantine_window", True,
                                                    "quarantine_window")])
def test_bad_quarantine_options_are_refused_by_name(option, value, field):
    with pytest.raises(InvalidValueError) as error:
        serve(["web"], workers=2, **{option: value})
    assert error.value.field == field
