"""Runs under a Python with MLRun installed (MLRUN_PYTHON), never the daemon's: MLRun's
flow serving (an async graph with a ModelRunnerStep, model tracking on, the monitoring
stream an http URL) serves requests, and MLRun's MonitoringPreProcessor and HTTP output
stream post the monitoring events to the URL.

    python mlrun_flow_serving.py URL REQUESTS

A mock server has no MLRun API server: its answer that the model endpoints were created
(a background task MLRun polls before it monitors anything) is given as succeeded, and
MLRun 1.12's HTTPOutputStream.push, which takes no `partition_key` that the monitoring
step passes, gets a two-line adapter. Everything else (the event, its JSON, the POST,
credentials from the URL) is MLRun's."""

from __future__ import annotations

import json
import sys

import mlrun
import mlrun.common.schemas
import mlrun.serving.system_steps
from mlrun.platforms.iguazio import HTTPOutputStream
from mlrun.serving.states import Model, ModelRunnerStep


class ChurnModel(Model):
    def predict(self, body: dict, **kwargs) -> dict:
        rows = body["inputs"]
        if isinstance(rows[0], dict):  # records: the schema's columns
            rows = [[row["age"], row["income"]] for row in rows]
        body["outputs"] = [int(row[0] + row[1] > 1.0) for row in rows]
        return body


def endpoints_created(server):
    return mlrun.common.schemas.BackgroundTaskState.succeeded, mlrun.utils.now_date(), None


_push = HTTPOutputStream.push


def push(self, data, partition_key=None):
    _push(self, data)


def main() -> None:
    url, requests = sys.argv[1], int(sys.argv[2])
    mlrun.serving.system_steps.get_model_endpoints_creation_task_status = endpoints_created
    HTTPOutputStream.push = push
    fn = mlrun.new_function("flow-serving", kind="serving", project="shop")
    graph = fn.set_topology("flow", engine="async")
    runner = ModelRunnerStep(name="runner")
    runner.add_model(
        endpoint_name="churn",
        model_class=ChurnModel(name="churn"),
        execution_mechanism="naive",
        inputs=["age", "income"],
        outputs=["churned"],
        input_path="inputs",
        result_path="outputs",
    )
    graph.to(runner).respond()
    fn.set_tracking(stream_path=url)
    server = fn.to_mock_server(track_models=True)
    sent = {"requests": 0, "rows": 0, "positives": 0}
    for i in range(requests):
        rows = [[0.1 * (i % 7), 0.2 * (r + 1)] for r in range(1 + i % 3)]
        body = {"inputs": rows}
        if i % 2 == 0:  # records, as a client posting named features sends them
            body = {"inputs": [{"age": a, "income": b} for a, b in rows]}
        answer = server.test(body=body)
        sent["requests"] += 1
        sent["rows"] += len(rows)
        sent["positives"] += sum(answer["outputs"])
    server.wait_for_completion()
    print(json.dumps({"sent": sent}))


if __name__ == "__main__":
    main()
