"""The feature registry: definitions files, versioned applies with what changed, and stores
rebuilt from the registry."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

import tidal
from tidal.errors import InvalidValueError
from tidal.features import (
    FeatureStore,
    OnDemandFeatureError,
    apply,
    definition_history,
    list_definitions,
    load_definitions,
)
from tidal.features.registry import FeatureDefinitionNotFoundError
from tidal.features.schema import feature_definitions

NOW = datetime(2026, 11, 1, tzinfo=UTC)

DEFINITIONS = """
from datetime import timedelta

import pandas as pd

from tidal.features import (Entity, Feature, FeatureService, FeatureView,
                            on_demand_feature_view)

user = Entity("user", "user_id")
spend = FeatureView("spend", user, [Feature("total"){extra_feature}], "spend",
                    ttl=timedelta(days={ttl_days}))


@on_demand_feature_view(inputs=["spend:total"], request=[Feature("basket")],
                        features=[Feature("share")])
def share(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({{"share": frame["basket"] / frame["total"]{scale}}})


checkout = FeatureService("checkout", [spend, share], description="checkout model")
"""


def write(folder: Path, *, ttl_days: int = 7, extra_feature: str = "", scale: str = "",
          name: str = "features.py") -> Path:
    path = folder / name
    path.write_text(DEFINITIONS.format(ttl_days=ttl_days, extra_feature=extra_feature,
                                       scale=scale))
    return path


@pytest.fixture
def spend(workspace):
    return tidal.datasets.register("spend", pd.DataFrame({
        "user_id": [1, 2], "event_timestamp": [NOW - timedelta(days=1)] * 2,
        "total": [100.0, 40.0], "orders": [4, 1]}))


def rows(workspace) -> int:
    with workspace.db.read() as conn:
        return conn.execute(select(func.count()).select_from(feature_definitions)).scalar()


def summary(changes) -> list[tuple[str, str, str, int]]:
    return [(c.kind, c.name, c.action, c.version) for c in changes]


def test_apply_versions_each_definition_and_says_what_changed(workspace, spend, tmp_path):
    first = apply(load_definitions(write(tmp_path)), origin=write(tmp_path))
    assert summary(first) == [("entity", "user", "added", 1),
                              ("feature_view", "spend", "added", 1),
                              ("on_demand_view", "share", "added", 1),
                              ("feature_service", "checkout", "added", 1)]
    assert rows(workspace) == 4

    again = apply(load_definitions(write(tmp_path)))
    assert {c.action for c in again} == {"unchanged"}
    assert rows(workspace) == 4  # applying the same definitions writes nothing

    path = write(tmp_path, ttl_days=3, extra_feature=', Feature("orders", "int64")',
                 scale=" * 100")
    changes = {c.name: c for c in apply(load_definitions(path), origin=path)}
    assert changes["user"].action == "unchanged"
    assert changes["spend"].action == "changed" and changes["spend"].version == 2
    assert changes["spend"].details == ("+ feature orders (int64)",
                                        "~ ttl_seconds: 604800.0 -> 259200.0")
    assert changes["share"].details == ("~ function code changed",)
    assert changes["checkout"].details == (
        '~ features: ["spend:total", "share:share"] -> '
        '["spend:total", "spend:orders", "share:share"]',)

    listed = {d.name: d for d in list_definitions()}
    assert listed["spend"].version == 2
    assert listed["spend"].spec["ttl_seconds"] == 259200.0
    assert [d.version for d in definition_history("spend")] == [1, 2]
    assert [d.name for d in list_definitions(kind="feature_service")] == ["checkout"]


def test_prune_removes_what_the_file_no_longer_defines(workspace, spend, tmp_path):
    apply(load_definitions(write(tmp_path)))
    only_user = tmp_path / "only_user.py"
    only_user.write_text("from tidal.features import Entity\nuser = Entity('user', 'user_id')\n")
    kept = apply(load_definitions(only_user))
    assert {(c.name, c.action) for c in kept if c.name != "user"} == {
        ("spend", "absent"), ("share", "absent"), ("checkout", "absent")}
    assert len(list_definitions()) == 4

    preview = apply(load_definitions(only_user), prune=True, dry_run=True)
    assert {c.action for c in preview if c.name != "user"} == {"removed"}
    assert len(list_definitions()) == 4  # a dry run writes nothing

    apply(load_definitions(only_user), prune=True)
    assert [d.name for d in list_definitions()] == ["user"]
    assert [d.removed for d in definition_history("spend")] == [False, True]

    back = {c.name: c for c in apply(load_definitions(write(tmp_path)))}
    assert (back["spend"].action, back["spend"].version) == ("added", 3)


def test_a_store_rebuilt_from_the_registry_answers_like_the_definitions(workspace, spend,
                                                                         tmp_path):
    path = write(tmp_path)
    definitions = load_definitions(path)
    apply(definitions, origin=path)
    entity_df = pd.DataFrame({"user_id": [1, 2], "event_timestamp": [NOW, NOW],
                              "basket": [50.0, 10.0]})
    direct = FeatureStore(definitions).get_historical_features(entity_df, "checkout")

    trusted = FeatureStore.from_registry(trust_code=True)
    pd.testing.assert_frame_equal(trusted.get_historical_features(entity_df, "checkout"),
                                  direct)
    assert direct["share"].tolist() == [0.5, 0.25]

    untrusted = FeatureStore.from_registry()
    plain = untrusted.get_historical_features(entity_df, ["spend:total"])
    assert plain["total"].tolist() == [100.0, 40.0]
    with pytest.raises(OnDemandFeatureError, match="trust_code=True"):
        untrusted.get_historical_features(entity_df, "checkout")


def test_apply_refuses_definitions_that_could_not_serve(workspace, spend, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(textwrap.dedent("""
        from tidal.features import Entity, Feature, FeatureView
        user = Entity("user", "user_id")
        spend = FeatureView("spend", user, [Feature("missing")], "spend")
    """))
    with pytest.raises(InvalidValueError, match=r"lacks declared column\(s\) \['missing'\]"):
        apply(load_definitions(bad))
    bad.write_text(textwrap.dedent("""
        from tidal.features import Entity, Feature, FeatureService, FeatureView
        user = Entity("user", "user_id")
        spend = FeatureView("spend", user, [Feature("total")], "spend")
        svc = FeatureService("svc", ["spend:nope"])
    """))
    with pytest.raises(InvalidValueError, match="feature service 'svc'.*no feature 'nope'"):
        apply(load_definitions(bad))
    assert rows(workspace) == 0


def test_bad_definitions_files_are_named(workspace, tmp_path):
    with pytest.raises(InvalidValueError, match="does not exist") as error:
        load_definitions(tmp_path / "nope.py")
    assert error.value.field == "path"
    broken = tmp_path / "broken.py"
    broken.write_text("def (:\n")
    with pytest.raises(InvalidValueError, match=r"does not parse: .*\(line 1\)"):
        load_definitions(broken)
    broken.write_text("raise RuntimeError('no config')\n")
    with pytest.raises(InvalidValueError, match="failed: RuntimeError: no config"):
        load_definitions(broken)
    broken.write_text("x = 1\n")
    with pytest.raises(InvalidValueError, match="defines no entity"):
        load_definitions(broken)
    broken.write_text("from tidal.features import Feature\nf = Feature('x', 'decimal')\n")
    with pytest.raises(InvalidValueError, match="type 'decimal'"):
        load_definitions(broken)
    with pytest.raises(InvalidValueError, match="kind 'table'"):
        list_definitions(kind="table")
    with pytest.raises(FeatureDefinitionNotFoundError, match="'ghost'"):
        definition_history("ghost")


def test_definitions_may_import_modules_beside_them(workspace, spend, tmp_path):
    (tmp_path / "shared_entities.py").write_text(
        "from tidal.features import Entity\nuser = Entity('user', 'user_id')\n")
    path = tmp_path / "views.py"
    path.write_text("from shared_entities import user\nfrom tidal.features import Feature, "
                    "FeatureView\nspend = FeatureView('spend', user, [Feature('total')], "
                    "'spend')\n")
    assert [type(d).__name__ for d in load_definitions(path)] == ["Entity", "FeatureView"]
