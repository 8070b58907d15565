"""Settings: where the workspace lives and what compute costs.

Resolution order, first hit wins, for each setting on its own: the explicit argument, the
``TIDAL_*`` environment variable, the nearest ``tidal.toml`` (searched from the current
directory upwards), then the default (``./.tidal``). Kept free of heavy imports: it runs on
every ``import tidal`` code path that touches a workspace.

A config found on disk chooses which stores a command reads and writes, so it is trusted only
as git trusts a repository (CVE-2022-24765): the search upwards stops at a change of
filesystem, at the user's home folder and before any folder in TIDAL_CEILING_DIRECTORIES; a
``tidal.toml`` (or the implicit ``./.tidal`` workspace) owned by another user, or a
``tidal.toml`` that every user may write, is refused unless its folder is listed in
TIDAL_SAFE_DIRECTORIES (``*`` trusts every folder).
"""

from __future__ import annotations

import os
import stat
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

#: Seconds between heartbeats of a live run, and seconds of silence after which a run that
#: still says "running" is taken as killed (its process died without ending it).
DEFAULT_RUN_HEARTBEAT_INTERVAL = 30.0
DEFAULT_RUN_TIMEOUT = 600.0

_SETTING_KEYS = {"home", "db_url", "artifacts", "online_store", "system_metrics_interval",
                 "prices", "run_heartbeat_interval", "run_timeout"}


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
    #: Seconds between heartbeats of a live run.
    run_heartbeat_interval: float = DEFAULT_RUN_HEARTBEAT_INTERVAL
    #: Seconds without a heartbeat after which a "running" run is marked killed.
    run_timeout: float = DEFAULT_RUN_TIMEOUT


def _path_list(env: Mapping[str, str], name: str) -> list[str]:
    """The absolute folders of a ``TIDAL_*`` variable that holds a list separated like PATH."""
    entries = [entry for entry in env.get(name, "").split(os.pathsep) if entry]
    for entry in entries:
        if entry != "*" and not Path(entry).expanduser().is_absolute():
            raise ConfigError(f"{name} holds {entry!r}, which is not an absolute path; give "
                              f"absolute folders separated by {os.pathsep!r}", field=name)
    return entries


def check_owned(path: Path, env: Mapping[str, str] | None = None) -> None:
    """Refuse a config file or workspace folder that another user controls.

    Like git's safe.directory: the owner must be the user running Tidal (root included), and
    a config file must not be writable by every user, unless its folder (for a file) or the
    folder itself is listed in TIDAL_SAFE_DIRECTORIES. Found on disk, such a file would let
    its owner send this user's metrics, models and credentials to stores of their choosing.
    """
    if not hasattr(os, "geteuid"):  # no POSIX owners to compare (Windows)
        return
    env = os.environ if env is None else env
    folder = path if path.is_dir() else path.parent
    safe = _path_list(env, "TIDAL_SAFE_DIRECTORIES")
    if "*" in safe or any(Path(entry).expanduser().resolve() == folder for entry in safe):
        return
    info = path.stat()
    allow = (f"if you trust it, allow its folder with "
             f"TIDAL_SAFE_DIRECTORIES={folder} (several folders separated by "
             f"{os.pathsep!r}; '*' trusts every folder)")
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"{path} belongs to another user (uid {info.st_uid}; you are uid {os.geteuid()}), "
            f"so Tidal will not use it: whoever owns it would choose where your runs, models "
            f"and data go; {allow}", field="TIDAL_SAFE_DIRECTORIES")
    if not path.is_dir() and info.st_mode & stat.S_IWOTH:
        raise ConfigError(
            f"{path} can be changed by every user (mode {stat.filemode(info.st_mode)}), so "
            f"Tidal will not use it; make it yours alone with: chmod o-w {path}; or {allow}",
            field="TIDAL_SAFE_DIRECTORIES")


def find_config_file(start: Path | None = None,
                     env: Mapping[str, str] | None = None) -> Path | None:
    """Return the nearest ``tidal.toml`` at or above ``start`` (default: the cwd).

    The search never leaves the filesystem ``start`` is on (like git without
    GIT_DISCOVERY_ACROSS_FILESYSTEM), ends at the user's home folder when it starts inside
    it, and never goes up into a folder listed in TIDAL_CEILING_DIRECTORIES, so that a file
    in a shared parent folder (``/tmp``, ``/home``, a mounted share) is never picked up. The
    file found must pass :func:`check_owned`.
    """
    env = os.environ if env is None else env
    here = (start or Path.cwd()).resolve()
    ceilings = {Path(entry).expanduser().resolve()
                for entry in _path_list(env, "TIDAL_CEILING_DIRECTORIES")}
    home_raw = env.get("HOME")
    home = Path(home_raw).expanduser().resolve() if home_raw else None
    try:
        device = here.stat().st_dev
    except OSError:  # the current folder was removed: nothing to find
        return None
    for folder in (here, *here.parents):
        if folder != here and folder in ceilings:
            break
        try:
            if folder.stat().st_dev != device:
                break
        except OSError:
            break
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            check_owned(candidate, env)
            return candidate
        if folder == home:
            break
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
            field=min(unknown),
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
    config_path = find_config_file(base, env)
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
    if home_raw is None and home.is_dir():  # ./.tidal found, not chosen: trusted like a config
        check_owned(home, env)

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
    heartbeat, timeout = _run_liveness(env, file_cfg)

    return Settings(
        home=home,
        db_url=db_url,
        artifacts=artifacts_url,
        prices=_prices(file_cfg.get("prices"), env),
        system_metrics_interval=interval,
        online_store=online_raw,
        run_heartbeat_interval=heartbeat,
        run_timeout=timeout,
    )


def _run_liveness(env: Mapping[str, str], file_cfg: Mapping[str, Any]) -> tuple[float, float]:
    """The heartbeat interval and the run timeout; the timeout must leave room for several
    heartbeats, or live runs would be taken for dead ones."""
    values = []
    for key, default in (("run_heartbeat_interval", DEFAULT_RUN_HEARTBEAT_INTERVAL),
                         ("run_timeout", DEFAULT_RUN_TIMEOUT)):
        variable = f"TIDAL_{key.upper()}"
        raw = env.get(variable, file_cfg.get(key))
        name = variable if variable in env else key
        value = default if raw is None else _float_setting(name, raw)
        if value <= 0:
            raise ConfigError(f"{name} must be a number of seconds > 0, got {raw!r}", field=name)
        values.append(value)
    heartbeat, timeout = values
    if timeout < 2 * heartbeat:
        raise ConfigError(
            f"run_timeout ({timeout:g} s) must be at least twice run_heartbeat_interval "
            f"({heartbeat:g} s), or a live run could be marked killed between two heartbeats",
            field="run_timeout")
    return heartbeat, timeout
