"""User applications used by the tests."""

from modelmon_daemon.applications import Metric, MonitoringContext, Result
from modelmon_daemon.core.enums import ResultKind, ResultStatus


class RowCountApplication:
    NAME = "row-count"

    def do_tracking(self, context: MonitoringContext):
        n = len(context.batch)
        return [
            Metric("rows", float(n)),
            Result(
                "too_few_rows",
                float(n),
                ResultKind.mm_app_anomaly,
                ResultStatus.detected if n < 5 else ResultStatus.no_detection,
            ),
        ]


class BrokenApplication:
    NAME = "broken"

    def do_tracking(self, context):
        raise ZeroDivisionError("the application's own bug")
