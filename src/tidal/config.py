"""Settings: where the workspace lives and what compute costs.

Resolution order, first hit wins, for each setting on its own: the explicit argument, the
``TIDAL_*`` environment variable, the nearest ``tidal.toml`` (searched from the current
directory upwards), then the default (``./.tidal``). Kept free of heavy imports: it runs on
every ``import tidal`` code path that touches a workspace.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidal.errors import ConfigError

DEFAULT_HOME = ".tidal"
CONFIG_FILE = "tidal.toml"

#: Default on-demand prices in USD, close to a general-purpose cloud VM; override them in
#: ``[prices]`` of tidal.toml or with TIDAL_PRICE_<NAME> so that run costs match your bill.
DEFAULT_PRICES: dict[str, float] = {
    "cpu_hour": 0.048,
    "memory_gb_hour": 0.0065,
    "gpu_hour": 2.50,
}

_SETTING_KEYS = {"home", "db_url", "artifacts", "online_store", "system_metrics_interval",
                 "prices"}


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one workspace."""

    home: Path
    db_url: str
    artifacts: str
    prices: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    #: Seconds between system-metric samples of a run; 0 turns sampling off.
    system_metrics_interval: float = 10.0
    #: The online feature store: a SQLite file, or a redis:// URL; None means
    #: ``<home>/online.db``.
    online_store: str | None = None


def find_config_file(start: Path | None = None) -> Path | None:
    """Return the nearest ``tidal.toml`` at or above ``start`` (default: the cwd)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
    return None


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a tidal.toml, refusing unknown keys so that a typo is not silently ignored."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    unknown = set(data) - _SETTING_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {sorted(unknown)}; accepted: {sorted(_SETTING_KEYS)}",
            field=sorted(unknown)[0],
        )
    return data


def normalize_db_url(value: str, home: Path) -> str:
    """Turn a user-facing metadata location into a SQLAlchemy URL.

    Accepts a ``sqlite:///`` or ``postgresql://`` URL, or a plain file path (taken as a SQLite
    file). ``postgresql://`` gets the psycopg 3 driver, the one the ``postgres`` extra installs.
    """
    text = value.strip()
    if not text:
        raise ConfigError("db_url is empty; give a file path, sqlite:/// or postgresql:// URL",
                          field="db_url")
    if "://" not in text:
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = (Path.cwd() / path).resolve()
        return f"sqlite:///{path}"
    scheme = text.split("://", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    if scheme.startswith("postgresql+") or scheme in ("sqlite", "sqlite+pysqlite"):
        return text
    raise ConfigError(
        f"db_url scheme '{scheme}' is not supported; use a file path, sqlite:///path "
        "or postgresql://user@host/db",
        field="db_url",
    )


def _float_setting(name: str, raw: Any, minimum: float = 0.0) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {raw!r}", field=name) from None
    if not value >= minimum or value == float("inf"):
        raise ConfigError(f"{name} must be a finite number >= {minimum}, got {raw!r}", field=name)
    return value


def _prices(file_prices: Mapping[str, Any] | None, env: Mapping[str, str]) -> dict[str, float]:
    prices = dict(DEFAULT_PRICES)
    if file_prices is not None:
        if not isinstance(file_prices, Mapping):
            raise ConfigError("[prices] in tidal.toml must be a table", field="prices")
        for key, raw in file_prices.items():
            if key not in DEFAULT_PRICES:
                raise ConfigError(f"unknown price '{key}'; accepted: {sorted(DEFAULT_PRICES)}",
                                  field=f"prices.{key}")
            prices[key] = _float_setting(f"prices.{key}", raw)
    for key in DEFAULT_PRICES:
        raw = env.get(f"TIDAL_PRICE_{key.upper()}")
        if raw is not None:
            prices[key] = _float_setting(f"TIDAL_PRICE_{key.upper()}", raw)
    return prices


def resolve_settings(
    uri: str | os.PathLike[str] | None = None,
    artifacts: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Resolve settings from the arguments, then TIDAL_* variables, then tidal.toml, then defaults.

    ``uri`` may be a workspace folder, a SQLite file (``*.db``/``*.sqlite``), or a database URL.
    """
    env = os.environ if env is None else env
    base = cwd or Path.cwd()
    config_path = find_config_file(base)
    file_cfg = load_config_file(config_path) if config_path else {}
    file_dir = config_path.parent if config_path else base

    def from_file(key: str) -> str | None:
        value = file_cfg.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{key} in {config_path} must be a string", field=key)
        return value

    home_raw: str | None = None
    db_raw: str | None = None
    if uri is not None:
        text = os.fspath(uri)
        if "://" in text or text.endswith((".db", ".sqlite", ".sqlite3")):
            db_raw = text
        else:
            home_raw = text
    home_dir = base  # relative paths from tidal.toml are relative to that file, not the cwd
    if home_raw is None and env.get("TIDAL_HOME"):
        home_raw = env["TIDAL_HOME"]
    elif home_raw is None and from_file("home"):
        home_raw, home_dir = from_file("home"), file_dir
    home = Path(home_raw or DEFAULT_HOME).expanduser()
    if not home.is_absolute():
        home = (home_dir / home).resolve()

    db_raw = db_raw or env.get("TIDAL_DB_URL") or from_file("db_url")
    db_url = normalize_db_url(db_raw, home) if db_raw else f"sqlite:///{home / 'tidal.db'}"

    art_raw = os.fspath(artifacts) if artifacts is not None else None
    art_raw = art_raw or env.get("TIDAL_ARTIFACTS") or from_file("artifacts")
    if art_raw is None:
        artifacts_url = str(home / "artifacts")
    elif "://" in art_raw:
        artifacts_url = art_raw.rstrip("/")
    else:
        artifacts_url = str(Path(art_raw).expanduser().resolve())

    online_raw = env.get("TIDAL_ONLINE_STORE") or from_file("online_store")
    if online_raw is not None and "://" not in online_raw:
        online_path = Path(online_raw).expanduser()
        online_raw = str(online_path if online_path.is_absolute() else
                         (base if env.get("TIDAL_ONLINE_STORE") else file_dir) / online_path)

    interval_raw = env.get("TIDAL_SYSTEM_METRICS_INTERVAL", file_cfg.get("system_metrics_interval"))
    interval = 10.0 if interval_raw is None else _float_setting(
        "system_metrics_interval", interval_raw)

    return Settings(
        home=home,
        db_url=db_url,
        artifacts=artifacts_url,
        prices=_prices(file_cfg.get("prices"), env),
        system_metrics_interval=interval,
        online_store=online_raw,
    )
