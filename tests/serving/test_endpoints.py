"""Endpoints in the metadata store: deploys are revisions, rollbacks restore, bad routes are
refused before any server sees them."""

from __future__ import annotations

import pytest

from tidal.errors import InvalidValueError, NotFoundError
from tidal.serving.endpoints import (
    EndpointNotFoundError,
    Route,
    deploy,
    endpoint_history,
    get_endpoint,
    list_endpoints,
    rollback,
)


def test_deploy_keeps_settings_that_are_not_given_and_counts_revisions(ctr):
    first = deploy("ctr", {"models:/ctr@champion": 90, "ctr@challenger": 10},
                   max_batch_size=16, max_wait_ms=2)
    assert first.revision == 1
    assert first.config.routes == (Route("models:/ctr@champion", 90.0),
                                   Route("models:/ctr@challenger", 10.0))
    second = deploy("ctr", ["models:/ctr/2=100"], shadow=["models:/ctr/1"])
    assert second.revision == 2 and second.previous == 1
    assert second.config.max_batch_size == 16 and second.config.max_wait_ms == 2.0
    assert second.config.shadows == ("models:/ctr/1",)
    third = deploy("ctr", shadow=[], mode="ab")
    assert third.config.routes == second.config.routes and third.config.shadows == ()
    assert get_endpoint("ctr") == third
    assert [e.name for e in list_endpoints()] == ["ctr"]
    assert [r.revision for r in endpoint_history("ctr")] == [3, 2, 1]


def test_rollback_restores_the_previous_routes_and_walks_further_back(ctr):
    deploy("ctr", {"models:/ctr/1": 100})
    deploy("ctr", {"models:/ctr/1": 50, "models:/ctr/2": 50})
    deploy("ctr", {"models:/ctr/2": 100})
    back = rollback("ctr")
    assert back.action == "rollback" and back.revision == 4
    assert [r.uri for r in back.config.routes] == ["models:/ctr/1", "models:/ctr/2"]
    again = rollback("ctr")
    assert [r.uri for r in again.config.routes] == ["models:/ctr/1"]
    with pytest.raises(EndpointNotFoundError, match="no earlier revision"):
        rollback("ctr")


@pytest.mark.parametrize("routes, message", [
    ({}, "at least one route"),
    ({"models:/ctr/1": 0}, "weights are positive"),
    ({"models:/ctr/1": -5}, "weights are positive"),
    ({"models:/ctr/1": float("nan")}, "weights are positive"),
    ({"models:/ctr/1": True}, "weights are positive"),
    (["models:/ctr/1=abc"], "URI=WEIGHT"),
    (["models:/ctr/1=50", "ctr/1=50"], "given twice"),
    ({"https://evil.example/model.pkl": 100}, "not valid"),
    ("models:/ctr/1", "mapping of model URI"),
])
def test_bad_routes_are_refused_with_what_is_accepted(ctr, routes, message):
    with pytest.raises(InvalidValueError, match=message):
        deploy("ctr", routes)
    assert list_endpoints() == []


def test_unknown_versions_aliases_and_settings_are_refused(ctr):
    with pytest.raises(NotFoundError, match="alias"):
        deploy("ctr", {"models:/ctr@nope": 100})
    with pytest.raises(NotFoundError):
        deploy("ctr", {"models:/ctr/9": 100})
    with pytest.raises(InvalidValueError, match="endpoint name"):
        deploy("../etc", {"models:/ctr/1": 100})
    with pytest.raises(InvalidValueError, match="give its routes"):
        deploy("fresh", max_batch_size=4)
    with pytest.raises(InvalidValueError, match="max_batch_size"):
        deploy("ctr", {"models:/ctr/1": 100}, max_batch_size=0)
    with pytest.raises(InvalidValueError, match="max_wait_ms"):
        deploy("ctr", {"models:/ctr/1": 100}, max_wait_ms=5000)
    with pytest.raises(InvalidValueError, match="log_sample"):
        deploy("ctr", {"models:/ctr/1": 100}, log_sample=1.5)
    with pytest.raises(InvalidValueError, match="mode"):
        deploy("ctr", {"models:/ctr/1": 100}, mode="sticky")
    with pytest.raises(InvalidValueError, match="both a live route and a shadow"):
        deploy("ctr", {"models:/ctr/1": 100}, shadow=["models:/ctr/1"])
    with pytest.raises(InvalidValueError, match="feature service 'nope' is not registered"):
        deploy("ctr", {"models:/ctr/1": 100}, feature_service="nope")
    with pytest.raises(EndpointNotFoundError, match="does not exist"):
        get_endpoint("ctr")
    assert list_endpoints() == []
