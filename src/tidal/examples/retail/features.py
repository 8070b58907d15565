"""The retail shop's features: a shopper's past click rate and a product's popularity live in
Tidal's feature store, keyed by ``user_id`` and ``product_id``, so that training (a
point-in-time join over the impressions) and serving (an online lookup by the endpoint's
feature service) read the same values by the same name.

The catalogue is generated like the stream (``tidal.examples.retail.stream``); nothing here is
real data. Its values are stamped a day before the stream starts, as known before any
impression.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import tidal
from tidal.examples.retail.stream import START, products, shoppers

if TYPE_CHECKING:
    import pandas as pd

SHOPPERS_DATASET = "retail-shoppers"
PRODUCTS_DATASET = "retail-products"
SERVICE = "retail_ctr"
TIMESTAMP = "event_timestamp"
#: When the catalogue's values were computed: before the stream's first impression.
AS_OF = START - timedelta(days=1)

shopper = tidal.features.Entity("shopper", "user_id")
product = tidal.features.Entity("product", "product_id")
shopper_stats = tidal.features.FeatureView(
    "shopper_stats", shopper, [tidal.features.Feature("user_ctr")], source=SHOPPERS_DATASET,
    timestamp=TIMESTAMP)
product_stats = tidal.features.FeatureView(
    "product_stats", product, [tidal.features.Feature("popularity")], source=PRODUCTS_DATASET,
    timestamp=TIMESTAMP)
service = tidal.features.FeatureService(SERVICE, [shopper_stats, product_stats],
                                        description="what the click-through model reads by key")
DEFINITIONS = [shopper, product, shopper_stats, product_stats, service]


@dataclass(frozen=True)
class Features:
    """What ``set_up`` did: the catalogue's dataset versions, the store, the rows written
    to the online store per view and the definitions applied."""

    store: tidal.features.FeatureStore
    shoppers: Any  # DatasetVersion
    products: Any
    materialized: dict[str, int]
    applied: int


def set_up(workspace: tidal.Workspace) -> Features:
    """Register the catalogue as datasets, apply the definitions and materialize the
    catalogue into the workspace's online store, as a shop does before serving."""
    stamped = {}
    for name, frame in ((SHOPPERS_DATASET, shoppers()), (PRODUCTS_DATASET, products())):
        frame[TIMESTAMP] = AS_OF
        stamped[name] = tidal.datasets.register(
            name, frame, workspace=workspace,
            description="the demo shop's generated (synthetic) catalogue, as of "
                        f"{AS_OF:%Y-%m-%d}")
    changes = tidal.features.apply(DEFINITIONS, workspace=workspace, origin=__file__)
    store = tidal.features.FeatureStore.from_registry(workspace=workspace)
    written = store.materialize(end=AS_OF + timedelta(seconds=1))
    return Features(store, stamped[SHOPPERS_DATASET], stamped[PRODUCTS_DATASET], written,
                    len(changes))


def training_frame(store: tidal.features.FeatureStore, impressions: pd.DataFrame) -> Any:
    """The impressions with each one's stored features as of its time: a point-in-time join,
    so that no impression sees a value computed after it."""
    return store.get_historical_features(impressions, SERVICE, timestamp_column="timestamp")

