"""A generated retail click stream: impressions of products to shoppers, each clicked or not.

Nothing here is real data; the stream is synthetic and says so. Its behaviour changes at a
known time (``drift_hour``), the way a shop's does after a redesign of its app during a sales
season: more shoppers arrive on mobile, prices and discounts move, the list position matters
less in the new grid layout, and taste moves between categories. A model fitted before the
change loses accuracy after it, and one retrained on fresh traffic wins it back, so each
stage of the loop has something real to notice.

Each impression names its shopper (``user_id``) and product (``product_id``) from a fixed
catalogue of the shop (``shoppers()``, ``products()``): a shopper's past click rate and a
product's popularity are properties of those entities, which a real shop keeps in a feature
store rather than sending with every request (``tidal.examples.retail.features``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

FEATURES = ["segment", "category", "device", "price", "discount", "position", "hour",
            "user_ctr", "popularity"]
LABEL = "clicked"
#: The entities an impression names: they key the feature store's rows.
KEYS = ["user_id", "product_id"]
#: Features that belong to the shopper or the product, kept in the feature store.
STORED_FEATURES = ["user_ctr", "popularity"]
#: What the shop's front end knows when it asks for a prediction: the keys and the
#: impression's own context; the stored features are looked up by key.
REQUEST_COLUMNS = [*KEYS, *(c for c in FEATURES if c not in STORED_FEATURES)]
SHOPPERS, PRODUCTS = 2_000, 500
#: The shop's catalogue is the same for every stream; a stream's seed draws its impressions.
CATALOGUE_SEED = 2026
START = datetime(2026, 11, 2, tzinfo=UTC)
SEGMENTS = ("new", "casual", "loyal", "vip")
CATEGORIES = ("electronics", "fashion", "home", "grocery", "toys")
DEVICES = ("mobile", "desktop", "tablet")

#: How shoppers behave before and after the change.
_BEFORE: dict[str, Any] = {
    "devices": (0.45, 0.45, 0.10), "categories": (0.25, 0.25, 0.2, 0.2, 0.1),
    "intercept": -0.6, "price_scale": 1.0, "discount_mean": 0.10, "position_effect": -0.35,
    "discount_effect": 4.0,
    "segment_effect": {"new": -0.8, "casual": 0.0, "loyal": 0.7, "vip": 1.2},
    "category_effect": {"electronics": 0.4, "fashion": 0.6, "home": -0.2, "grocery": -0.4,
                        "toys": -0.6},
    "device_effect": {"mobile": -0.3, "desktop": 0.3, "tablet": 0.0}}
_AFTER: dict[str, Any] = {
    "devices": (0.75, 0.15, 0.10), "categories": (0.35, 0.1, 0.15, 0.15, 0.25),
    "intercept": -2.6, "price_scale": 1.5, "discount_mean": 0.25, "position_effect": -0.05,
    "discount_effect": 7.0,
    "segment_effect": {"new": 0.6, "casual": 0.2, "loyal": -0.2, "vip": 0.3},
    "category_effect": {"electronics": -0.5, "fashion": -0.8, "home": 0.2, "grocery": 0.0,
                        "toys": 1.2},
    "device_effect": {"mobile": 0.6, "desktop": -0.6, "tablet": 0.0}}


def shoppers() -> pd.DataFrame:
    """The shop's shoppers: ``user_id`` and their past click rate ``user_ctr``."""
    rng = np.random.default_rng([CATALOGUE_SEED, 1])
    return pd.DataFrame({"user_id": [f"u{i:05d}" for i in range(SHOPPERS)],
                         "user_ctr": rng.beta(2, 8, SHOPPERS).round(4)})


def products() -> pd.DataFrame:
    """The shop's products: ``product_id`` and their ``popularity`` (0 to 1)."""
    rng = np.random.default_rng([CATALOGUE_SEED, 2])
    return pd.DataFrame({"product_id": [f"p{i:04d}" for i in range(PRODUCTS)],
                         "popularity": rng.beta(2, 3, PRODUCTS).round(4)})


def _impressions(rows: int, regime: dict[str, Any], hours: np.ndarray,
                 rng: np.random.Generator, catalogue: tuple[pd.DataFrame, pd.DataFrame]
                 ) -> pd.DataFrame:
    segment = rng.choice(SEGMENTS, rows, p=(0.3, 0.35, 0.25, 0.1))
    category = rng.choice(CATEGORIES, rows, p=regime["categories"])
    device = rng.choice(DEVICES, rows, p=regime["devices"])
    price = np.round(rng.lognormal(3.6, 0.7, rows) * regime["price_scale"], 2)
    discount = np.clip(rng.normal(regime["discount_mean"], 0.08, rows), 0.0, 0.7).round(2)
    position = rng.integers(1, 11, rows)
    shopper = rng.integers(0, SHOPPERS, rows)
    product = rng.integers(0, PRODUCTS, rows)
    user_ctr = catalogue[0]["user_ctr"].to_numpy()[shopper]
    popularity = catalogue[1]["popularity"].to_numpy()[product]
    logit = (regime["intercept"] + regime["position_effect"] * (position - 1)
             + regime["discount_effect"] * discount
             - 0.6 * np.log(price / 40.0)
             + 6.0 * (user_ctr - 0.2) + 2.0 * (popularity - 0.4)
             + np.array([regime["segment_effect"][s] for s in segment])
             + np.array([regime["category_effect"][c] for c in category])
             + np.array([regime["device_effect"][d] for d in device]))
    clicked = (rng.random(rows) < 1.0 / (1.0 + np.exp(-2.0 * logit))).astype("int64")
    return pd.DataFrame({"user_id": catalogue[0]["user_id"].to_numpy()[shopper],
                         "product_id": catalogue[1]["product_id"].to_numpy()[product],
                         "segment": segment, "category": category, "device": device,
                         "price": price, "discount": discount, "position": position,
                         "hour": (hours % 24).astype("int64"), "user_ctr": user_ctr,
                         "popularity": popularity, LABEL: clicked})


def generate(hours: int = 48, rows_per_hour: int = 400, drift_hour: int | None = 24,
             seed: int = 0, start: datetime = START) -> pd.DataFrame:
    """``hours`` of impressions, ``rows_per_hour`` each, in time order, with a ``timestamp``
    column (UTC), the keys, the features and the label; behaviour changes at ``drift_hour``
    (None: never)."""
    rng = np.random.default_rng(seed)
    catalogue = (shoppers(), products())
    rows = hours * rows_per_hour
    offsets = np.sort(rng.uniform(0, hours * 3600, rows))
    hour_index = (offsets // 3600).astype("int64")
    after = np.zeros(rows, dtype=bool) if drift_hour is None else hour_index >= drift_hour
    parts = []
    for regime, mask in ((_BEFORE, ~after), (_AFTER, after)):
        if mask.any():
            part = _impressions(int(mask.sum()), regime, hour_index[mask], rng, catalogue)
            part.index = np.flatnonzero(mask)
            parts.append(part)
    frame = pd.concat(parts).sort_index()
    frame.insert(0, "timestamp", [start + timedelta(seconds=float(s)) for s in offsets])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame.reset_index(drop=True)


def drift_time(drift_hour: int, start: datetime = START) -> datetime:
    """When the behaviour of a stream made with ``drift_hour`` changes."""
    return start + timedelta(hours=drift_hour)
