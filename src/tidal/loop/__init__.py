"""``tidal.loop``: the closed loop. A policy binds an endpoint, a retraining pipeline, triggers,
a gate and a canary rollout; a controller notices drift or decay, retrains on fresh labelled
traffic, gates the challenger against the champion, rolls it out step by step and promotes or
rolls it back by itself, recording every decision with its figures.
"""

from __future__ import annotations

from tidal.loop.controller import Controller, retrain_action, tick
from tidal.loop.policy import (
    Gate,
    LoopPolicy,
    PolicyError,
    PolicyNotFoundError,
    Rollout,
    Training,
    Trigger,
    read_policy_file,
)
from tidal.loop.records import (
    Decision,
    LeaseHeldError,
    LeaseLostError,
    LoopState,
    apply_policy,
    get_policy,
    history,
    list_policies,
    read_state,
    request_retrain,
)
from tidal.loop.training import NotEnoughDataError

__all__ = ["Controller", "Decision", "Gate", "LeaseHeldError", "LeaseLostError", "LoopPolicy",
           "LoopState", "NotEnoughDataError", "PolicyError", "PolicyNotFoundError", "Rollout",
           "Training", "Trigger", "apply_policy", "get_policy", "history", "list_policies",
           "read_policy_file", "read_state", "request_retrain", "retrain_action", "tick"]
