"""``tidal.features``: entities and feature views, point-in-time correct offline retrieval, and
an online store for serving."""

from tidal.features.definitions import Entity, Feature, FeatureView
from tidal.features.store import FeatureStore

__all__ = ["Entity", "Feature", "FeatureStore", "FeatureView"]
