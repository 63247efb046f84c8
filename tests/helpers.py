"""Shared builders for tests."""

from __future__ import annotations

import numpy as np

from modelmon_daemon.analytics.stats import reference_feature_stats
from modelmon_daemon.core.records import ColumnBatch, EndpointSpec


def make_batch(ts, features, outputs=None, rids=None):
    ts = np.asarray(ts, dtype=float)
    n = ts.shape[0]
    return ColumnBatch(
        timestamps=ts,
        features=np.asarray(features, dtype=float).reshape(n, -1),
        outputs=[np.asarray(outputs if outputs is not None else np.zeros(n), dtype=float)],
        request_ids=np.array(rids or [f"r{i}" for i in range(n)], dtype=object),
        latency_us=np.full(n, 1000.0),
        errors=np.array([None] * n, dtype=object),
    )


def make_spec(uid="ep1", n_features=2, seed=0, rows=1000):
    rng = np.random.default_rng(seed)
    names = [f"x{j}" for j in range(n_features)]
    ref = rng.normal(size=(rows, n_features))
    return EndpointSpec(
        uid=uid,
        project="proj",
        name=uid,
        feature_names=names,
        label_names=["output"],
        feature_stats=reference_feature_stats(ref, names),
    )
