"""The feature store now lives in ``core.models.feature_store`` (prediction reads it too:
live mode re-classifies the open images from their cached backbone features); this
module keeps the training side's import path."""

from __future__ import annotations

from ..models.feature_store import (
    DEFAULT_BUDGET,
    FEATURES,
    FeatureStore,
    row_hashes,
    weights_hash,
)

__all__ = ["DEFAULT_BUDGET", "FEATURES", "FeatureStore", "row_hashes", "weights_hash"]
