"""``tidal.features``: entities and feature views, on-demand views and feature services,
point-in-time correct offline retrieval, an online store for serving, and a registry that
versions the definitions."""

from tidal.features.definitions import Entity, Feature, FeatureService, FeatureView
from tidal.features.on_demand import (
    OnDemandFeatureError,
    OnDemandFeatureView,
    on_demand_feature_view,
)
from tidal.features.registry import (
    apply,
    definition_history,
    list_definitions,
    load_definitions,
)
from tidal.features.store import FeatureStore

__all__ = ["Entity", "Feature", "FeatureService", "FeatureStore", "FeatureView",
           "OnDemandFeatureError", "OnDemandFeatureView", "apply", "definition_history",
           "list_definitions", "load_definitions", "on_demand_feature_view"]
