"""Runs under a Python with MLRun installed (MLRUN_PYTHON), never the daemon's: MLRun's
own translation of its HTTP monitoring payloads (`ProcessHTTPEvent` of its monitoring
stream) into the serving events it processes.

    python mlrun_http_payloads.py < {"schemas": {uid: [features, labels]}, "payloads": [...]}

prints one JSON line: the translated events, in order. The endpoint lookup MLRun makes
in its database answers from `schemas` (an unknown uid has no names), everything else
is MLRun's."""

from __future__ import annotations

import asyncio
import json
import sys

from mlrun.model_monitoring.stream_processing import ProcessHTTPEvent


async def main() -> None:
    given = json.load(sys.stdin)
    schemas = given["schemas"]
    step = ProcessHTTPEvent(project="shop")

    async def endpoint_schema(endpoint_id: str, name: str) -> tuple:
        features, labels = schemas.get(endpoint_id, (None, None))
        return features, labels, ""

    step._get_endpoint_schema = endpoint_schema
    print(json.dumps([await step.do(p) for p in given["payloads"]], default=str))


asyncio.run(main())
