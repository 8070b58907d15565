"""Checks on what users log: keys, metric values, steps, params and tags.

Metric values must be real numbers (int, float, NumPy scalars; not bool, not strings). NaN and
+/-inf are stored faithfully: a diverging loss is a fact worth keeping. The checks run on the
``log_metric`` hot path, so a key that passed once is remembered.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping
from typing import Any

from tidal.errors import InvalidKeyError, InvalidValueError
from tidal.store.schema import KEY_LENGTH

MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_STEP = 2**63 - 1
_KEY_PATTERN = re.compile(r"[A-Za-z0-9_\-. /:]+")
_valid_keys: set[str] = set()


def check_key(key: Any, kind: str) -> str:
    """Return ``key`` if it is an acceptable metric/param/tag key, else raise InvalidKeyError."""
    if key in _valid_keys:
        return key
    if not isinstance(key, str):
        raise InvalidKeyError(f"{kind} key must be a string, got {type(key).__name__} {key!r}",
                              field=f"{kind} key")
    if not key or not key.strip():
        raise InvalidKeyError(f"{kind} key is empty; give a name such as 'auc'",
                              field=f"{kind} key")
    if len(key) > KEY_LENGTH:
        raise InvalidKeyError(
            f"{kind} key {key[:40]!r}... is {len(key)} characters long; the limit is "
            f"{KEY_LENGTH}", field=f"{kind} key")
    if not _KEY_PATTERN.fullmatch(key):
        raise InvalidKeyError(
            f"{kind} key {key!r} has characters that are not allowed; use letters, digits, "
            "'_', '-', '.', ' ', '/' and ':'", field=f"{kind} key")
    if len(_valid_keys) < 100_000:
        _valid_keys.add(key)
    return key


def check_metric_value(key: str, value: Any) -> tuple[float, bool]:
    """Return (value, is_nan) for a metric value, refusing anything that is not a real number."""
    if type(value) is float:
        return (0.0, True) if value != value else (value, False)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidValueError(
            f"metric '{key}' value must be a real number (int, float or NumPy scalar), got "
            f"{type(value).__name__} {value!r:.60}", field=f"metrics.{key}")
    number = float(value)
    if math.isnan(number):
        return 0.0, True
    return number, False


def check_step(key: str, step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise InvalidValueError(
            f"metric '{key}' step must be an integer, got {type(step).__name__} {step!r:.40}",
            field="step")
    step = int(step)
    if not -MAX_STEP <= step <= MAX_STEP:
        raise InvalidValueError(f"metric '{key}' step {step} is outside the 64-bit range",
                                field="step")
    return step


def check_timestamp(key: str, timestamp: Any) -> int:
    """Timestamps are integer milliseconds since the epoch."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, numbers.Integral) \
            or not 0 <= int(timestamp) <= MAX_STEP:
        raise InvalidValueError(
            f"metric '{key}' timestamp must be a non-negative integer of milliseconds since "
            f"the epoch, got {timestamp!r:.40}", field="timestamp")
    return int(timestamp)


def check_text_value(key: str, value: Any, kind: str, limit: int) -> str:
    """Params and tags are stored as text: str(value), bounded in length."""
    if value is None:
        raise InvalidValueError(f"{kind} '{key}' value is None; give a value",
                                field=f"{kind}s.{key}")
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        raise InvalidValueError(
            f"{kind} '{key}' value is {len(text)} characters long; the limit is {limit}",
            field=f"{kind}s.{key}")
    if "\x00" in text:
        raise InvalidValueError(f"{kind} '{key}' value contains a NUL character",
                                field=f"{kind}s.{key}")
    return text


def check_param(key: Any, value: Any) -> tuple[str, str]:
    key = check_key(key, "param")
    return key, check_text_value(key, value, "param", MAX_PARAM_VALUE)


def check_tag(key: Any, value: Any) -> tuple[str, str]:
    key = check_key(key, "tag")
    return key, check_text_value(key, value, "tag", MAX_TAG_VALUE)


def _check_mapping(values: Any, kind: str,
                   check: Callable[[Any, Any], tuple[str, str]]) -> dict[str, str]:
    if not isinstance(values, Mapping):
        raise InvalidValueError(f"{kind} must be a mapping of key to value, got "
                                f"{type(values).__name__}", field=kind)
    return dict(check(key, value) for key, value in values.items())


def check_params(values: Any) -> dict[str, str]:
    """A mapping of params, each checked; anything but a mapping is refused."""
    return _check_mapping(values, "params", check_param)


def check_tags(values: Any) -> dict[str, str]:
    """A mapping of tags, each checked; anything but a mapping is refused."""
    return _check_mapping(values, "tags", check_tag)
