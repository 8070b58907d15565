"""Settings resolution: argument, then TIDAL_* variables, then tidal.toml, then ./.tidal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidal.config import DEFAULT_PRICES, normalize_db_url, resolve_settings
from tidal.errors import ConfigError


def test_defaults_to_dot_tidal_in_the_current_folder(tmp_path):
    settings = resolve_settings(env={}, cwd=tmp_path)
    assert settings.home == tmp_path / ".tidal"
    assert settings.db_url == f"sqlite:///{tmp_path / '.tidal' / 'tidal.db'}"
    assert settings.artifacts == str(tmp_path / ".tidal" / "artifacts")
    assert dict(settings.prices) == DEFAULT_PRICES
    assert settings.online_store is None  # the feature store uses <home>/online.db


def test_the_online_store_setting_keeps_urls_and_anchors_paths(tmp_path):
    (tmp_path / "tidal.toml").write_text('online_store = "serving/online.db"\n')
    nested = tmp_path / "a"
    nested.mkdir()
    assert resolve_settings(env={}, cwd=nested).online_store == str(
        tmp_path / "serving" / "online.db")
    env = {"TIDAL_ONLINE_STORE": "redis://127.0.0.1:6379/0"}
    assert resolve_settings(env=env, cwd=nested).online_store == "redis://127.0.0.1:6379/0"


def test_environment_overrides_the_default(tmp_path):
    env = {"TIDAL_HOME": str(tmp_path / "home"), "TIDAL_ARTIFACTS": "s3://bucket/prefix/",
           "TIDAL_PRICE_CPU_HOUR": "0.1", "TIDAL_SYSTEM_METRICS_INTERVAL": "2"}
    settings = resolve_settings(env=env, cwd=tmp_path)
    assert settings.home == tmp_path / "home"
    assert settings.db_url.endswith("/home/tidal.db")
    assert settings.artifacts == "s3://bucket/prefix"
    assert settings.prices["cpu_hour"] == 0.1
    assert settings.system_metrics_interval == 2.0


def test_config_file_is_found_upwards_and_paths_are_relative_to_it(tmp_path):
    (tmp_path / "tidal.toml").write_text(
        'home = "store"\ndb_url = "postgresql://u@db/tidal"\n[prices]\ngpu_hour = 1.5\n')
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    settings = resolve_settings(env={}, cwd=nested)
    assert settings.home == tmp_path / "store"
    assert settings.db_url == "postgresql+psycopg://u@db/tidal"
    assert settings.prices["gpu_hour"] == 1.5


def test_arguments_win_over_environment_and_file(tmp_path):
    (tmp_path / "tidal.toml").write_text('db_url = "sqlite:///from-file.db"\n')
    env = {"TIDAL_DB_URL": "sqlite:///from-env.db"}
    assert resolve_settings(env=env, cwd=tmp_path).db_url == "sqlite:///from-env.db"
    settings = resolve_settings(tmp_path / "ws", tmp_path / "art", env=env, cwd=tmp_path)
    assert settings.home == tmp_path / "ws"
    assert settings.artifacts == str(tmp_path / "art")
    assert resolve_settings("x.db", env=env, cwd=tmp_path).db_url.endswith("/x.db")


@pytest.mark.parametrize("content, message", [
    ("hom = 'x'", "unknown setting"),
    ("home = 3", "must be a string"),
    ("[prices]\ncpu_hour = 'cheap'", "must be a number"),
    ("[prices]\ncpu_hour = -1", ">= 0"),
    ("[prices]\ntpu_hour = 1", "unknown price"),
    ("prices = 3", "must be a table"),
    ("system_metrics_interval = 'often'", "must be a number"),
    ("not toml at all ===", "cannot read"),
])
def test_bad_config_files_are_refused_with_the_culprit(tmp_path, content, message):
    (tmp_path / "tidal.toml").write_text(content)
    with pytest.raises(ConfigError, match=message):
        resolve_settings(env={}, cwd=tmp_path)


@pytest.mark.parametrize("value, expected", [
    ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
    ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
    ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
])
def test_db_urls_are_normalised(value, expected):
    assert normalize_db_url(value, Path("/")) == expected


@pytest.mark.parametrize("value", ["", "   ", "mysql://u@h/db", "oracle://x"])
def test_unsupported_db_urls_are_refused(value):
    with pytest.raises(ConfigError, match="db_url"):
        normalize_db_url(value, Path("/"))
