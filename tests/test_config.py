"""Settings resolution: argument, then TIDAL_* variables, then tidal.toml, then ./.tidal."""

from __future__ import annotations

import os
import subprocess
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


# -- trusting a config found on disk (CVE-2022-24765, git's "dubious ownership") ------------

NOBODY = 65534


def test_a_config_owned_by_another_user_is_refused_with_how_to_allow_it(tmp_path):
    shared = tmp_path / "shared"
    nested = shared / "project"
    nested.mkdir(parents=True)
    config = shared / "tidal.toml"
    config.write_text('db_url = "postgresql://attacker@evil/db"\n')
    os.chown(config, NOBODY, NOBODY)
    with pytest.raises(ConfigError, match=r"belongs to another user \(uid 65534.*"
                       rf"TIDAL_SAFE_DIRECTORIES={shared}") as caught:
        resolve_settings(env={}, cwd=nested)
    assert caught.value.field == "TIDAL_SAFE_DIRECTORIES"
    allowed = resolve_settings(env={"TIDAL_SAFE_DIRECTORIES": f"/elsewhere{os.pathsep}{shared}"},
                               cwd=nested)
    assert allowed.db_url == "postgresql+psycopg://attacker@evil/db"
    assert resolve_settings(env={"TIDAL_SAFE_DIRECTORIES": "*"}, cwd=nested).db_url == \
        allowed.db_url


def test_the_implicit_workspace_folder_of_another_user_is_refused(tmp_path):
    (tmp_path / ".tidal").mkdir()
    os.chown(tmp_path / ".tidal", NOBODY, NOBODY)
    with pytest.raises(ConfigError, match="belongs to another user"):
        resolve_settings(env={}, cwd=tmp_path)
    # chosen explicitly, the folder is the user's decision and is not second-guessed
    assert resolve_settings(tmp_path / ".tidal", env={}, cwd=tmp_path).home == \
        tmp_path / ".tidal"
    assert resolve_settings(env={"TIDAL_SAFE_DIRECTORIES": str(tmp_path / ".tidal")},
                            cwd=tmp_path).home == tmp_path / ".tidal"


def test_a_config_every_user_may_write_is_refused(tmp_path):
    config = tmp_path / "tidal.toml"
    config.write_text('home = "store"\n')
    config.chmod(0o666)
    with pytest.raises(ConfigError, match=r"can be changed by every user.*chmod o-w"):
        resolve_settings(env={}, cwd=tmp_path)
    config.chmod(0o644)
    assert resolve_settings(env={}, cwd=tmp_path).home == tmp_path / "store"


def test_the_search_stops_at_home_and_at_ceiling_directories(tmp_path):
    (tmp_path / "tidal.toml").write_text('home = "from-above"\n')
    user_home = tmp_path / "home" / "me"
    project = user_home / "project"
    project.mkdir(parents=True)
    default = project / ".tidal"
    assert resolve_settings(env={"HOME": str(user_home)}, cwd=project).home == default
    ceiling = {"TIDAL_CEILING_DIRECTORIES": str(tmp_path / "home")}
    assert resolve_settings(env=ceiling, cwd=project).home == default
    assert resolve_settings(env={}, cwd=project).home == tmp_path / "from-above"
    with pytest.raises(ConfigError, match="TIDAL_CEILING_DIRECTORIES holds 'relative'"):
        resolve_settings(env={"TIDAL_CEILING_DIRECTORIES": "relative"}, cwd=project)


def test_the_search_does_not_cross_into_another_filesystem(tmp_path):
    (tmp_path / "tidal.toml").write_text('home = "from-above"\n')
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tidal-test", str(mount_point)], check=True)
    try:
        inside = mount_point / "project"
        inside.mkdir()
        assert os.stat(inside).st_dev != os.stat(tmp_path).st_dev
        assert resolve_settings(env={}, cwd=inside).home == inside / ".tidal"
        (mount_point / "tidal.toml").write_text('home = "on-the-mount"\n')
        assert resolve_settings(env={}, cwd=inside).home == mount_point / "on-the-mount"
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_run_liveness_settings_are_validated(tmp_path):
    settings = resolve_settings(env={"TIDAL_RUN_HEARTBEAT_INTERVAL": "2",
                                     "TIDAL_RUN_TIMEOUT": "5"}, cwd=tmp_path)
    assert (settings.run_heartbeat_interval, settings.run_timeout) == (2.0, 5.0)
    defaults = resolve_settings(env={}, cwd=tmp_path)
    assert (defaults.run_heartbeat_interval, defaults.run_timeout) == (30.0, 600.0)
    with pytest.raises(ConfigError, match="TIDAL_RUN_TIMEOUT must be a number of seconds > 0"):
        resolve_settings(env={"TIDAL_RUN_TIMEOUT": "0"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="at least twice run_heartbeat_interval") as caught:
        resolve_settings(env={"TIDAL_RUN_TIMEOUT": "30"}, cwd=tmp_path)
    assert caught.value.field == "run_timeout"
    (tmp_path / "tidal.toml").write_text('run_timeout = "soon"\n')
    with pytest.raises(ConfigError, match="run_timeout must be a number"):
        resolve_settings(env={}, cwd=tmp_path)
