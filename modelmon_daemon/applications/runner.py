"""Run one application on one window and turn what it returns into ResultRecords.

An application that raises gives an AppOutput with `failure` set: the caller records it
as an `mm-app-failed` event and the other applications go on.
"""

from __future__ import annotations

import math
import traceback
from typing import Any

from modelmon_daemon.applications.base import Metric, MonitoringContext, validate_outputs
from modelmon_daemon.core.records import AppOutput, ColumnBatch, ResultRecord, WindowMeta


def failure_text(exc: BaseException) -> str:
    """What an application's failure says (its mm-app-failed message): the exception's
    last line."""
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def run_application(
    name: str,
    app: Any,
    endpoint: dict[str, Any],
    meta: WindowMeta,
    batch: ColumnBatch,
    settings: dict[str, Any],
) -> AppOutput:
    context = MonitoringContext(
        application_name=name,
        endpoint=endpoint,
        start=meta.start,
        end=meta.end,
        batch=batch,
        settings=settings,
    )
    try:
        outputs = validate_outputs(app.do_tracking(context))
    except Exception as exc:  # an application's bug must not stop the others
        return AppOutput(application=name, failure=failure_text(exc))
    records = []
    for item in outputs:
        value = float(item.value)
        if isinstance(item, Metric):
            records.append(
                ResultRecord(
                    name,
                    item.name,
                    "metric",
                    value,
                    meta.start,
                    meta.end,
                    extra=dict(item.extra_data),
                    sample_size=meta.rows,
                )
            )
        else:
            records.append(
                ResultRecord(
                    name,
                    item.name,
                    "result",
                    value,
                    meta.start,
                    meta.end,
                    kind=item.kind,
                    status=item.status,
                    extra=dict(item.extra_data),
                    sample_size=meta.rows,
                )
            )
        if not math.isfinite(value):
            records[-1].extra["non_finite"] = True
    return AppOutput(application=name, results=records, endpoint_updates=context.endpoint_updates)
