"""Shared builders for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelmon_daemon.analytics.stats import reference_feature_stats
from modelmon_daemon.core.enums import ResultKind, ResultStatus
from modelmon_daemon.core.records import (
    AppOutput,
    ColumnBatch,
    EndpointSpec,
    ResultRecord,
    WindowMeta,
)


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


EVENT_COLUMNS = ("timestamp", "request_id", "latency_us", "error")


def stored_events(data_dir: Any, uid: str) -> pd.DataFrame:
    """An endpoint's stored rows as an outside reader gets them: DuckDB over the whole
    events tree (files are shared by endpoints; `union_by_name` because endpoints differ
    in their columns), filtered on `endpoint_id`, oldest first. Columns that belong only
    to other endpoints (all null here) and the partition columns are left out."""
    import duckdb

    pattern = f"{data_dir}/events/**/*.parquet"
    if not list(Path(data_dir, "events").rglob("*.parquet")):
        return pd.DataFrame()
    frame = (
        duckdb.connect()
        .execute(
            "select * from read_parquet(?, hive_partitioning=true, union_by_name=true) "
            "where endpoint_id = ? order by timestamp",
            [pattern, uid],
        )
        .df()
    )
    keep = [
        c
        for c in frame.columns
        if c not in ("endpoint_id", "date", "hour")
        and (c in EVENT_COLUMNS or frame[c].notna().any())
    ]
    return frame[keep].reset_index(drop=True)


def drift_output(meta: WindowMeta, value: float) -> AppOutput:
    """One window's histogram-data-drift output: general_drift = value, no detection."""
    return AppOutput(
        "histogram-data-drift",
        [
            ResultRecord(
                "histogram-data-drift",
                "general_drift",
                "result",
                value,
                meta.start,
                meta.end,
                ResultKind.data_drift,
                ResultStatus.no_detection,
                {},
                1,
            )
        ],
    )
