"""Rendering shared by the commands: consoles, JSON output, errors and value formatting.

Rich is imported inside the functions, so that importing the command modules (which
``tidal --help`` does) stays cheap.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from datetime import UTC, date, datetime
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import typer

from tidal.formatting import (  # noqa: F401 - the commands format values through render
    MISSING,
    format_bytes,
    format_number,
    is_missing,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from tidal.errors import TidalError

_STATUS_STYLES = {"finished": "green", "running": "cyan", "failed": "red", "killed": "yellow"}


# -- consoles and errors ----------------------------------------------------------------------

def console(width: int | None = None) -> Console:
    """A console on the current stdout (looked up when printing, so test runners can swap it);
    ``width``: lay out at this width rather than the terminal's."""
    from rich.console import Console

    return Console(highlight=False, width=width)


def error_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def exit_code_for(error: TidalError) -> int:
    """2 for what the user typed wrong (bad value, filter, setting), 1 for everything else."""
    from tidal.errors import ConfigError, InvalidValueError

    return 2 if isinstance(error, (InvalidValueError, ConfigError)) else 1


def listing(caption: str | None = None) -> Table:
    """The borderless table every listing uses, with an optional caption under it."""
    from rich import box
    from rich.table import Table

    return Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1), collapse_padding=True,
                 caption=caption, caption_justify="left")


def print_whole(table: Table, *, most: int = 200) -> None:
    """Print ``table`` with every column: one wider than the console is laid out at its
    natural width (up to ``most`` characters; a terminal wraps the lines) instead of being
    cropped at the console's edge, which would silently drop its last columns."""
    from rich.measure import Measurement

    out = console()
    natural = Measurement.get(out, out.options.update_width(most), table).maximum
    if natural > out.width:
        out = console(width=natural)
    out.print(table, crop=False)


def print_error(message: str) -> None:
    """``error: <message>`` in red on stderr; the message is shown as written, never as markup."""
    from rich.text import Text

    text = Text("error: ", style="bold red")
    text.append(message, style="red")
    error_console().print(text)


def fail(error: TidalError) -> typer.Exit:
    """Print a Tidal error and return the exit to raise for it."""
    print_error(error.message if hasattr(error, "message") else str(error))
    return typer.Exit(exit_code_for(error))


# -- JSON -------------------------------------------------------------------------------------

def to_jsonable(value: Any) -> Any:
    """Plain JSON values: datetimes as ISO 8601, NaN and infinities as null, NumPy scalars as
    numbers, dataclasses as objects, pandas' missing markers as null."""
    if value is None or type(value) in (bool, int, str):
        return value
    if isinstance(value, bool):  # before int, of which it is a subclass
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):  # NumPy's float64 too, a float subclass orjson refuses
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    kind = type(value).__name__
    if kind in ("NaTType", "NAType"):
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.repr}
    if hasattr(value, "item") and callable(value.item):  # NumPy scalars
        return to_jsonable(value.item())
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


def dumps(data: Any) -> str:
    """Indented JSON text, through orjson when it is installed."""
    payload = to_jsonable(data)
    try:
        import orjson
    except ImportError:
        import json

        return json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False)
    return orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode("utf-8")


def print_json(data: Any) -> None:
    sys.stdout.write(dumps(data) + "\n")
    sys.stdout.flush()


# -- values -----------------------------------------------------------------------------------

def as_datetime(value: Any) -> datetime | None:
    """A timezone-aware datetime from a datetime, a pandas Timestamp or epoch milliseconds."""
    if is_missing(value):
        return None
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp (its astimezone() needs a zone)
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    raise TypeError(f"not a time: {value!r}")


def format_timestamp(value: Any) -> str:
    """Local time to the second, e.g. ``2026-03-01 14:05:09``."""
    moment = as_datetime(value)
    if moment is None:
        return MISSING
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_duration(seconds: float | None) -> str:
    """``0.42s``, ``12.3s``, ``4m 05s``, ``2h 03m``, ``3d 04h``."""
    if is_missing(seconds):
        return MISSING
    assert seconds is not None
    if seconds < 0:
        return f"-{format_duration(-seconds)}"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600:02d}h"


def format_cost(usd: float | None) -> str:
    """US dollars: cents for amounts of a cent and more, six decimals below."""
    if is_missing(usd):
        return MISSING
    assert usd is not None
    return f"${usd:,.2f}" if abs(usd) >= 0.01 else f"${usd:.6f}"


def format_value(value: Any) -> str:
    """Any cell: missing as a dash, numbers as metrics, the rest as text."""
    if is_missing(value):
        return MISSING
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_number(value)
    return str(value)


def status_text(status: Any) -> Any:
    """A run status coloured by what it means."""
    from rich.text import Text

    text = MISSING if is_missing(status) else str(status)
    return Text(text, style=_STATUS_STYLES.get(text, ""))
